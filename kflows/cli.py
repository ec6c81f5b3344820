"""The ``kflows`` command line: train, evaluate and sample flows.

Examples:
    kflows train --data two_moons --flow maf --epochs 20 --out maf.keras
    kflows train --data my_table.csv --flow realnvp --layers 6 --out model.keras
    kflows evaluate model.keras --data test.npy
    kflows sample model.keras -n 1000 --seed 0 --out samples.npy
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

BUILDERS = ("maf", "realnvp", "nsf", "nsf_coupling", "glow", "ffjord")


def _data(spec: str) -> np.ndarray:
    from kflows import data

    if spec == "two_moons":
        return data.two_moons(20_000, seed=0)
    return data.load_array(spec)


def _train(args) -> dict:
    import keras

    import kflows
    from kflows import data

    builder = getattr(kflows, args.flow, None)
    if builder is None:
        raise ValueError(f"Expected --flow in {BUILDERS}; {args.flow!r} is not available.")
    train, test = data.split(_data(args.data), seed=args.seed)
    keras.utils.set_random_seed(args.seed)
    flow = builder(num_layers=args.layers, hidden_units=tuple(args.hidden))
    flow.compile(optimizer=keras.optimizers.Adam(args.lr))
    flow.fit(train, epochs=args.epochs, batch_size=args.batch_size, verbose=args.verbose)
    result = flow.evaluate(test, batch_size=4096, verbose=0, return_dict=True)
    flow.save(args.out)
    return {"test_nll": result["loss"], "bits_per_dim": result["bits_per_dim"], "model": args.out}


def _load(path: str):
    import keras

    import kflows  # noqa: F401  (registers the kflows classes)

    return keras.models.load_model(path)


def _evaluate(args) -> dict:
    flow = _load(args.model)
    result = flow.evaluate(_data(args.data), batch_size=4096, verbose=0, return_dict=True)
    return {"nll": result["loss"], "bits_per_dim": result["bits_per_dim"]}


def _sample(args) -> dict:
    flow = _load(args.model)
    samples = flow.sample(args.num_samples, seed=args.seed).numpy()
    np.save(args.out, samples)
    return {"samples": args.out, "shape": list(samples.shape)}


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="kflows", description=__doc__.split("\n")[0])
    sub = root.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train a flow and save it as .keras")
    train.add_argument("--data", default="two_moons", help="'two_moons' or a .npy/.csv file")
    train.add_argument("--flow", default="maf", choices=BUILDERS)
    train.add_argument("--layers", type=int, default=5)
    train.add_argument("--hidden", type=int, nargs="+", default=[128, 128])
    train.add_argument("--epochs", type=int, default=20)
    train.add_argument("--batch-size", type=int, default=256)
    train.add_argument("--lr", type=float, default=1e-3)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--verbose", type=int, default=0)
    train.add_argument("--out", default="flow.keras")
    train.set_defaults(run=_train)
    evaluate = sub.add_parser("evaluate", help="mean NLL of data under a saved flow")
    evaluate.add_argument("model")
    evaluate.add_argument("--data", required=True)
    evaluate.set_defaults(run=_evaluate)
    sample = sub.add_parser("sample", help="draw samples from a saved flow into a .npy file")
    sample.add_argument("model")
    sample.add_argument("-n", "--num-samples", type=int, default=1000)
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--out", default="samples.npy")
    sample.set_defaults(run=_sample)
    return root


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    try:
        print(json.dumps(args.run(args)))
    except (ValueError, FileNotFoundError, TypeError) as err:
        print(f"kflows: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
