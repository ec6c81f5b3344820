"""Conditional density estimation: p(x | moon) on two moons labelled by their moon.

``kflows.data.table("labelled_moons", subset=...)`` gives the 2-D points as ``values`` and
the moon each point belongs to (0 upper, 1 lower) as ``context``. A conditional coupling
neural spline flow (``context_dim=1``) learns p(x | moon); the same flow without a context
learns p(x) from the same points. For the true densities the gain, the mutual information
I(x; moon), is at most log 2 = 0.693 nats per point (the entropy of a fair label); learned
densities can land on either side of it. Bayes' rule turns the conditional flow into a
classifier, p(moon | x) proportional to p(x | moon) p(moon).

The script prints both test NLLs, their gap against log 2, the classifier's test accuracy,
and saves the conditional densities at both moons.

Usage:
    python examples/conditional_density.py [--epochs 30] [--out outputs/conditional] [--quick]
"""

import argparse
import math
import os

import keras
import numpy as np

import kflows
from kflows import data, plot


def fit(flow, x, epochs, validation):
    """Trains ``flow`` on ``x`` (an array or an ``(x, context)`` pair); returns its history."""
    flow.compile(optimizer=keras.optimizers.Adam(2e-3))
    return flow.fit(x, validation_data=validation, epochs=epochs, batch_size=256, verbose=0)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--out", default=os.path.join("outputs", "conditional"), help="figures")
    parser.add_argument("--quick", action="store_true", help="CI sizes: 4 epochs")
    args = parser.parse_args()
    epochs = 4 if args.quick else args.epochs
    os.makedirs(args.out, exist_ok=True)

    train, validation, test = (
        data.table("labelled_moons", subset=s) for s in ("train", "validation", "test")
    )
    print(
        f"labelled_moons: values {train.columns}, context {train.context_columns}; "
        f"train {len(train.values)}, test {len(test.values)} rows"
    )

    keras.utils.set_random_seed(0)
    conditional = kflows.nsf_coupling(num_layers=4, hidden_units=(64, 64), context_dim=1)
    fit(conditional, (train.values, train.context), epochs, (validation.values, validation.context))
    keras.utils.set_random_seed(0)
    plain = kflows.nsf_coupling(num_layers=4, hidden_units=(64, 64))
    fit(plain, train.values, epochs, validation.values)

    nll_conditional = -float(np.mean(conditional.log_prob(test.values, test.context)))
    nll_plain = -float(np.mean(plain.log_prob(test.values)))
    print(f"test NLL of p(x | moon)   {nll_conditional:7.3f} nats")
    print(f"test NLL of p(x)          {nll_plain:7.3f} nats")
    print(
        f"gain from the context     {nll_plain - nll_conditional:7.3f} nats "
        f"(for the true densities I(x; moon) <= log 2 = {math.log(2):.3f})"
    )

    # Bayes' rule: score every test point under each moon, add the log prior, take the best.
    prior = np.array([np.mean(train.context == k) for k in (0, 1)])
    scores = np.stack(
        [
            conditional.log_prob(test.values, np.full_like(test.context, k)).numpy()
            + math.log(prior[k])
            for k in (0, 1)
        ],
        axis=1,
    )
    accuracy = np.mean(np.argmax(scores, axis=1) == test.context[:, 0])
    print(f"classifier p(moon | x)    {accuracy:7.1%} test accuracy")
    samples = conditional.sample(2, context=[[0.0], [1.0]], seed=0)
    print(f"samples at moon 0 and 1 (shape {list(samples.shape)}: draws x contexts x D):")
    print(np.round(samples.numpy(), 2))

    path = os.path.join(args.out, "conditional.png")
    plot.conditional(
        conditional,
        [[0.0], [1.0]],
        data=test.values,
        data_context=test.context,
        path=path,
        columns=test.columns,
        context_columns=test.context_columns,
        overwrite=True,
    )
    print(f"figure: {path}")


if __name__ == "__main__":
    main()
