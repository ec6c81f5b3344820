"""Compare flows under one training budget: MAF, RealNVP, NSF (both kinds) and FFJORD.

Every model trains for the same number of optimizer steps with the same batch size,
learning rate and hidden widths, on two moons and on a small real tabular dataset
(scikit-learn's wine, standardised). The table reports the test negative log-likelihood
in nats (lower is better) and the training wall time. Wine has 142 training rows in
13 dimensions: flows overfit it within a few hundred steps, so its test NLL rewards the
models that learn slowly as much as those that learn well.

Usage:
    python examples/compare.py [--steps 300] [--batch-size 128] [--hidden 64]
        [--tabular wine] [--models maf,realnvp,nsf,nsf_coupling,ffjord] [--quick]
"""

import argparse
import math
import time

import keras
import numpy as np

import kflows
from kflows import data


def builders(hidden, num_layers, ffjord_tol):
    """Model name -> function making a fresh flow, with the same hidden widths."""
    units = (hidden, hidden)
    return {
        "maf": lambda: kflows.maf(num_layers=num_layers, hidden_units=units),
        "realnvp": lambda: kflows.realnvp(num_layers=num_layers, hidden_units=units),
        # Neural spline flows: the structures above with the spline transform.
        "nsf": lambda: kflows.maf(num_layers=num_layers, hidden_units=units, transform="spline"),
        "nsf_coupling": lambda: kflows.realnvp(
            num_layers=num_layers, hidden_units=units, transform="spline"
        ),
        "ffjord": lambda: kflows.ffjord(hidden_units=units, rtol=ffjord_tol, atol=ffjord_tol),
    }


def run(make, train, test, steps, batch_size, learning_rate):
    """Trains for ``steps`` optimizer steps; returns (test NLL in nats, seconds)."""
    try:
        flow = make()
    except ValueError as err:  # e.g. a transform this version of kflows lacks
        return None, str(err)
    steps_per_epoch = math.ceil(len(train) / batch_size)
    epochs = math.ceil(steps / steps_per_epoch)
    flow.compile(optimizer=keras.optimizers.Adam(learning_rate))
    start = time.perf_counter()
    flow.fit(
        train, epochs=epochs, batch_size=batch_size, steps_per_epoch=steps_per_epoch, verbose=0
    )
    seconds = time.perf_counter() - start
    result = flow.evaluate(test, batch_size=len(test), verbose=0, return_dict=True)
    return result["loss"], seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--num-layers", type=int, default=4)
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--ffjord-tol", type=float, default=1e-4)
    parser.add_argument("--num-points", type=int, default=5000)
    parser.add_argument("--tabular", default="wine")
    parser.add_argument("--models", default="maf,realnvp,nsf,nsf_coupling,ffjord")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="CI sizes: 60 steps, 2000 points, FFJORD tolerance 1e-3",
    )
    args = parser.parse_args()
    if args.quick:
        args.steps, args.num_points, args.ffjord_tol = 60, 2000, 1e-3

    datasets = {
        "two_moons": data.split(data.two_moons(args.num_points, seed=0), seed=0),
        args.tabular: (data.tabular(args.tabular), data.tabular(args.tabular, subset="test")),
    }
    makers = builders(args.hidden, args.num_layers, args.ffjord_tol)
    names = args.models.split(",")
    unknown = set(names) - set(makers)
    if unknown:
        raise SystemExit(f"Unknown models {sorted(unknown)}; choose from {sorted(makers)}.")

    print(
        f"budget: {args.steps} steps of batch {args.batch_size}, Adam({args.learning_rate}), "
        f"hidden {args.hidden}x2, {args.num_layers} layers (FFJORD: 1 block, "
        f"tol {args.ffjord_tol})"
    )
    for dataset, (train, test) in datasets.items():
        print(f"\n{dataset}: train {train.shape}, test {test.shape}")
        print(f"| {'model':<13}| test NLL (nats) | train time (s) |")
        print(f"| {'-' * 12} | {'-' * 15} | {'-' * 14} |")
        for name in names:
            keras.utils.set_random_seed(0)
            nll, seconds = run(
                makers[name], train, test, args.steps, args.batch_size, args.learning_rate
            )
            if nll is None:
                print(f"| {name:<13}| {'n/a':>15} | {'n/a':>14} |  ({seconds})", flush=True)
            else:
                nll = f"{nll:.3f}" if np.isfinite(nll) else "nan"
                print(f"| {name:<13}| {nll:>15} | {seconds:>14.1f} |", flush=True)


if __name__ == "__main__":
    main()
