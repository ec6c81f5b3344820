"""Density estimation on real tabular data: a flow against a Gaussian on scikit-learn digits.

``kflows.data.load`` gives the fixed train / validation / test splits of a built-in table
(scikit-learn's 8 x 8 digits by default: 64 pixel counts, dequantised with uniform noise
and standardised with the training statistics). A masked autoregressive flow (MAF) and a
neural spline flow (NSF) train with early stopping on the validation split; a full-covariance
Gaussian fitted to the training rows is the baseline every flow has to beat.

The script prints each model's test negative log-likelihood (nats per row, and bits per
dimension), the epochs it trained and its training time, and saves a learning curve and a
corner plot of test rows against the NSF's samples.

Usage:
    python examples/tabular_density.py [--data digits] [--epochs 100] [--out outputs/tabular]
        [--quick]
"""

import argparse
import math
import os
import time

import keras
import numpy as np

import kflows
from kflows import data, plot


def gaussian_nll(train, test):
    """Mean test NLL (nats) of the full-covariance Gaussian fitted to ``train``."""
    mean = train.mean(axis=0)
    cov = np.cov(train, rowvar=False) + 1e-6 * np.eye(train.shape[1])
    _, logdet = np.linalg.slogdet(cov)
    diff = test - mean
    mahalanobis = np.einsum("ij,ij->i", diff, np.linalg.solve(cov, diff.T).T)
    return float(np.mean(0.5 * (mahalanobis + logdet + train.shape[1] * math.log(2 * math.pi))))


def train_flow(flow, train, validation, epochs):
    """Fits with early stopping on the validation NLL; returns (history, seconds)."""
    flow.compile(optimizer=keras.optimizers.Adam(1e-3))
    stop = keras.callbacks.EarlyStopping(patience=10, restore_best_weights=True)
    start = time.perf_counter()
    history = flow.fit(
        train,
        validation_data=validation,
        epochs=epochs,
        batch_size=64,
        callbacks=[stop],
        verbose=0,
    )
    return history, time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="digits", help="a table of kflows.data.DATASETS")
    parser.add_argument("--epochs", type=int, default=100, help="most epochs per flow")
    parser.add_argument("--out", default=os.path.join("outputs", "tabular"), help="figures")
    parser.add_argument("--quick", action="store_true", help="CI sizes: at most 4 epochs")
    args = parser.parse_args()
    epochs = 4 if args.quick else args.epochs
    os.makedirs(args.out, exist_ok=True)

    train, validation, test = (data.load(args.data, s) for s in ("train", "validation", "test"))
    dim = train.shape[1]
    print(f"{args.data}: {data.DATASETS[args.data].description}")
    print(f"train {train.shape}, validation {validation.shape}, test {test.shape}")
    print(f"{'model':<9} {'test NLL':>9} {'bits/dim':>9} {'epochs':>7} {'seconds':>8}")
    nll = gaussian_nll(train, test)
    print(f"{'gaussian':<9} {nll:9.2f} {nll / dim / math.log(2):9.3f} {'-':>7} {'-':>8}")
    builders = {
        "maf": lambda: kflows.maf(num_layers=5, hidden_units=(64, 64)),
        "nsf": lambda: kflows.nsf(num_layers=5, hidden_units=(64, 64)),
    }
    for name, build in builders.items():
        keras.utils.set_random_seed(0)
        flow = build()
        history, seconds = train_flow(flow, train, validation, epochs)
        result = flow.evaluate(test, batch_size=len(test), verbose=0, return_dict=True)
        print(
            f"{name:<9} {result['loss']:9.2f} {result['bits_per_dim']:9.3f} "
            f"{len(history.history['loss']):7d} {seconds:8.1f}"
        )
    columns = data.DATASETS[args.data].columns
    curve = os.path.join(args.out, "learning_curve.png")
    plot.learning_curve(history.history, curve, overwrite=True)
    pairs = os.path.join(args.out, "corner.png")
    samples = flow.sample(len(test), seed=0).numpy()
    # The first columns of digits are blank margins; show four central pixels instead.
    show = [27, 28, 35, 36] if args.data == "digits" else list(range(min(dim, 4)))
    plot.corner(test[:, show], samples[:, show], pairs, [columns[j] for j in show], overwrite=True)
    print(f"figures: {curve} (NSF), {pairs} (test rows against NSF samples)")


if __name__ == "__main__":
    main()
