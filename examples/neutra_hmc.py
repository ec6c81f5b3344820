"""NeuTra HMC: Hamiltonian Monte Carlo in the base space of a flow fitted to the target.

Neal's funnel, ``v ~ N(0, 3^2)`` and ``x | v ~ N(0, exp(v / 2)^2)``, has a narrow neck and a
wide mouth: no single HMC step size suits both, so plain HMC mixes slowly in ``v``.
NeuTra (Hoffman et al. 2019) first fits a flow ``q = T(N(0, I))`` to the target by
variational inference, then runs HMC on ``u`` with the target pulled back through ``T``,
where the funnel looks nearly Gaussian: ``tfp.mcmc.TransformedTransitionKernel`` takes the
trained flow's bijector (``flow.bijector()``, base to data) as it is.

The script prints, for plain and NeuTra HMC with the same number of gradient evaluations,
the estimated mean and standard deviation of ``v`` (truth: 0 and 3), the effective sample
size of ``v`` and the acceptance rate.

Usage:
    python examples/neutra_hmc.py [--results 1000] [--out outputs/neutra] [--quick]
"""

import argparse
import os

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

import kflows
from kflows import plot

tfd = tfp.distributions
tf.get_logger().setLevel("ERROR")  # effective_sample_size's FFT warns about a complex cast
FUNNEL = tfd.JointDistributionSequential(
    [tfd.Normal(0.0, 3.0), lambda v: tfd.Normal(tf.zeros_like(v), tf.exp(v / 2.0))]
)


def funnel_log_prob(x):
    """Log-density of the 2-D funnel at ``x = [v, x1]`` (rows, or a batch of chains)."""
    return FUNNEL.log_prob([x[..., 0], x[..., 1]])


def run_chains(kernel, initial_state, num_results, num_burnin, seed):
    """Runs the chains with dual-averaging step-size adaptation during burn-in."""
    adaptive = tfp.mcmc.DualAveragingStepSizeAdaptation(
        kernel, num_adaptation_steps=int(0.8 * num_burnin)
    )

    @tf.function
    def run():
        return tfp.mcmc.sample_chain(
            num_results,
            initial_state,
            kernel=adaptive,
            num_burnin_steps=num_burnin,
            trace_fn=lambda _, results: inner_results(results).is_accepted,
            seed=seed,
        )

    return run()


def inner_results(results):
    """The HMC results inside the adaptation (and the transformation, for NeuTra)."""
    results = results.inner_results
    return getattr(results, "inner_results", results)


def report(name, samples, accepted, gradients):
    """Prints the estimates of v's moments, its effective sample size and the acceptance."""
    v = samples[..., 0].numpy()  # [results, chains]
    ess = float(tf.reduce_sum(tfp.mcmc.effective_sample_size(samples[..., 0])))
    print(
        f"{name:<8} {v.mean():8.2f} {v.std():8.2f} {ess:10.0f} "
        f"{1000 * ess / gradients:12.1f} {accepted.numpy().mean():10.0%}"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--results", type=int, default=1000, help="draws kept per chain")
    parser.add_argument("--chains", type=int, default=8)
    parser.add_argument("--vi-steps", type=int, default=1500, help="steps to fit the flow")
    parser.add_argument("--out", default=os.path.join("outputs", "neutra"), help="figures")
    parser.add_argument("--quick", action="store_true", help="CI sizes: 300 VI steps, 200 draws")
    args = parser.parse_args()
    num_results, vi_steps = (200, 300) if args.quick else (args.results, args.vi_steps)
    num_burnin, leapfrog = num_results // 2, 4
    os.makedirs(args.out, exist_ok=True)

    # 1. Fit a flow to the funnel by variational inference (a Keras 3 optimizer).
    keras.utils.set_random_seed(0)
    flow = kflows.realnvp(num_layers=6, hidden_units=(32, 32), event_dim=2)
    losses = tfp.vi.fit_surrogate_posterior(
        funnel_log_prob,
        flow.distribution(),
        optimizer=keras.optimizers.Adam(3e-3),
        num_steps=vi_steps,
        sample_size=256,
        seed=(0, 1),
    )
    print(f"flow fitted by VI: ELBO {-float(np.mean(losses[-50:])):.3f} nats (log Z = 0)")

    # 2. Plain HMC and NeuTra HMC, each with the same number of leapfrog steps per draw.
    hmc = tfp.mcmc.HamiltonianMonteCarlo(
        funnel_log_prob, step_size=0.3, num_leapfrog_steps=leapfrog
    )
    neutra = tfp.mcmc.TransformedTransitionKernel(
        tfp.mcmc.HamiltonianMonteCarlo(funnel_log_prob, step_size=0.3, num_leapfrog_steps=leapfrog),
        bijector=flow.bijector(),  # u (base) -> x (data): HMC moves u
    )
    start = tf.zeros([args.chains, 2])
    gradients = args.chains * (num_results + num_burnin) * leapfrog
    print(
        f"{args.chains} chains x {num_results} draws after {num_burnin} burn-in, "
        f"{leapfrog} leapfrog steps each: {gradients} gradient evaluations per sampler"
    )
    print(
        f"{'sampler':<8} {'mean v':>8} {'std v':>8} {'ESS of v':>10} "
        f"{'ESS/1000 gr':>12} {'accepted':>10}"
    )
    print(f"{'truth':<8} {0.0:8.2f} {3.0:8.2f}")
    draws = {}
    for name, kernel, seed in (("HMC", hmc, (2, 3)), ("NeuTra", neutra, (2, 3))):
        samples, accepted = run_chains(kernel, start, num_results, num_burnin, seed)
        report(name, samples, accepted, gradients)
        draws[name] = samples.numpy().reshape(-1, 2)

    exact = np.stack(FUNNEL.sample(4000, seed=(4, 5)), axis=1)
    path = os.path.join(args.out, "funnel.png")
    plot.corner(exact, draws["NeuTra"], path, columns=("v", "x1"))
    print(f"figure (exact draws against NeuTra's): {path}")


if __name__ == "__main__":
    main()
