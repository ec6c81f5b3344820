"""The ``kflows`` command line: train a flow, then sample, score, export and inspect it.

Examples:
    kflows train two_moons --out runs/two_moons
    kflows train table.csv --context label --flow realnvp --out runs/table
    kflows sample runs/two_moons -n 1000 -o samples.csv
    kflows score runs/two_moons new_rows.csv -o scores.csv
    kflows evaluate runs/two_moons two_moons
    kflows export runs/two_moons models/two_moons
    kflows info runs/two_moons
    kflows datasets
    kflows plot runs/two_moons

DATA is a built-in dataset (``kflows datasets`` lists them; each has fixed train,
validation and test splits) or a file: CSV with or without a header row, ``.npy``, or
``.npz`` (``file.npz:key`` picks one array). ``--context`` names the columns that a
conditional flow p(x | context) conditions on, by header name or 0-based index
(``--context 2,label``). MODEL is a run folder written by ``kflows train`` (which also
remembers the context columns) or a ``.keras`` file.

Output: each command prints its result on stdout as text, or, with ``--json``, as exactly
one line of strict JSON (never NaN or Infinity). Progress bars, notes and errors go to
stderr. TensorFlow's start-up log lines are hidden unless ``--verbose`` is given or
TF_CPP_MIN_LOG_LEVEL is set. Arguments, data and output paths are checked before
TensorFlow is imported. Nothing that exists is replaced without ``--overwrite``, and
outputs are written under a temporary name and renamed into place, so an old file or run
folder stays whole until its replacement is complete.

Exit status:
    0  success.
    1  the result is not finite (training diverged, or data has zero density under the
       model): nothing is printed on stdout and nothing is saved.
    2  invalid arguments, unreadable data or model, or an output that exists: one line
       ``kflows: error: ...`` on stderr, and nothing is written.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shlex
import shutil
import sys
import time

from kflows._names import BUILDERS  # the builders of --flow, without TensorFlow

DEFAULT_FLOW = "nsf_coupling"
SPLITS = ("train", "validation", "test")
TABLE_SUFFIXES = (".csv", ".npy")
MAX_SEED = 2**31 - 1
#: Files and folders of a run folder.
MODEL_FILE, SUMMARY_FILE, HISTORY_FILE = "model.keras", "summary.json", "history.csv"
EXPORT_DIR, PLOTS_DIR = "export", "plots"
#: Rows per batch when evaluating or scoring (memory only; results do not depend on it).
EVAL_BATCH = 4096
#: The shares of a data file's rows held out when --validation-split / --test-split are
#: not given (those of the built-in datasets' fixed splits).
DEFAULT_VALIDATION, DEFAULT_TEST = 0.1, 0.2


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


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < 1:  # False for NaN
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1); got {text!r}")
    return value


def _items(text: str, expected: str) -> list[str]:
    items = [item.strip() for item in text.split(",")]
    if not all(items):
        raise argparse.ArgumentTypeError(f"expected {expected}; got {text!r}")
    return items


def _widths(text: str) -> tuple[int, ...]:
    expected = "comma-separated integers >= 1, e.g. 64,64"
    try:
        return tuple(_positive_int(item) for item in _items(text, expected))
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected {expected}; got {text!r}") from None


def _columns(text: str) -> list[str | int]:
    """Column names, or 0-based indices where an item is a non-negative integer."""
    items = _items(text, "comma-separated column names or 0-based indices, e.g. 2,label")
    return [int(item) if item.isdigit() else item for item in items]


def _values(text: str) -> list[float]:
    expected = "comma-separated finite numbers, e.g. 0.5,1"
    try:
        values = [float(item) for item in _items(text, expected)]
    except ValueError:
        values = [math.nan]
    if not all(map(math.isfinite, values)):
        raise argparse.ArgumentTypeError(f"expected {expected}; got {text!r}")
    return values


def _table_out(text: str) -> str:
    if not text.endswith(TABLE_SUFFIXES):
        raise argparse.ArgumentTypeError(
            f"expected a path ending in {' or '.join(TABLE_SUFFIXES)}; got {text!r}"
        )
    return text


# ---------------------------------------------------------------- paths and files
def _check_out(path: str, overwrite: bool) -> None:
    """Refuses, before any work, an output file that exists (without --overwrite) or can't be."""
    if os.path.isdir(path):
        raise ValueError(f"Expected a file path for -o; {path!r} is a directory.")
    if os.path.exists(path) and not overwrite:
        raise ValueError(f"-o {path!r} exists; pass --overwrite to replace it.")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise FileNotFoundError(f"Expected an existing directory for -o; no {parent!r}.")


def _check_run_dir(path: str, overwrite: bool) -> None:
    """Refuses an --out that is a file, or a non-empty folder without --overwrite.

    With --overwrite only a previous run folder (one holding a summary.json) is replaced,
    so that a typo such as ``--out .`` cannot delete a folder of the user's.
    """
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"Expected a folder for --out; {path!r} is a file.")
    if not os.path.isdir(path) or not os.listdir(path):
        return
    if not overwrite:
        raise ValueError(
            f"--out {path!r} exists and is not empty; pass --overwrite to replace it "
            "(the old folder is kept until the new run is complete)."
        )
    if not os.path.isfile(os.path.join(path, SUMMARY_FILE)):
        raise ValueError(
            f"--overwrite replaces only a run folder written by kflows train; {path!r} has "
            f"no {SUMMARY_FILE}. Choose another --out."
        )


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


def _write_table(path: str, values, columns) -> None:
    """Writes ``values`` [N, K] as .npy, or as CSV with a header of ``columns``."""
    import numpy as np

    if path.endswith(".npy"):
        _write(path, lambda tmp: np.save(tmp, values))
    else:
        header = ",".join(columns)
        _write(path, lambda tmp: np.savetxt(tmp, values, "%.9g", ",", header=header, comments=""))


def _write_json(path: str, value) -> None:
    text = json.dumps(value, indent=2, allow_nan=False) + "\n"

    def write(tmp):
        with open(tmp, "w") as f:
            f.write(text)

    _write(path, write)


@contextlib.contextmanager
def _staged_folder(path: str):
    """Yields a new folder beside ``path`` that replaces ``path`` when the block succeeds.

    The old ``path``, if any, is renamed away only once the new folder is complete and is
    deleted last; if the block fails, the new folder is deleted and ``path`` is untouched.
    """
    parent, name = os.path.split(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    staging = os.path.join(parent, f".{name}.tmp-{os.getpid()}-{time.monotonic_ns()}")
    os.mkdir(staging)  # not mkdtemp: the run folder gets the user's usual permissions
    old = staging + ".old"
    try:
        yield staging
        if os.path.exists(path):
            os.rename(path, old)
        try:
            os.rename(staging, path)
        except OSError:
            if os.path.exists(old):
                os.rename(old, path)
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


# ---------------------------------------------------------------- data
def _is_builtin(source: str) -> bool:
    from kflows import data

    if source in data.DATASETS:
        return True
    if os.sep in source or "." in source or os.path.exists(source):
        return False  # a file: read_table names what is wrong with it
    raise ValueError(
        f"Expected a built-in dataset ({', '.join(data.DATASETS)}; see kflows datasets) or a "
        f"data file (.csv, .npy, .npz); got {source!r}, which is neither."
    )


def _rows(table, index):
    import dataclasses

    context = None if table.context is None else table.context[index]
    return dataclasses.replace(table, values=table.values[index], context=context)


def _splits(source: str, context, validation, test, seed: int, base: str = "") -> dict:
    """The train / validation / test Tables of DATA.

    A built-in dataset has fixed splits (``validation`` and ``test`` must be None); a
    file's rows are shuffled with ``seed`` and the ``validation`` and ``test`` shares held
    out. ``base`` is the folder a relative file path is read from.
    """
    import numpy as np

    from kflows import data

    if _is_builtin(source):
        if validation is not None or test is not None:
            raise ValueError(
                f"{source!r} is a built-in dataset with fixed splits; --validation-split and "
                "--test-split apply to data files only."
            )
        return {s: data.table(source, context=context, subset=s) for s in SPLITS}
    table = data.read_table(os.path.join(base, source), context=context)
    n = len(table.values)
    n_validation, n_test = round(validation * n), round(test * n)
    if min(n_validation, n_test, n - n_validation - n_test) < 1:
        raise ValueError(
            f"Expected at least one row in each of the train, validation and test splits; "
            f"{source!r} has {n} rows, and --validation-split {validation:g} and --test-split "
            f"{test:g} leave {n - n_validation - n_test}, {n_validation} and {n_test}."
        )
    order = np.random.default_rng(seed).permutation(n)
    return {
        "test": _rows(table, order[:n_test]),
        "validation": _rows(table, order[n_test : n_test + n_validation]),
        "train": _rows(table, order[n_test + n_validation :]),
    }


def _table(source: str, context, subset: str | None):
    """DATA as one Table: a built-in dataset's ``subset`` (test by default) or a file."""
    from kflows import data

    if _is_builtin(source):
        return data.table(source, context=context, subset=subset or "test")
    if subset is not None:
        raise ValueError(f"--subset applies to built-in datasets; {source!r} is a file.")
    return data.read_table(source, context=context)


def _inputs(table):
    return table.values if table.context is None else (table.values, table.context)


# ---------------------------------------------------------------- models
def _model_path(spec: str) -> tuple[str, str | None]:
    """The ``.keras`` file of MODEL (a run folder or a ``.keras`` file) and the run folder."""
    if os.path.isdir(spec) and not spec.endswith(".keras"):  # a .keras may be unzipped
        path = os.path.join(spec, MODEL_FILE)
        if not os.path.exists(path):
            raise FileNotFoundError(
                f"Expected a run folder written by kflows train or a .keras file; {spec!r} is "
                f"a folder without {MODEL_FILE}."
            )
        return path, spec
    if not spec.endswith(".keras"):
        raise ValueError(
            f"Expected a run folder written by kflows train or a .keras file; got {spec!r}."
        )
    if not os.path.exists(spec):
        raise FileNotFoundError(f"Expected a .keras file or a run folder; no file at {spec!r}.")
    return spec, None


def _summary(run: str | None) -> dict:
    """The summary.json of a run folder ({} for a bare .keras file or a missing summary)."""
    path = os.path.join(run, SUMMARY_FILE) if run else None
    if path is None or not os.path.exists(path):
        return {}
    try:
        with open(path) as f:
            summary = json.load(f)
    except ValueError as err:
        raise ValueError(f"Could not read {path!r} as JSON: {err}") from None
    if not isinstance(summary, dict):
        raise ValueError(f"Expected a JSON object in {path!r}; got {type(summary).__name__}.")
    return summary


def _start_tensorflow(verbose: bool) -> None:
    """Imports TensorFlow; unless ``verbose``, without its start-up lines and warnings.

    Its Python warnings (deprecations inside TensorFlow Probability, retracing notes) are
    for developers, so the command line shows only errors from the ``tensorflow`` and
    ``absl`` loggers unless ``--verbose`` is given.
    """
    import logging

    from kflows import _quiet

    _quiet.import_tensorflow(verbose)
    if not verbose:
        for name in ("tensorflow", "absl"):
            logging.getLogger(name).setLevel(logging.ERROR)


def _load(path: str, verbose: bool):
    _start_tensorflow(verbose)
    from kflows.saving import load

    flow = load(path)
    if not flow.compiled:
        flow.compile()  # the loss is the NLL whatever the optimizer
    return flow


def _check_fit(flow, table, model: str, source: str) -> None:
    """Refuses DATA whose value or context columns do not match the flow's."""
    width = table.values.shape[1]
    if width != flow.event_dim:
        raise ValueError(
            f"{model!r} models {flow.event_dim} columns; {source!r} has {width} value columns "
            f"({', '.join(table.columns)})."
        )
    if flow.context_dim is None and table.context is not None:
        raise ValueError(
            f"{model!r} is unconditional; {source!r} has context columns "
            f"({', '.join(table.context_columns)})."
        )
    if flow.context_dim is not None and table.context is None:
        raise ValueError(
            f"{model!r} is conditional on {flow.context_dim} context columns; name them in "
            f"{source!r} with --context."
        )
    if flow.context_dim is not None and table.context.shape[1] != flow.context_dim:
        raise ValueError(
            f"{model!r} is conditional on {flow.context_dim} context columns; --context names "
            f"{table.context.shape[1]} ({', '.join(table.context_columns)})."
        )


def _run_context(args, run_summary: dict):
    """--context, else the context columns the run folder recorded (None: none)."""
    if args.context is not None:
        return args.context
    return run_summary.get("data", {}).get("context_columns") or None


def _finite(result: dict, what: str, advice: str) -> dict:
    if not all(math.isfinite(v) for v in result.values()):
        values = ", ".join(f"{k}={v}" for k, v in result.items())
        raise NonFiniteResult(f"the {what} is not finite ({values}): {advice}")
    return result


def _nll(flow, table) -> dict:
    result = flow.evaluate(_inputs(table), batch_size=EVAL_BATCH, verbose=0, return_dict=True)
    return {"nats": float(result["loss"]), "bits_per_dim": float(result["bits_per_dim"])}


def _versions() -> dict:
    import platform

    import keras
    import numpy as np
    import tensorflow as tf
    import tensorflow_probability as tfp

    import kflows

    return {
        "kflows": kflows.__version__,
        "tensorflow": tf.__version__,
        "tensorflow_probability": tfp.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


# ---------------------------------------------------------------- plots
def _figures(flow, folder: str, splits: dict, history: dict | None, seed: int) -> dict:
    """Makes the run's figures in ``folder``: {"plots": [...]} or {"plots_skipped": why}.

    Plots are a by-product: a missing matplotlib (or a failing figure) is reported on
    stderr and in summary.json, and the run is still saved.
    """
    try:
        from kflows import plot

        paths = plot.run_figures(flow, folder, splits["train"], history=history, seed=seed)
    except Exception as err:
        if isinstance(err, ImportError) and err.name == "matplotlib":
            why = "matplotlib is not installed (pip install 'kflows[plot]')"
        else:
            why = f"{type(err).__name__}: {' '.join(str(err).split())}"
        shutil.rmtree(folder, ignore_errors=True)  # no half-made figures
        print(f"kflows: note: no plots: {why}.", file=sys.stderr)
        return {"plots": [], "plots_skipped": why}
    return {"plots": sorted(os.path.relpath(p, os.path.dirname(folder)) for p in paths)}


def _history(path: str) -> dict[str, list[float]]:
    import numpy as np

    table = np.genfromtxt(path, delimiter=",", names=True, ndmin=1)
    return {name: [float(v) for v in table[name]] for name in table.dtype.names}


# ---------------------------------------------------------------- train
def _train(args) -> dict:
    _check_run_dir(args.out, args.overwrite)
    seed = args.seed
    builtin = _is_builtin(args.data)
    validation, test = args.validation_split, args.test_split
    if not builtin:
        validation = DEFAULT_VALIDATION if validation is None else validation
        test = DEFAULT_TEST if test is None else test
    splits = _splits(args.data, args.context, validation, test, seed)
    columns = list(splits["train"].columns)
    context_columns = list(splits["train"].context_columns)
    _start_tensorflow(args.verbose)
    import keras
    import numpy as np

    from kflows import builders, serving
    from kflows.nan_guard import NonFiniteError

    rows = {s: len(splits[s].values) for s in SPLITS}
    print(
        f"kflows: training {args.flow} on {args.data}: {len(columns)} columns"
        f"{f', context {context_columns}' if context_columns else ''}; "
        + ", ".join(f"{n} {s} rows" for s, n in rows.items()),
        file=sys.stderr,
    )
    keras.utils.set_random_seed(seed)
    options = {"num_layers": args.layers, "hidden_units": args.hidden}
    flow = getattr(builders, args.flow)(
        **{k: v for k, v in options.items() if v is not None},  # unset: the builder's
        event_dim=len(columns),
        context_dim=len(context_columns) or None,
    )
    flow.compile(optimizer=keras.optimizers.Adam(args.lr))
    stop = keras.callbacks.EarlyStopping(patience=args.patience, restore_best_weights=True)
    advice = (
        f"Try a smaller --lr (got {args.lr:g}), data standardised to zero mean and unit "
        "variance, or fewer --layers."
    )
    start = time.perf_counter()
    try:
        with contextlib.redirect_stdout(sys.stderr):  # stdout carries only the result
            history = flow.fit(
                _inputs(splits["train"]),
                validation_data=_inputs(splits["validation"]),
                epochs=args.epochs,
                batch_size=args.batch_size,
                callbacks=[stop],
                verbose=1 if sys.stderr.isatty() else 2,  # a bar, or a line per epoch
            ).history
    except NonFiniteError as err:  # the NaN guard stopped training
        found = err.report.first_non_finite if err.report is not None else None
        raise NonFiniteResult(
            f"training diverged at batch {err.batch} of epoch {err.epoch}"
            f"{'' if found is None else f' ({found})'}, so {args.out!r} was not saved "
            f"(the batch is in {err.path}). {advice}"
        ) from None
    wall = time.perf_counter() - start
    nll = {s: _nll(flow, splits[s]) for s in SPLITS}
    _finite(
        {f"{s}_nll": v["nats"] for s, v in nll.items()},
        "NLL",
        f"training diverged or some rows have zero density, so {args.out!r} was not saved. "
        + advice,
    )
    epochs_run = len(history["loss"])
    summary = {
        "command": shlex.join(["kflows", *args.argv]),
        "flow": args.flow,
        "data": {
            "source": args.data,
            "builtin": builtin,
            # Relative to the run folder, so that kflows plot finds it from anywhere.
            "path": None if builtin else os.path.relpath(args.data, args.out),
            "columns": columns,
            "context_columns": context_columns,
            "rows": rows,
            "validation_split": validation,
            "test_split": test,
        },
        "nll": nll,
        "parameters": int(flow.count_params()),
        "event_dim": flow.event_dim,
        "context_dim": flow.context_dim,
        "training": {
            "epochs": args.epochs,
            "epochs_run": epochs_run,
            "best_epoch": stop.best_epoch + 1,  # whose weights were kept
            "stopped_early": epochs_run < args.epochs,
            "patience": args.patience,
            "batch_size": args.batch_size,
            "lr": args.lr,
            "layers": args.layers,
            "hidden": None if args.hidden is None else list(args.hidden),
            "seed": seed,
            "wall_time_s": round(wall, 2),
        },
        "versions": _versions(),
    }
    names = ["loss", "val_loss", *sorted(set(history) - {"loss", "val_loss"})]
    table = np.column_stack([np.arange(1, epochs_run + 1), *(history[k] for k in names)])
    with _staged_folder(args.out) as staging:
        flow.save(os.path.join(staging, MODEL_FILE))
        serving.export(flow, os.path.join(staging, EXPORT_DIR), version=1)
        header = ",".join(["epoch", *names])
        np.savetxt(os.path.join(staging, HISTORY_FILE), table, "%.9g", ",", header=header,
                   comments="")  # fmt: skip
        summary.update(_figures(flow, os.path.join(staging, PLOTS_DIR), splits, history, seed))
        _write_json(os.path.join(staging, SUMMARY_FILE), summary)
    return {"run": args.out, **summary}


def _print_train(result: dict) -> None:
    nll, training = result["nll"], result["training"]
    stopped = (
        f", stopped early; best epoch {training['best_epoch']}" if training["stopped_early"] else ""
    )
    print(
        f"Trained {result['flow']} on {result['data']['source']} in "
        f"{training['wall_time_s']:.1f} s: {training['epochs_run']} epochs{stopped}."
    )
    print(f"{'':14}" + "".join(f"{s:>12}" for s in SPLITS))
    for unit, key in (("NLL (nats)", "nats"), ("bits/dim", "bits_per_dim")):
        print(f"{unit:14}" + "".join(f"{nll[s][key]:>12.4f}" for s in SPLITS))
    print(f"parameters    {result['parameters']:,}")
    files = [MODEL_FILE, f"{EXPORT_DIR}/1/", HISTORY_FILE, SUMMARY_FILE, *result["plots"]]
    print(f"run folder    {result['run']}: {', '.join(files)}")


# ---------------------------------------------------------------- evaluate, score, sample
def _evaluate(args) -> dict:
    path, run = _model_path(args.model)
    table = _table(args.data, _run_context(args, _summary(run)), args.subset)
    flow = _load(path, args.verbose)
    _check_fit(flow, table, args.model, args.data)
    result = _nll(flow, table)
    nll = _finite(
        {"nll": result["nats"], "bits_per_dim": result["bits_per_dim"]},
        f"NLL of {args.data!r} under {args.model!r}",
        "some rows have zero or infinite density under the model (outside its support or "
        "far from its training data, e.g. on another scale).",
    )
    return {**nll, "rows": len(table.values), "data": args.data, "model": args.model}


def _print_evaluate(result: dict) -> None:
    print(
        f"NLL {result['nll']:.4f} nats ({result['bits_per_dim']:.4f} bits/dim) over "
        f"{result['rows']} rows of {result['data']}"
    )


def _score(args) -> dict:
    _check_out(args.out, args.overwrite)
    path, run = _model_path(args.model)
    table = _table(args.data, _run_context(args, _summary(run)), args.subset)
    flow = _load(path, args.verbose)
    _check_fit(flow, table, args.model, args.data)
    import numpy as np

    scores = np.asarray(flow.predict(_inputs(table), batch_size=EVAL_BATCH, verbose=0))
    bad = int(np.sum(np.isnan(scores)))
    if bad:
        raise NonFiniteResult(
            f"{bad} of the {len(scores)} log-densities are NaN, so {args.out!r} was not "
            f"written: the model's weights or maths failed on those rows."
        )
    _write_table(args.out, scores.reshape(-1, 1), ["log_prob"])
    finite = scores[np.isfinite(scores)]
    return {
        "scores": args.out,
        "rows": len(scores),
        "zero_density_rows": int(np.sum(scores == -np.inf)),
        "mean_log_prob": float(np.mean(finite)) if len(finite) else None,
        "min_log_prob": float(np.min(finite)) if len(finite) else None,
        "max_log_prob": float(np.max(finite)) if len(finite) else None,
    }


def _print_score(result: dict) -> None:
    print(f"Wrote the log-density of {result['rows']} rows to {result['scores']}", end="")
    if result["mean_log_prob"] is not None:
        print(
            f": mean {result['mean_log_prob']:.4f}, min {result['min_log_prob']:.4f}, "
            f"max {result['max_log_prob']:.4f} nats",
            end="",
        )
    zero = result["zero_density_rows"]
    print(f"; {zero} rows have zero density (-inf)" if zero else "")


def _sample_contexts(args):
    """The contexts [B, C] of --context or --context-file (None when neither is given)."""
    import numpy as np

    from kflows import data

    if args.context_file is not None:
        return data.read_table(args.context_file).values
    if args.context is not None:
        return np.asarray([args.context], np.float32)
    return None


def _sample(args) -> dict:
    _check_out(args.out, args.overwrite)
    path, run = _model_path(args.model)
    contexts = _sample_contexts(args)
    summary = _summary(run)
    flow = _load(path, args.verbose)
    import numpy as np

    given = "--context-file" if args.context_file is not None else "--context"
    if flow.context_dim is None and contexts is not None:
        raise ValueError(f"{args.model!r} is unconditional; got {given}.")
    if flow.context_dim is not None and contexts is None:
        raise ValueError(
            f"{args.model!r} is conditional on {flow.context_dim} context values; pass "
            "--context v1,v2,... or --context-file FILE."
        )
    if contexts is not None and contexts.shape[1] != flow.context_dim:
        raise ValueError(
            f"{args.model!r} is conditional on {flow.context_dim} context values; {given} "
            f"gives {contexts.shape[1]}."
        )
    data_summary = summary.get("data", {})
    columns = data_summary.get("columns") or [f"x{i}" for i in range(flow.event_dim)]
    if contexts is None:
        samples = flow.sample(args.num_samples, seed=args.seed).numpy()
        table = samples
    else:
        # [n, B, D] -> B blocks of n rows, each row led by its context.
        samples = flow.sample(args.num_samples, context=contexts, seed=args.seed).numpy()
        samples = np.swapaxes(samples, 0, 1).reshape(-1, flow.event_dim)
        table = np.concatenate([np.repeat(contexts, args.num_samples, axis=0), samples], 1)
        names = data_summary.get("context_columns") or [f"c{i}" for i in range(contexts.shape[1])]
        columns = [*names, *columns]
    bad = int(np.sum(~np.all(np.isfinite(samples), axis=-1)))
    if bad:
        raise NonFiniteResult(
            f"{bad} of the {len(samples)} samples are not finite, so {args.out!r} was not "
            f"written. Check the model with: kflows evaluate {args.model} DATA."
        )
    _write_table(args.out, table, columns)
    return {"samples": args.out, "shape": list(table.shape), "columns": columns}


def _print_sample(result: dict) -> None:
    rows, width = result["shape"]
    print(f"Wrote {rows} samples ({width} columns: {', '.join(result['columns'])}) to "
          f"{result['samples']}")  # fmt: skip


# ---------------------------------------------------------------- export, info
def _export(args) -> dict:
    path, _ = _model_path(args.model)
    if args.version is not None and not args.overwrite:
        target = os.path.join(args.dir, str(args.version))
        if os.path.exists(target):
            raise ValueError(f"{target!r} exists; pass --overwrite to replace it.")
    flow = _load(path, args.verbose)
    from kflows import serving

    version = serving.export(flow, args.dir, version=args.version, overwrite=args.overwrite)
    return {"export": os.path.join(args.dir, os.path.basename(version))}


def _print_export(result: dict) -> None:
    print(f"Exported a TF Serving SavedModel to {result['export']}")


def _saved_model(path: str) -> str | None:
    """The SavedModel at ``path``: itself, or its highest integer version (TF Serving's)."""
    if os.path.isfile(os.path.join(path, "saved_model.pb")):
        return path
    if not os.path.isdir(path):
        return None
    versions = [
        int(name)
        for name in os.listdir(path)
        if name.isdigit() and os.path.isfile(os.path.join(path, name, "saved_model.pb"))
    ]
    return os.path.join(path, str(max(versions))) if versions else None


def _spec(tensor) -> dict:
    return {"dtype": tensor.dtype.name, "shape": tensor.shape.as_list()}


def _info_export(path: str, verbose: bool) -> dict:
    _start_tensorflow(verbose)
    import tensorflow as tf

    loaded = tf.saved_model.load(path)
    signatures = {}
    for name, function in sorted(loaded.signatures.items()):
        _, inputs = function.structured_input_signature
        signatures[name] = {
            "inputs": {k: _spec(v) for k, v in sorted(inputs.items())},
            "outputs": {k: _spec(v) for k, v in sorted(function.structured_outputs.items())},
        }
    return {"path": path, "kind": "export", "signatures": signatures}


def _fast(directions) -> list[str]:
    """The directions in which every layer takes one pass ("density", "sampling")."""
    return [d for d in ("density", "sampling") if all(x in (d, "both") for x in directions)]


def _info(args) -> dict:
    version = None if args.model.endswith(".keras") else _saved_model(args.model)
    if version is not None:
        return _info_export(version, args.verbose)
    path, run = _model_path(args.model)
    flow = _load(path, args.verbose)
    layers = [
        {
            "name": layer.name,
            "class": type(layer).__name__,
            "fast_direction": layer.fast_direction,
            "uses_context": layer.uses_context,
            "parameters": int(layer.count_params()),
        }
        for layer in flow.flow_layers
    ]
    result = {
        "path": path,
        "kind": "model",
        "name": flow.name,
        "event_dim": flow.event_dim,
        "context_dim": flow.context_dim,
        "dtype": flow.dtype_policy.name,
        "parameters": int(flow.count_params()),
        "base": type(flow.base).__name__,
        "fast": _fast([layer["fast_direction"] for layer in layers]),
        "layers": layers,
    }
    summary = _summary(run)
    if summary:
        result["run"] = {k: summary.get(k) for k in ("command", "data", "nll")}
    return result


def _print_info(result: dict) -> None:
    if result["kind"] == "export":
        print(f"{result['path']}: TensorFlow SavedModel with signatures")
        for name, signature in result["signatures"].items():
            show = lambda specs: ", ".join(  # noqa: E731
                f"{k}: {v['dtype']} {v['shape']}" for k, v in specs.items()
            )
            print(f"  {name}({show(signature['inputs'])}) -> {show(signature['outputs'])}")
        return
    context = result["context_dim"]
    print(
        f"{result['path']}: kflows Flow {result['name']!r}, {result['event_dim']} features, "
        f"{f'{context} context features' if context else 'unconditional'}, "
        f"{result['dtype']}, {result['parameters']:,} parameters"
    )
    fast = " and ".join(result["fast"]) or "neither direction (check each layer)"
    print(f"base: {result['base']}; one pass for: {fast}")
    print(f"  {'layer':<28}{'class':<24}{'fast':<10}{'context':<9}{'parameters':>10}")
    for layer in result["layers"]:
        print(
            f"  {layer['name']:<28}{layer['class']:<24}{layer['fast_direction']:<10}"
            f"{('yes' if layer['uses_context'] else 'no'):<9}{layer['parameters']:>10,}"
        )
    if "run" in result:
        print(f"trained with: {result['run']['command']}")


# ---------------------------------------------------------------- datasets, plot
def _datasets(args) -> dict:
    from kflows import data

    rows = []
    for name, dataset in data.DATASETS.items():
        try:
            shape = list(data.load(name, "all").shape)
        except ImportError as err:  # scikit-learn's tables need the data extra
            shape = f"needs {err.name} (pip install 'kflows[data]')"
        rows.append(
            {
                "name": name,
                "kind": dataset.kind,
                "shape": shape,
                "columns": list(dataset.columns),
                "context_columns": list(dataset.context_columns),
                "description": dataset.description,
            }
        )
    return {"datasets": rows}


def _print_datasets(result: dict) -> None:
    print(f"{'dataset':<16}{'kind':<7}{'rows x columns':<16}description")
    for row in result["datasets"]:
        shape = row["shape"]
        shape = shape if isinstance(shape, str) else " x ".join(map(str, shape))
        print(f"{row['name']:<16}{row['kind']:<7}{shape:<16}{row['description']}")


def _plot(args) -> dict:
    run = args.folder
    summary = _summary(run) if os.path.isdir(run) else {}
    if "training" not in summary or not os.path.exists(os.path.join(run, MODEL_FILE)):
        raise ValueError(
            f"Expected a run folder written by kflows train ({MODEL_FILE} and "
            f"{SUMMARY_FILE}); got {run!r}."
        )
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ValueError("kflows plot needs matplotlib: pip install 'kflows[plot]'.") from None
    recorded = summary["data"]
    source = recorded["source"] if recorded.get("builtin") else recorded["path"]
    splits = _splits(
        source,
        recorded.get("context_columns") or None,
        recorded.get("validation_split"),
        recorded.get("test_split"),
        summary["training"]["seed"],
        base="" if recorded.get("builtin") else run,
    )
    history_path = os.path.join(run, HISTORY_FILE)
    history = _history(history_path) if os.path.exists(history_path) else None
    flow = _load(os.path.join(run, MODEL_FILE), args.verbose)
    from kflows import plot

    folder = os.path.join(run, PLOTS_DIR)
    with _staged_folder(folder) as staging:
        seed = summary["training"]["seed"]
        paths = plot.run_figures(flow, staging, splits["train"], history=history, seed=seed)
        plots = sorted(os.path.join(folder, os.path.basename(p)) for p in paths)
    summary.update(plots=[os.path.relpath(p, run) for p in plots])
    summary.pop("plots_skipped", None)
    _write_json(os.path.join(run, SUMMARY_FILE), summary)
    return {"plots": plots}


def _print_plot(result: dict) -> None:
    print(f"Wrote {', '.join(result['plots'])}" if result["plots"] else "No figure fits this run.")


# ---------------------------------------------------------------- parser
class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.exit(2, f"kflows: error: {message} (see: {self.prog} --help)\n")


def _command(sub, name: str, run, show, help: str, parents):
    """A subcommand whose ``run(args)`` returns a dict that ``show`` prints as text."""
    text = {"formatter_class": argparse.RawDescriptionHelpFormatter, "parents": parents}
    command = sub.add_parser(name, help=help, description=help, **text)
    command.set_defaults(run=run, show=show)
    return command


def _overwrite(command, what: str) -> None:
    command.add_argument("--overwrite", action="store_true", help=f"replace {what} if it exists")


def parser() -> argparse.ArgumentParser:
    """The ``kflows`` argument parser; every value is validated by its ``type``."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--json", action="store_true", help="print the result as one line of strict JSON"
    )
    common.add_argument(
        "--verbose", action="store_true", help="let TensorFlow's start-up log lines through"
    )
    root = _Parser(
        prog="kflows",
        description=__doc__[: __doc__.index("Exit status:")],
        epilog=__doc__[__doc__.index("Exit status:") :],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = root.add_subparsers(dest="command", required=True, parser_class=_Parser)
    data_help = "a built-in dataset (see kflows datasets) or a .csv, .npy or .npz file"
    model_help = "a run folder written by kflows train, or a .keras file"
    context_help = "context columns of a conditional flow, by name or 0-based index, e.g. 2,label"

    train = _command(
        sub, "train", _train, _print_train, "train a flow; write a run folder", [common]
    )
    train.add_argument("data", metavar="DATA", help=data_help)
    train.add_argument(
        "--out", required=True, metavar="DIR",
        help=f"the run folder: {MODEL_FILE}, {EXPORT_DIR}/1/, {HISTORY_FILE}, {SUMMARY_FILE}, "
        f"{PLOTS_DIR}/ (nothing is written when training diverges)",
    )  # fmt: skip
    train.add_argument(
        "--flow", default=DEFAULT_FLOW, choices=BUILDERS, help=f"(default: {DEFAULT_FLOW})"
    )
    train.add_argument("--context", type=_columns, metavar="COLUMNS", help=context_help)
    train.add_argument(
        "--layers", type=_positive_int,
        help="number of flow layers, >= 1 (default: the builder's, e.g. 5; ffjord and "
        "flow_matching take 1)",
    )  # fmt: skip
    train.add_argument(
        "--hidden", type=_widths, metavar="W,W",
        help="hidden widths of each layer's network, e.g. 64,64 (default: the builder's)",
    )  # fmt: skip
    train.add_argument("--epochs", type=_positive_int, default=20, help=">= 1 (default: 20)")
    train.add_argument(
        "--patience", type=_positive_int, default=10,
        help="stop after this many epochs without a better validation NLL, keeping the best "
        "weights (default: 10)",
    )  # fmt: skip
    train.add_argument("--batch-size", type=_positive_int, default=512, help=">= 1 (default: 512)")
    train.add_argument(
        "--lr", type=_learning_rate, default=2e-3, help="Adam's learning rate > 0 (default: 2e-3)"
    )
    for split, default in (("validation", DEFAULT_VALIDATION), ("test", DEFAULT_TEST)):
        train.add_argument(
            f"--{split}-split", type=_fraction, metavar="FRACTION",
            help=f"share of a data file's rows held out for {split}, in (0, 1) (default: "
            f"{default}); built-in datasets have fixed splits",
        )  # fmt: skip
    train.add_argument(
        "--seed", type=_seed, default=0,
        help=f"seeds the weights, the shuffling and a file's split; 0 to {MAX_SEED} (default: 0)",
    )  # fmt: skip
    _overwrite(train, "a previous run folder at --out")

    sample = _command(
        sub, "sample", _sample, _print_sample, "draw samples from a flow into a file", [common]
    )
    sample.add_argument("model", metavar="MODEL", help=model_help)
    sample.add_argument(
        "-n", "--num-samples", type=_positive_int, required=True, metavar="N",
        help="samples to draw (per context), >= 1",
    )  # fmt: skip
    given = sample.add_mutually_exclusive_group()
    given.add_argument(
        "--context", type=_values, metavar="V,V", help="one context of a conditional flow"
    )
    given.add_argument(
        "--context-file", metavar="FILE",
        help="a .csv/.npy/.npz of contexts, one per row: N samples each, rows led by the context",
    )  # fmt: skip
    sample.add_argument("--seed", type=_seed, default=0, help=f"0 to {MAX_SEED} (default: 0)")
    sample.add_argument(
        "-o", "--out", type=_table_out, required=True, help="a .csv (with a header) or .npy file"
    )
    _overwrite(sample, "--out")

    for name, run, show, help in (
        ("score", _score, _print_score, "write the log-density of each row of DATA"),
        ("evaluate", _evaluate, _print_evaluate, "mean NLL of DATA under a flow"),
    ):
        command = _command(sub, name, run, show, help, [common])
        command.add_argument("model", metavar="MODEL", help=model_help)
        command.add_argument("data", metavar="DATA", help=data_help)
        command.add_argument(
            "--context", type=_columns, metavar="COLUMNS",
            help=context_help + " (default: those the run folder recorded)",
        )  # fmt: skip
        command.add_argument(
            "--subset", choices=("train", "validation", "test", "all"),
            help="the split of a built-in dataset (default: test)",
        )  # fmt: skip
        if name == "score":
            command.add_argument(
                "-o", "--out", type=_table_out, required=True,
                help="a .csv (header log_prob) or .npy file, one log-density in nats per row",
            )  # fmt: skip
            _overwrite(command, "--out")

    export = _command(
        sub, "export", _export, _print_export, "export a TF Serving SavedModel", [common]
    )
    export.add_argument("model", metavar="MODEL", help=model_help)
    export.add_argument("dir", metavar="DIR", help="the model base path: writes DIR/<version>/")
    export.add_argument(
        "--version", type=_integer_version, help="the version (default: the next free one)"
    )
    _overwrite(export, "DIR/<version>")

    info = _command(
        sub, "info", _info, _print_info, "describe a flow or a SavedModel export", [common]
    )
    info.add_argument(
        "model", metavar="MODEL",
        help=f"{model_help}; or an export (DIR/<version>, or DIR for its latest version)",
    )  # fmt: skip

    datasets = _command(
        sub, "datasets", _datasets, _print_datasets, "list the built-in datasets", [common]
    )
    del datasets
    plot = _command(
        sub, "plot", _plot, _print_plot, "re-make the figures of a run folder", [common]
    )
    plot.add_argument("folder", metavar="RUN", help="a run folder written by kflows train")
    return root


def _integer_version(text: str) -> int:
    return _integer(text, 0, 2**63 - 1)


def _error(err: BaseException) -> None:
    print(f"kflows: error: {' '.join(str(err).split())}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Runs the command line on ``argv`` (``sys.argv[1:]`` by default); returns the exit status."""
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    try:
        args = parser().parse_args(argv)
    except SystemExit as done:  # --help (0) or an invalid argument (2), already reported
        return done.code if isinstance(done.code, int) else 0
    args.argv = argv
    try:
        result = args.run(args)
        line = json.dumps(result, allow_nan=False) if args.json else None
    except NonFiniteResult as err:
        _error(err)
        return 1
    except (ValueError, OSError) as err:  # bad input; anything else is a bug: a traceback
        _error(err)
        return 2
    if line is not None:
        print(line)
    else:
        args.show(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
