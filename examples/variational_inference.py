"""Variational inference with tfp.vi: fit a flow to an unnormalised banana-shaped density.

The target is known only up to its normalising constant: ``log p~(x) = log p(x) + log Z``.
``tfp.vi.fit_surrogate_posterior`` trains the flow's ``distribution()`` (a live
``tfd.TransformedDistribution`` whose ``trainable_variables`` are the flow's weights) by
maximising the evidence lower bound, ELBO = E_q[log p~(x) - log q(x)] <= log Z, with a Keras 3
optimizer. The flow stacks inverse autoregressive layers (IAF), whose fast direction is
sampling: the ELBO draws from q and scores its own samples, one network pass each.

The banana has a closed-form normaliser, so the script prints how close the ELBO and an
importance-sampling estimate of log Z get to the truth, and the target's moments against
the flow's.

Usage:
    python examples/variational_inference.py [--steps 1500] [--out outputs/vi] [--quick]
"""

import argparse
import math
import os

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

import kflows
from kflows import plot

SCALE, BEND = 1.5, 0.5  # x1 ~ N(0, SCALE^2); x2 | x1 ~ N(BEND * (x1^2 - SCALE^2), 1)
LOG_Z = math.log(2.0 * math.pi * SCALE)  # the normaliser of the unnormalised density below


def banana_log_prob(x):
    """Unnormalised log-density of the banana: its normalising constant is ``exp(LOG_Z)``."""
    x1, x2 = x[..., 0], x[..., 1]
    return -0.5 * (x1 / SCALE) ** 2 - 0.5 * (x2 - BEND * (x1**2 - SCALE**2)) ** 2


def banana_samples(n, seed=0):
    """Exact draws from the banana (for the figure and the moments)."""
    rng = np.random.default_rng(seed)
    x1 = SCALE * rng.standard_normal(n)
    x2 = BEND * (x1**2 - SCALE**2) + rng.standard_normal(n)
    return np.stack([x1, x2], axis=1).astype(np.float32)


def make_flow(num_layers, hidden):
    """IAF layers with reversals between them: one pass to sample and score a sample."""
    layers = []
    for i in range(num_layers):
        layers.append(kflows.InverseAutoregressive(conditioner={"hidden_units": hidden}))
        if i < num_layers - 1:
            layers.append(kflows.Reverse())
    return kflows.Flow(layers, event_dim=2, name="iaf")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=1500, help="optimizer steps")
    parser.add_argument("--sample-size", type=int, default=256, help="draws per ELBO estimate")
    parser.add_argument("--out", default=os.path.join("outputs", "vi"), help="figure folder")
    parser.add_argument("--quick", action="store_true", help="CI sizes: 300 steps")
    args = parser.parse_args()
    steps = 300 if args.quick else args.steps
    os.makedirs(args.out, exist_ok=True)

    keras.utils.set_random_seed(0)
    flow = make_flow(num_layers=4, hidden=(32, 32))
    losses = tfp.vi.fit_surrogate_posterior(
        banana_log_prob,
        flow.distribution(),
        optimizer=keras.optimizers.Adam(3e-3),
        num_steps=steps,
        sample_size=args.sample_size,
        seed=(0, 1),
    )
    elbo = -float(np.mean(losses[-50:]))

    # Importance sampling with q as the proposal: log Z ~ log mean(p~(x) / q(x)), x ~ q.
    draws, log_q = flow.sample_and_log_prob(20_000, seed=2)
    log_w = banana_log_prob(draws) - log_q
    log_z = float(tf.reduce_logsumexp(log_w) - math.log(len(log_w)))
    weights = tf.nn.softmax(log_w).numpy()
    ess = 1.0 / np.sum(weights**2) / len(weights)  # effective sample size, as a fraction

    exact = banana_samples(20_000)
    print(
        f"fitted {flow.count_params()} weights with {steps} Adam steps of {args.sample_size} draws"
    )
    print(f"ELBO                       {elbo:8.3f} nats (a lower bound on log Z)")
    print(f"importance-sampled log Z   {log_z:8.3f} nats (effective sample size {ess:.0%})")
    print(f"true log Z                 {LOG_Z:8.3f} nats")
    print("moments        flow q     target")
    for name, q_value, p_value in (
        ("mean x1", draws[:, 0].numpy().mean(), 0.0),
        ("mean x2", draws[:, 1].numpy().mean(), 0.0),
        ("std x1", draws[:, 0].numpy().std(), SCALE),
        ("std x2", draws[:, 1].numpy().std(), math.sqrt(2 * BEND**2 * SCALE**4 + 1)),
    ):
        print(f"{name:<10} {q_value:10.3f} {p_value:10.3f}")
    path = os.path.join(args.out, "banana.png")
    plot.density_2d(flow, exact[:2000], path)
    print(f"figure: {path}")


if __name__ == "__main__":
    main()
