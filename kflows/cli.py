"""The ``kflows`` command line: train, evaluate and sample flows.

Examples:
    kflows train --data two_moons --flow maf --epochs 20 --out maf.keras
    kflows train --data my_table.csv --flow realnvp --layers 6 --out model.keras
    kflows evaluate model.keras --data test.npy
    kflows sample model.keras -n 1000 --seed 0 --out samples.npy

Each command prints one line of strict JSON on stdout (never NaN or Infinity); training
progress (``--verbose``) goes to stderr. Arguments
and output paths are checked before any work, and an existing file is replaced only with
``--overwrite`` (atomically: the old file stays if writing the new one fails). TensorFlow
is imported only once the arguments are valid.

Exit status:
    0  success.
    1  the result is not finite (training diverged, or data has zero density under the
       model): nothing is printed on stdout and nothing is saved.
    2  invalid arguments, an unreadable data or model file, or an output file that exists:
       one line ``kflows: error: ...`` on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys

import numpy as np

from kflows.saving import check_save_path

BUILDERS = ("maf", "realnvp", "nsf", "nsf_coupling", "glow", "ffjord")
SAMPLE_SUFFIXES = (".npy", ".csv")
MAX_SEED = 2**31 - 1


class NonFiniteResult(ValueError):
    """A command ran but its result is NaN or infinite (exit status 1)."""


# ---------------------------------------------------------------- argument types
def _integer(text: str, low: int, high: int | None = None) -> int:
    expected = f"an integer >= {low}" if high is None else f"an integer in [{low}, {high}]"
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}; got {text!r}") from None
    if value < low or (high is not None and value > high):
        raise argparse.ArgumentTypeError(f"expected {expected}; got {text!r}")
    return value


def _positive_int(text: str) -> int:
    return _integer(text, 1)


def _seed(text: str) -> int:
    return _integer(text, 0, MAX_SEED)


def _learning_rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0; got {text!r}")
    return value


def _model_out(text: str) -> str:
    try:
        return check_save_path(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _samples_out(text: str) -> str:
    if not text.endswith(SAMPLE_SUFFIXES):
        raise argparse.ArgumentTypeError(
            f"expected a path ending in {' or '.join(SAMPLE_SUFFIXES)}; got {text!r}"
        )
    return text


# ---------------------------------------------------------------- files
def _check_out(path: str, overwrite: bool) -> None:
    """Refuses, before any work, an output that exists (without ``--overwrite``) or can't be."""
    if os.path.isdir(path):
        raise ValueError(f"Expected a file path for --out; {path!r} is a directory.")
    if os.path.exists(path) and not overwrite:
        raise ValueError(f"--out {path!r} exists; pass --overwrite to replace it.")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise FileNotFoundError(f"Expected an existing directory for --out; no {parent!r}.")


def _write(path: str, write) -> None:
    """Calls ``write(tmp)`` then renames ``tmp`` to ``path``: ``path`` is never half-written."""
    head, tail = os.path.split(os.path.abspath(path))
    root, suffix = os.path.splitext(tail)
    tmp = os.path.join(head, f".{root}.{os.getpid()}.tmp{suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _data(spec: str) -> np.ndarray:
    from kflows import data

    if spec == "two_moons":
        return data.two_moons(20_000, seed=0)
    return data.load_array(spec)


def _load(path: str):
    from kflows.saving import load

    return load(path)


def _finite(result: dict, what: str, advice: str) -> dict:
    if not all(math.isfinite(v) for v in result.values()):
        values = ", ".join(f"{k}={v}" for k, v in result.items())
        raise NonFiniteResult(f"the {what} is not finite ({values}): {advice}")
    return result


# ---------------------------------------------------------------- commands
def _train(args) -> dict:
    _check_out(args.out, args.overwrite)
    x = _data(args.data)

    import keras

    from kflows import builders, data
    from kflows.nan_guard import NonFiniteError

    train, test = data.split(x, seed=args.seed)
    keras.utils.set_random_seed(args.seed)
    options = {}  # unset: the builder's defaults
    if args.layers is not None:
        options["num_layers"] = args.layers
    if args.hidden is not None:
        options["hidden_units"] = tuple(args.hidden)
    flow = getattr(builders, args.flow)(event_dim=x.shape[1], **options)
    flow.compile(optimizer=keras.optimizers.Adam(args.lr))
    try:
        with contextlib.redirect_stdout(sys.stderr):  # stdout carries only the JSON result
            flow.fit(train, epochs=args.epochs, batch_size=args.batch_size, verbose=args.verbose)
    except NonFiniteError as err:  # the NaN guard stopped training
        found = err.report.first_non_finite if err.report is not None else None
        raise NonFiniteResult(
            f"training diverged at batch {err.batch} of epoch {err.epoch}"
            f"{'' if found is None else f' ({found})'}, so {args.out!r} was not saved "
            f"(the batch is in {err.path}). Try a smaller --lr (got {args.lr:g}), data "
            "standardised to zero mean and unit variance, or fewer --layers."
        ) from None
    result = flow.evaluate(test, batch_size=4096, verbose=0, return_dict=True)
    result = {"test_nll": float(result["loss"]), "bits_per_dim": float(result["bits_per_dim"])}
    _finite(
        result,
        "test NLL",
        f"training diverged or the test rows have zero density, so {args.out!r} was not "
        f"saved. Try a smaller --lr (got {args.lr:g}), data standardised to zero mean and "
        "unit variance, or fewer --layers.",
    )
    _write(args.out, lambda tmp: flow.save(tmp, overwrite=True))
    return {**result, "model": args.out}


def _evaluate(args) -> dict:
    x = _data(args.data)
    flow = _load(args.model)
    if not flow.compiled:
        flow.compile()  # the loss is the NLL whatever the optimizer
    result = flow.evaluate(x, batch_size=4096, verbose=0, return_dict=True)
    result = {"nll": float(result["loss"]), "bits_per_dim": float(result["bits_per_dim"])}
    return _finite(
        result,
        f"NLL of {args.data!r} under {args.model!r}",
        "some rows have zero or infinite density under the model (outside its support or "
        "far from its training data, e.g. on another scale).",
    )


def _sample(args) -> dict:
    _check_out(args.out, args.overwrite)
    flow = _load(args.model)
    samples = flow.sample(args.num_samples, seed=args.seed).numpy()
    bad = int(np.sum(~np.all(np.isfinite(samples), axis=-1)))
    if bad:
        raise NonFiniteResult(
            f"{bad} of the {len(samples)} samples are not finite, so {args.out!r} was not "
            f"written. Check the model with: kflows evaluate {args.model} --data <data>."
        )
    if args.out.endswith(".csv"):
        _write(args.out, lambda tmp: np.savetxt(tmp, samples, delimiter=","))
    else:
        _write(args.out, lambda tmp: np.save(tmp, samples))
    return {"samples": args.out, "shape": list(samples.shape)}


# ---------------------------------------------------------------- parser
class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.exit(2, f"kflows: error: {message} (see: {self.prog} --help)\n")


def parser() -> argparse.ArgumentParser:
    """The ``kflows`` argument parser; every value is validated by its ``type``."""
    text = {
        "epilog": __doc__[__doc__.index("Exit status:") :],
        "formatter_class": argparse.RawDescriptionHelpFormatter,
    }
    root = _Parser(prog="kflows", description=__doc__.split("\n")[0], **text)
    sub = root.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train a flow and save it as .keras", **text)
    train.add_argument("--data", default="two_moons", help="'two_moons' or a .npy/.csv file")
    train.add_argument("--flow", default="maf", choices=BUILDERS)
    train.add_argument(
        "--layers",
        type=_positive_int,
        help="number of layers, >= 1 (default: the builder's: 5, or 1 for ffjord)",
    )
    train.add_argument(
        "--hidden",
        type=_positive_int,
        nargs="+",
        help="hidden widths, each >= 1 (default: the builder's: 128 128, or 64 64 for ffjord)",
    )
    train.add_argument("--epochs", type=_positive_int, default=20, help=">= 1 (default: 20)")
    train.add_argument("--batch-size", type=_positive_int, default=256, help=">= 1 (default: 256)")
    train.add_argument(
        "--lr", type=_learning_rate, default=1e-3, help="learning rate > 0 (default: 1e-3)"
    )
    train.add_argument("--seed", type=_seed, default=0, help=f"0 to {MAX_SEED} (default: 0)")
    train.add_argument("--verbose", type=int, default=0, choices=(0, 1, 2))
    train.add_argument(
        "--out",
        type=_model_out,
        default="flow.keras",
        help="where to save the model, a .keras file (default: flow.keras); not saved when "
        "the test NLL is not finite",
    )
    train.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    train.set_defaults(run=_train)
    evaluate = sub.add_parser("evaluate", help="mean NLL of data under a saved flow", **text)
    evaluate.add_argument("model", help="a .keras file saved by kflows train or Flow.save")
    evaluate.add_argument("--data", required=True, help="'two_moons' or a .npy/.csv file")
    evaluate.set_defaults(run=_evaluate)
    sample = sub.add_parser("sample", help="draw samples from a saved flow into a file", **text)
    sample.add_argument("model", help="a .keras file saved by kflows train or Flow.save")
    sample.add_argument(
        "-n", "--num-samples", type=_positive_int, default=1000, help=">= 1 (default: 1000)"
    )
    sample.add_argument("--seed", type=_seed, default=0, help=f"0 to {MAX_SEED} (default: 0)")
    sample.add_argument(
        "--out",
        type=_samples_out,
        default="samples.npy",
        help="a .npy or .csv file (default: samples.npy)",
    )
    sample.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    sample.set_defaults(run=_sample)
    return root


def _error(err: BaseException) -> None:
    print(f"kflows: error: {' '.join(str(err).split())}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Runs the command line on ``argv`` (``sys.argv[1:]`` by default); returns the exit status."""
    try:
        args = parser().parse_args(argv)
    except SystemExit as done:  # --help (0) or an invalid argument (2), already reported
        return done.code if isinstance(done.code, int) else 0
    try:
        line = json.dumps(args.run(args), allow_nan=False)
    except NonFiniteResult as err:
        _error(err)
        return 1
    except (ValueError, TypeError, OSError) as err:
        _error(err)
        return 2
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
