"""Train MAF and RealNVP on two moons, print the test NLL, save density plots, export.

Usage:
    python examples/two_moons.py [--epochs 40] [--out outputs] [--export outputs/export] [--quick]

Each flow is also exported for TF Serving to ``<export>/<name>/<version>/`` (see the README's
"Serving" section), e.g. ``outputs/export/maf/1``.
"""

import argparse
import os
import time

import keras
from keras.optimizers.schedules import CosineDecay

import kflows
from kflows import data, plot


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--lr", type=float, default=5e-3, help="peak rate of a cosine decay")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--num-points", type=int, default=20_000)
    parser.add_argument("--out", default="outputs")
    parser.add_argument(
        "--export", default=None, help="TF Serving model base directory (default: OUT/export)"
    )
    parser.add_argument("--quick", action="store_true", help="CI sizes: 12 epochs, 4000 points")
    args = parser.parse_args()
    if args.quick:
        args.epochs, args.num_points = 12, 4000
    os.makedirs(args.out, exist_ok=True)

    train, test = data.split(data.two_moons(args.num_points, seed=0), seed=0)
    for build in (kflows.maf, kflows.realnvp):
        keras.utils.set_random_seed(0)  # initial weights, shuffling: the same run every time
        flow = build(num_layers=5, hidden_units=(64, 64))
        steps = args.epochs * -(-len(train) // args.batch_size)
        flow.compile(optimizer=keras.optimizers.Adam(CosineDecay(args.lr, steps)))
        start = time.perf_counter()
        flow.fit(train, epochs=args.epochs, batch_size=args.batch_size, verbose=0)
        seconds = time.perf_counter() - start
        result = flow.evaluate(test, batch_size=4096, verbose=0, return_dict=True)
        path = os.path.join(args.out, f"two_moons_{flow.name}.png")
        plot.density_2d(flow, train[:2000], path, overwrite=True)  # this script's own file
        flow.save(os.path.join(args.out, f"two_moons_{flow.name}.keras"))
        exported = flow.export(
            os.path.join(args.export or os.path.join(args.out, "export"), flow.name)
        )
        print(
            f"{flow.name}: test NLL {result['loss']:.3f} nats "
            f"({result['bits_per_dim']:.3f} bits/dim), {args.epochs} epochs x "
            f"{-(-len(train) // args.batch_size)} steps of batch {args.batch_size} "
            f"in {seconds:.0f} s; plot {path}; SavedModel {exported}"
        )


if __name__ == "__main__":
    main()
