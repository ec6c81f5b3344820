"""Flow matching against FFJORD and a coupling NSF, at one wall-clock training budget.

Each model trains on each dataset for the same wall-clock budget (the first traced step
included), with Adam(1e-3) and batches of 256 rows (the whole training split when it is
smaller), from the library's defaults:

- ``flow_matching``: :func:`kflows.flow_matching` (velocity MLP 128-128-128, swish; exact
  trace; Dormand-Prince at ``rtol = atol = 1e-5``), independent coupling;
- ``flow_matching_ot``: the same with the minibatch OT coupling;
- ``ffjord``: :func:`kflows.ffjord` (MLP 64-64, tanh; exact trace), trained by maximum
  likelihood with ``rtol = atol = 1e-4`` (as ``examples/compare.py``);
- ``nsf_coupling``: :func:`kflows.nsf_coupling` (5 spline coupling layers, MLP 128-128).

Continuous models are scored and sampled through a copy at ``rtol = atol = 1e-5``
(Dormand-Prince, exact trace), and flow matching also through a fixed-step RK4 copy
(``--rk4-steps``). The validation and test NLLs (nats, exact log-densities) are taken at
four checkpoints of the budget (not counted in it); the table gives the test NLL at the end
and at the checkpoint with the best validation NLL. "ms/step" is the median time of a
training step after the first; "sample 10k" the time of ``sample(10_000)`` once traced
(first call, with tracing, in brackets). The load average of the machine is recorded with
each run: on a shared machine the times move with it.

A second table measures the minibatch OT coupling itself: the mean squared distance of the
pairs, the base draws' mean squared norm (``D`` for a standard normal base: a coupling that
changes it biases the model) and the time per batch, for independent pairs, the exact
assignment (SciPy's Hungarian algorithm, for reference only), the entropic plan's most
likely partner per row (hard argmax), and partners drawn from the plan (what kflows does).

Usage:
    python benchmarks/flow_matching.py [--budget 60] [--datasets two_moons,wine]
        [--models flow_matching,flow_matching_ot,ffjord,nsf_coupling]
        [--out results.md] [--figure densities.png] [--overwrite] [--quick]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

import kflows
from kflows import data
from kflows.builders import flow_matching
from kflows.matching import ot_partners, sinkhorn_log_plan

BATCH = 256
LEARNING_RATE = 1e-3
EVAL_TOL = 1e-5
CHECKPOINTS = (0.25, 0.5, 0.75, 1.0)
SAMPLES = 10_000

#: Model name -> (make the model to train, make its scoring copy or None).
MODELS = {
    "flow_matching": (
        lambda: flow_matching(seed=0),
        lambda: flow_matching(seed=0, rtol=EVAL_TOL, atol=EVAL_TOL),
    ),
    "flow_matching_ot": (
        lambda: flow_matching(coupling="ot", seed=0),
        lambda: flow_matching(seed=0, rtol=EVAL_TOL, atol=EVAL_TOL),
    ),
    "ffjord": (
        lambda: kflows.ffjord(rtol=1e-4, atol=1e-4),
        lambda: kflows.ffjord(rtol=EVAL_TOL, atol=EVAL_TOL),
    ),
    "nsf_coupling": (lambda: kflows.nsf_coupling(), None),
}


# ---------------------------------------------------------------------- data
def splits(name: str, quick: bool) -> dict[str, np.ndarray]:
    """Train, validation and test rows of a built-in dataset (``quick``: fewer toy rows)."""
    parts = {subset: data.load(name, subset) for subset in ("train", "validation", "test")}
    if quick:
        parts = {subset: rows[:2000] for subset, rows in parts.items()}
    return parts


# ---------------------------------------------------------------------- training
class _Budget(keras.callbacks.Callback):
    """Stops ``fit`` once the training time reaches ``limit``; times every step."""

    def __init__(self):
        super().__init__()
        self.used = 0.0
        self.limit = 0.0
        self.step_ends = []
        self._start = None

    def on_train_begin(self, logs=None):
        self._start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        now = time.perf_counter()
        self.step_ends.append(now)
        if self.used + now - self._start >= self.limit:
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        self.used += time.perf_counter() - self._start


def nll(model, x) -> float:
    result = model.evaluate(x, batch_size=len(x), verbose=0, return_dict=True)
    return float(result["loss"])


def copy_of(make_copy, model):
    """A scoring copy of a continuous model (tighter solver), with the model's weights."""
    if make_copy is None:
        return model
    twin = make_copy()
    twin.build((None, model.event_dim))
    twin.set_weights(model.get_weights())
    twin.compile()
    return twin


def train_one(name, parts, budget, rk4_steps):
    """Trains one model for ``budget`` seconds; returns its figures and scoring copy."""
    make, make_copy = MODELS[name]
    keras.utils.set_random_seed(0)
    model = make()
    model.compile(optimizer=keras.optimizers.Adam(LEARNING_RATE))
    train = parts["train"]
    batch = min(BATCH, len(train))
    # Shuffled batches without end, 50 steps an "epoch": Keras' work between epochs would
    # otherwise dominate a small table's one-batch epochs.
    stream = (
        tf.data.Dataset.from_tensor_slices(train)
        .shuffle(len(train), seed=0)
        .repeat()
        .batch(batch, drop_remainder=True)
    )
    clock = _Budget()
    load_before = os.getloadavg()[0]
    checkpoints = []
    twin = None
    for share in CHECKPOINTS:
        clock.limit = share * budget
        if clock.used < clock.limit:  # a first step longer than a share uses it up
            model.fit(stream, epochs=10**6, steps_per_epoch=50, verbose=0, callbacks=[clock])
        twin = copy_of(make_copy, model) if twin is None else twin
        if twin is not model:
            twin.set_weights(model.get_weights())
        checkpoints.append(
            {
                "seconds": clock.used,
                "steps": len(clock.step_ends),
                "validation": nll(twin, parts["validation"]),
                "test": nll(twin, parts["test"]),
            }
        )
    steps = np.diff(clock.step_ends)
    # Steps straddling a checkpoint's evaluation are not training time.
    steady = [s for s in steps if s < 10 * np.median(steps)] if len(steps) else [np.nan]
    best = min(checkpoints, key=lambda c: c["validation"])
    result = {
        "model": name,
        "steps": len(clock.step_ends),
        "seconds": clock.used,
        "ms_per_step": 1e3 * statistics.median(steady),
        "test_nll": checkpoints[-1]["test"],
        "best_test_nll": best["test"],
        "best_at": best["seconds"],
        "checkpoints": checkpoints,
        "load": (load_before, os.getloadavg()[0]),
    }
    result["sample_first"], result["sample_steady"] = sample_times(twin)
    rows = [result]
    if name.startswith("flow_matching"):
        rk4 = flow_matching(solver="rk4", solver_options={"num_steps": rk4_steps}, seed=0)
        rk4 = copy_of(lambda: rk4, model)
        first, steady_time = sample_times(rk4)
        rows.append(
            {
                **result,
                "model": f"{name} (RK4, {rk4_steps} steps)",
                "test_nll": nll(rk4, parts["test"]),
                "best_test_nll": None,
                "sample_first": first,
                "sample_steady": steady_time,
            }
        )
    return rows, twin


def sample_times(model) -> tuple[float, float]:
    start = time.perf_counter()
    model.sample(SAMPLES, seed=0).numpy()
    first = time.perf_counter() - start
    start = time.perf_counter()
    model.sample(SAMPLES, seed=1).numpy()
    return first, time.perf_counter() - start


# ---------------------------------------------------------------------- coupling study
def coupling_study(x1: np.ndarray, trials: int = 8, reg: float = 0.03, iterations: int = 50):
    """Pair cost, base draws' mean squared norm and ms per batch of each coupling."""
    from scipy.optimize import linear_sum_assignment  # reference only; not in kflows

    rng = np.random.default_rng(0)
    batch = tf.constant(x1[:BATCH])
    n, dim = batch.shape

    @tf.function
    def argmax_partners(x0, x1):
        cost = tf.reduce_sum(tf.square(x0[:, None, :] - x1[None, :, :]), axis=-1)
        return tf.gather(x0, tf.argmax(sinkhorn_log_plan(cost, reg, iterations), axis=0))

    sampled = tf.function(lambda x0, x1, seed: ot_partners(x0, x1, reg, iterations, seed))
    figures = {k: [] for k in ("independent", "exact", "plan argmax", "plan sample")}
    timing = {"plan argmax": [], "plan sample": [], "exact": []}
    for trial in range(trials):
        x0 = tf.constant(rng.standard_normal((n, dim)), tf.float32)
        a, b = x0.numpy(), batch.numpy()
        cost = ((a[:, None] - b[None]) ** 2).sum(-1)
        start = time.perf_counter()
        rows, cols = linear_sum_assignment(cost)
        timing["exact"].append(time.perf_counter() - start)
        exact = np.empty_like(a)
        exact[cols] = a[rows]
        pairs = {"independent": a, "exact": exact}
        seed = tf.constant([trial, 0])
        for key, fn, fn_args in (
            ("plan argmax", argmax_partners, (x0, batch)),
            ("plan sample", sampled, (x0, batch, seed)),
        ):
            fn(*fn_args)  # traced once, then timed
            start = time.perf_counter()
            pairs[key] = fn(*fn_args).numpy()
            timing[key].append(time.perf_counter() - start)
        for key, paired in pairs.items():
            figures[key].append((((paired - b) ** 2).sum(-1).mean(), (paired**2).sum(-1).mean()))
    rows = []
    for key, values in figures.items():
        cost, norm = np.mean(values, axis=0)
        ms = 1e3 * statistics.median(timing[key]) if key in timing else 0.0
        rows.append({"coupling": key, "cost": cost, "norm": norm, "ms": ms, "dim": dim, "n": n})
    return rows


# ---------------------------------------------------------------------- figure
def density_figure(toys, models, path):
    """One row per 2-D dataset: its test rows, then each model's learned density."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = sorted({name for trained in models.values() for name in trained})
    fig, axes = plt.subplots(
        len(toys),
        len(names) + 1,
        figsize=(2.6 * (len(names) + 1), 2.6 * len(toys)),
        squeeze=False,
    )
    for row, (dataset, x) in enumerate(toys.items()):
        low, high = np.percentile(x, [0.5, 99.5], axis=0)
        pad = 0.15 * (high - low)
        low, high = low - pad, high + pad
        axes[row, 0].scatter(x[:4000, 0], x[:4000, 1], s=0.5, alpha=0.4, color="black")
        axes[row, 0].set_title(f"{dataset}: test rows", fontsize=8)
        gx, gy = np.linspace(low[0], high[0], 140), np.linspace(low[1], high[1], 140)
        xx, yy = np.meshgrid(gx, gy)
        grid = np.stack([xx.ravel(), yy.ravel()], axis=1).astype(np.float32)
        for col, name in enumerate(names, start=1):
            model = models[dataset].get(name)
            ax = axes[row, col]
            if model is not None:
                density = np.exp(model.log_prob(grid).numpy()).reshape(xx.shape)
                ax.pcolormesh(xx, yy, density, shading="auto", cmap="viridis")
            ax.set_title(f"{name}", fontsize=8)
        for ax in axes[row]:
            ax.set_xlim(low[0], high[0])
            ax.set_ylim(low[1], high[1])
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_aspect("equal")
    fig.tight_layout()
    write_atomically(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))


def write_atomically(path, write):
    """Writes through a temporary file in the same directory, then renames it into place."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=os.path.basename(path))
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


# ---------------------------------------------------------------------- report
def _fmt(value, digits=3):
    return "-" if value is None else f"{value:.{digits}f}"


def report(args, results, couplings, command) -> str:
    lines = [
        "## Flow matching vs FFJORD and a coupling NSF at one wall-clock budget",
        "",
        f"Command: `{command}`",
        "",
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores (shared), "
        f"TensorFlow {tf.__version__}, Keras {keras.__version__}; budget {args.budget:g} s of "
        f"training per model and dataset; Adam({LEARNING_RATE:g}), batch {BATCH} (the whole "
        "training split when smaller). NLLs in nats on the test split (lower is better), "
        f"exact log-densities (ODE models: Dormand-Prince, rtol = atol = {EVAL_TOL:g}, exact "
        'trace). "best-val" is the test NLL at the checkpoint (of 4) with the best '
        "validation NLL. Sampling is 10,000 points once traced (first call in brackets).",
        "",
        "| dataset | model | steps | ms/step | test NLL | test NLL (best-val, at s) "
        "| sample 10k s (first) | load avg (start/end) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for dataset, rows in results.items():
        for r in rows:
            best = (
                "-"
                if r["best_test_nll"] is None
                else f"{r['best_test_nll']:.3f} ({r['best_at']:.0f})"
            )
            lines.append(
                f"| {dataset} | {r['model']} | {r['steps']} | {r['ms_per_step']:.1f} | "
                f"{r['test_nll']:.3f} | {best} | {r['sample_steady']:.2f} "
                f"({r['sample_first']:.1f}) | {r['load'][0]:.1f} / {r['load'][1]:.1f} |"
            )
    lines += [
        "",
        "Test NLL at each checkpoint (seconds of training: NLL):",
        "",
    ]
    for dataset, rows in results.items():
        for r in rows:
            if "RK4" in r["model"]:
                continue
            curve = ", ".join(f"{c['seconds']:.0f}: {c['test']:.3f}" for c in r["checkpoints"])
            lines.append(f"- {dataset}, {r['model']}: {curve}")
    lines += [
        "",
        "### The minibatch OT coupling",
        "",
        "Batches of the training rows (at most 256) with as many standard normal draws; "
        "pair cost = mean squared distance of the pairs; E|x0|^2 = mean squared norm of the "
        "base draws as paired (D when the pairing keeps the base's law); ms per batch once "
        "traced (exact: SciPy's Hungarian algorithm on the host, for reference). Entropic "
        "plan: 50 log-domain Sinkhorn iterations, regularisation 0.03 times the mean cost.",
        "",
        "| dataset | D | coupling | pair cost | E\\|x0\\|^2 | ms |",
        "| --- | ---: | --- | ---: | ---: | ---: |",
    ]
    for dataset, rows in couplings.items():
        for r in rows:
            lines.append(
                f"| {dataset} | {r['dim']} | {r['coupling']} | {r['cost']:.3f} | "
                f"{r['norm']:.3f} | {_fmt(r['ms'], 1)} |"
            )
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--budget", type=float, default=60.0, help="seconds of training")
    parser.add_argument("--datasets", default="two_moons,checkerboard,pinwheel,wine")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--rk4-steps", type=int, default=10)
    parser.add_argument("--out", help="write the Markdown report here")
    parser.add_argument("--figure", help="write the learned 2-D densities here (.png)")
    parser.add_argument("--overwrite", action="store_true", help="replace --out/--figure")
    parser.add_argument("--quick", action="store_true", help="CI sizes: 2000 rows, 4 s")
    args = parser.parse_args(argv)
    if not args.budget > 0:
        parser.error(f"--budget must be > 0; got {args.budget}")
    if args.quick:
        args.budget = min(args.budget, 4.0)
    models = args.models.split(",")
    unknown = set(models) - set(MODELS)
    if unknown:
        parser.error(f"--models must be among {sorted(MODELS)}; got {sorted(unknown)}")
    for path in (args.out, args.figure):
        if path and os.path.exists(path) and not args.overwrite:
            parser.error(f"{path} exists; pass --overwrite to replace it")
    command = " ".join(["python benchmarks/flow_matching.py", *(argv or sys.argv[1:])])
    results, couplings, trained, toys = {}, {}, {}, {}
    for dataset in args.datasets.split(","):
        parts = splits(dataset, args.quick)
        couplings[dataset] = coupling_study(parts["train"])
        results[dataset], trained[dataset] = [], {}
        for name in models:
            rows, twin = train_one(name, parts, args.budget, args.rk4_steps)
            results[dataset] += rows
            trained[dataset][name] = twin
            print(
                f"{dataset} {name}: steps {rows[0]['steps']}, test NLL "
                f"{rows[0]['test_nll']:.3f}, {rows[0]['ms_per_step']:.1f} ms/step",
                flush=True,
            )
        if parts["test"].shape[1] == 2:
            toys[dataset] = parts["test"]
    text = report(args, results, couplings, command)
    print(text)
    if args.out:
        write_atomically(args.out, lambda tmp: Path(tmp).write_text(text))
    if args.figure and toys:
        density_figure(toys, {k: trained[k] for k in toys}, args.figure)


if __name__ == "__main__":
    main()
