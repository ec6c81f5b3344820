"""Catalog: every kflows builder, and its zuko and FlowJAX counterparts, at one training budget.

Every model trains for the same number of Adam steps (same learning rate, same batch, the
same batches in the same order) on each dataset of ``kflows.data`` asked for (2-D toys and
real tables, their fixed, standardised splits), then is scored on the test split. Per model
and dataset it records the test NLL (nats, mean over the test rows), the median train
ms/step after warm-up, the time to the first trained step (construction, tracing and one
step; imports and a one-off runtime warm-up are reported apart), the number of trainable
parameters and any error (a model that fails is reported with its error, never hidden).

The builders are found by name at run time: ``kflows.cli.BUILDERS`` plus
``kflows.builders.__all__``, so a builder added later is picked up without editing this
file; one asked for with ``--builders`` that does not exist is reported as not run.
``PEERS`` maps each builder to its counterparts in zuko and FlowJAX, with matched layers
and hidden widths where the families allow (the table says where they do not).

Each framework runs in its own subprocess (this file, ``--child FRAMEWORK``), one after the
other, never together; a child runs all the models of one dataset in turn and prints one
``RESULT`` line per model. A child that crashes or passes ``--model-timeout`` is killed, the
model is reported with that error and a fresh child goes on with the rest. The children of
the references import only NumPy and their own framework, and read the same arrays from one
``.npz`` file written here.

Usage::

    python benchmarks/catalog.py --torch-python "$TORCH_VENV/bin/python" \\
        --jax-python "$JAX_VENV/bin/python" --steps 500 --batch 256 \\
        --markdown catalog.md --json catalog.json
    python benchmarks/catalog.py --datasets two_moons --builders maf nsf --frameworks kflows
    python benchmarks/catalog.py --quick --frameworks kflows     # smoke run, seconds

Interpreters also come from ``KFLOWS_BENCH_TORCH_PYTHON`` and ``KFLOWS_BENCH_JAX_PYTHON``
(as for ``run.py``); a reference without one is reported as not run.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import common  # noqa: E402

FRAMEWORKS = ("kflows", "zuko", "flowjax")
LABELS = {"kflows": "kflows", "zuko": "zuko", "flowjax": "FlowJAX"}
DEFAULT_DATASETS = ("two_moons", "checkerboard", "breast_cancer")
#: Continuous flows: each log_prob solves an ODE, so the test NLL may use a subset of rows
#: (--ode-test-rows); they are trained with the same step budget as every other model.
ODE_BUILDERS = ("ffjord", "flow_matching")
#: Layers of the builders that do not take --layers: one ODE each, and the families without
#: a network per layer, which need many more layers (kflows' defaults). --layer-overrides
#: changes them; the counterparts get the same number.
FIXED_LAYERS = {"ffjord": 1, "flow_matching": 1, "planar": 16, "radial": 16, "sylvester": 8}
#: Builders without networks in an unconditional flow: they get no hidden widths (gf
#: refuses them; the others would use them only for a context).
NO_NETWORK = ("gf", "planar", "radial", "sylvester")
#: Builders of densities on angles, [-pi, pi) per feature: not run on data outside.
CIRCULAR = ("ncsf",)
#: Spline settings shared by the spline families of all three libraries (zuko's fixed
#: bound is 5).
SPLINE_BINS, SPLINE_BOUND = 8, 5.0
#: --trace auto: the ODE flows' exact divergence up to this D, Hutchinson's estimate above.
EXACT_TRACE_MAX_DIM = 10
#: Step intervals left out of the median ms/step (the first step is never in it).
WARMUP_STEPS = 5

#: builder -> framework -> (constructor, options, note on sizes). Layers and hidden widths
#: come from --layers / --hidden (as for the kflows builder) unless the note says otherwise.
PEERS = {
    "maf": {
        "zuko": ("MAF", {}, ""),
        "flowjax": ("masked_autoregressive_flow", {"transformer": "affine"}, ""),
    },
    "realnvp": {
        "zuko": ("RealNVP", {}, ""),
        "flowjax": ("coupling_flow", {"transformer": "affine"}, ""),
    },
    "nsf": {
        "zuko": ("NSF", {"bins": SPLINE_BINS}, ""),
        "flowjax": ("masked_autoregressive_flow", {"transformer": "spline"}, ""),
    },
    "nsf_coupling": {
        "zuko": ("NSF", {"bins": SPLINE_BINS, "passes": 2}, ""),
        "flowjax": ("coupling_flow", {"transformer": "spline"}, ""),
    },
    "ffjord": {"zuko": ("CNF", {}, "zuko's time embedding (freqs=3)")},
    "naf": {"zuko": ("NAF", {}, "zuko's signal=16 and monotonic network (64, 64)")},
    "unaf": {"zuko": ("UNAF", {}, "zuko's signal=16 and monotonic network (64, 64)")},
    "sospf": {"zuko": ("SOSPF", {}, "zuko's degree=4, polynomials=3")},
    "bpf": {"zuko": ("BPF", {}, "zuko's degree=16")},
    "ncsf": {"zuko": ("NCSF", {"bins": SPLINE_BINS}, "circular domain [-pi, pi]")},
    "gf": {"zuko": ("GF", {}, "no networks: zuko's 8 mixture components, no hidden widths")},
    "bnaf": {
        "flowjax": (
            "block_neural_autoregressive_flow",
            {},
            "nn_depth = len(hidden), nn_block_dim = max(8, hidden // D)",
        )
    },
    "planar": {"flowjax": ("planar_flow", {}, "no hidden widths")},
}


# ------------------------------------------------------------------ shared by the children
class StepClock:
    """Time to the first trained step (from construction) and the later step intervals."""

    def __init__(self):
        self.start = time.perf_counter()
        self.marks: list[float] = []

    def tick(self):
        self.marks.append(time.perf_counter())

    def summary(self) -> dict:
        if not self.marks:
            return {"first_step_s": None, "train_ms_per_step": None}
        gaps = np.diff(self.marks) * 1e3
        timed = gaps[WARMUP_STEPS:] if len(gaps) > WARMUP_STEPS else gaps
        return {
            "first_step_s": self.marks[0] - self.start,
            "train_ms_per_step": float(statistics.median(timed)) if len(timed) else None,
            "train_s": self.marks[-1] - self.start,
        }


def trace_for(spec: dict, dim: int) -> str:
    """The ODE flows' divergence: ``exact`` or ``hutchinson`` (``auto`` picks by ``dim``)."""
    if spec["trace"] != "auto":
        return spec["trace"]
    return "exact" if dim <= EXACT_TRACE_MAX_DIM else "hutchinson"


def nll_of(log_probs) -> dict:
    """Mean NLL over the rows, and how many rows had a non-finite log-density."""
    log_probs = np.asarray(log_probs, np.float64)
    return {
        "test_nll": float(-np.mean(log_probs)),
        "eval_rows": int(log_probs.size),
        "nonfinite_rows": int(np.sum(~np.isfinite(log_probs))),
    }


def eval_rows(spec: dict, builder: str, test: np.ndarray) -> np.ndarray:
    """The test rows a model is scored on: all, or the first ``ode_test_rows`` for ODEs."""
    limit = spec["ode_test_rows"] if builder in ODE_BUILDERS else 0
    return test[:limit] if limit else test


def chunks(x: np.ndarray, size: int):
    return [x[i : i + size] for i in range(0, len(x), size)]


def error_text(err: BaseException) -> str:
    first = (str(err).strip().splitlines() or [""])[0]
    return f"{type(err).__name__}: {first}"[:300]


def emit(kind: str, payload: dict):
    sys.stdout.write(f"{kind} {json.dumps(payload)}\n")
    sys.stdout.flush()


def sizes(spec: dict, builder: str) -> tuple[int, tuple[int, ...]]:
    """Number of layers and hidden widths of ``builder`` in this run."""
    layers = spec["layer_overrides"].get(builder, spec["layers"])
    return layers, tuple(spec["hidden"])


# ------------------------------------------------------------------ the kflows child
def child_kflows(spec: dict, train, test, batches):
    import inspect

    t0 = time.perf_counter()
    import keras
    import tensorflow as tf

    import kflows
    from kflows import builders

    import_s = time.perf_counter() - t0
    dim = train.shape[1]

    def build(name):
        make = getattr(builders, name, None)
        if make is None or name not in getattr(builders, "__all__", ()):
            raise LookupError(f"kflows.builders has no builder {name!r} (yet)")
        layers, hidden = sizes(spec, name)
        params = inspect.signature(make).parameters
        wanted = {"num_layers": layers, "hidden_units": hidden, "event_dim": dim}
        if name in NO_NETWORK:
            del wanted["hidden_units"]
        if name == "bnaf":  # per-feature block widths, as FlowJAX's nn_block_dim below
            wanted["hidden_units"] = tuple(max(8, h // dim) for h in hidden)
        if name in ("nsf", "nsf_coupling"):
            wanted.update(bins=SPLINE_BINS, bound=SPLINE_BOUND)
        if name in ODE_BUILDERS:
            wanted.update(rtol=spec["ode_tol"], atol=spec["ode_tol"], trace=trace_for(spec, dim))
        # Only the keywords the builder takes; event_dim also through **kwargs (nsf passes
        # them on to maf).
        forwards = any(p.kind is p.VAR_KEYWORD for p in params.values())
        kwargs = {k: v for k, v in wanted.items() if k in params or (forwards and k == "event_dim")}
        dropped = sorted(set(wanted) - set(kwargs) - {"event_dim"})
        config = ", ".join(f"{k}={v}" for k, v in kwargs.items() if k != "event_dim")
        note = f"takes no {', '.join(dropped)}" if dropped else ""
        if name in NO_NETWORK:
            note = "no networks, no hidden widths"
        return make(**kwargs), f"{name}({config})", note

    def run(name):
        keras.utils.set_random_seed(spec["seed"])
        clock = StepClock()
        flow, config, note = build(name)
        flow.compile(optimizer=keras.optimizers.Adam(spec["lr"]))
        if not flow.built:
            flow.build((None, dim))
        params = int(sum(np.prod(w.shape) for w in flow.trainable_weights))
        data = tf.data.Dataset.from_tensor_slices(train[batches]).prefetch(2)

        class Tick(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                float(logs["loss"])  # waits for the step
                clock.tick()

        flow.fit(data, epochs=1, verbose=0, shuffle=False, callbacks=[Tick()])
        x = eval_rows(spec, name, test)
        t1 = time.perf_counter()  # Flow.log_prob traces itself once for any batch size
        lp = np.concatenate([flow.log_prob(c).numpy() for c in chunks(x, spec["eval_chunk"])])
        return {
            **clock.summary(),
            **nll_of(lp),
            "eval_s": time.perf_counter() - t1,
            "params": params,
            "config": config,
            "note": note,
        }

    def warmup():
        """A tiny flow trained for two steps: the runtime's one-off costs, paid once here."""
        flow = kflows.maf(num_layers=1, hidden_units=(4,), event_dim=dim)
        flow.compile(optimizer=keras.optimizers.Adam(spec["lr"]))
        flow.fit(train[: 2 * 8], batch_size=8, epochs=1, verbose=0)
        flow.log_prob(test[:2]).numpy()

    versions = {"tensorflow": tf.__version__, "keras": keras.__version__}
    return import_s, warmup, run, versions


# ------------------------------------------------------------------ the zuko child
def child_zuko(spec: dict, train, test, batches):
    t0 = time.perf_counter()
    import torch
    import zuko

    import_s = time.perf_counter() - t0
    dim = train.shape[1]

    def make(name):
        cls, options, note = PEERS[name]["zuko"]
        layers, hidden = sizes(spec, name)
        kwargs = {"hidden_features": hidden, **options}
        if cls == "CNF":
            kwargs.update(rtol=spec["ode_tol"], atol=spec["ode_tol"])
            kwargs["exact"] = trace_for(spec, dim) == "exact"
        elif cls == "GF":
            kwargs = {"transforms": layers, **options}
        else:
            kwargs["transforms"] = layers
        config = f"{cls}({', '.join(f'{k}={v}' for k, v in kwargs.items())})"
        return getattr(zuko.flows, cls)(dim, **kwargs), config, note

    def run(name):
        torch.manual_seed(spec["seed"])
        clock = StepClock()
        flow, config, note = make(name)
        opt = torch.optim.Adam(flow.parameters(), lr=spec["lr"])
        params = sum(p.numel() for p in flow.parameters() if p.requires_grad)
        data = torch.from_numpy(train)
        for index in batches:
            loss = -flow().log_prob(data[torch.from_numpy(index)]).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss.item()
            clock.tick()
        x = eval_rows(spec, name, test)
        t1 = time.perf_counter()
        with torch.no_grad():
            dist = flow()
            lp = np.concatenate(
                [dist.log_prob(torch.from_numpy(c)).numpy() for c in chunks(x, spec["eval_chunk"])]
            )
        return {
            **clock.summary(),
            **nll_of(lp),
            "eval_s": time.perf_counter() - t1,
            "params": int(params),
            "config": config,
            "note": note,
        }

    def warmup():
        """A tiny flow and one Adam step (torch's first optimizer step imports a lot)."""
        flow = zuko.flows.MAF(dim, transforms=1, hidden_features=(4,))
        opt = torch.optim.Adam(flow.parameters(), lr=spec["lr"])
        loss = -flow().log_prob(torch.from_numpy(train[:8])).mean()
        loss.backward()
        opt.step()

    versions = {"torch": torch.__version__, "zuko": zuko.__version__}
    versions["threads"] = torch.get_num_threads()
    return import_s, warmup, run, versions


# ------------------------------------------------------------------ the FlowJAX child
def child_flowjax(spec: dict, train, test, batches):
    t0 = time.perf_counter()
    import equinox as eqx
    import flowjax
    import jax
    import jax.numpy as jnp
    import optax
    import paramax
    from flowjax import flows
    from flowjax.bijections import Affine, RationalQuadraticSpline
    from flowjax.distributions import Normal

    import_s = time.perf_counter() - t0
    dim = train.shape[1]

    def is_leaf(leaf):
        return isinstance(leaf, paramax.NonTrainable)

    def make(name):
        fn, options, note = PEERS[name]["flowjax"]
        layers, hidden = sizes(spec, name)
        kwargs = {"flow_layers": layers}
        if fn in ("masked_autoregressive_flow", "coupling_flow"):
            kwargs["transformer"] = (
                RationalQuadraticSpline(knots=SPLINE_BINS, interval=SPLINE_BOUND)
                if options["transformer"] == "spline"
                else Affine()
            )
            kwargs.update(nn_width=hidden[0], nn_depth=len(hidden))
            if len(set(hidden)) > 1:
                note = f"one width for all hidden layers: {hidden[0]}"
        elif fn == "block_neural_autoregressive_flow":
            kwargs.update(nn_depth=len(hidden), nn_block_dim=max(8, hidden[0] // dim))
        shown = {k: (type(v).__name__ if k == "transformer" else v) for k, v in kwargs.items()}
        # A fixed standard normal base, as kflows' and zuko's.
        base = paramax.non_trainable(Normal(jnp.zeros(dim)))
        flow = getattr(flows, fn)(jax.random.key(spec["seed"]), base_dist=base, **kwargs)
        config = f"{fn}({', '.join(f'{k}={v}' for k, v in shown.items())})"
        return flow, config, note

    def loss_fn(params, static, x):
        return -paramax.unwrap(eqx.combine(params, static)).log_prob(x).mean()

    def run(name):
        clock = StepClock()
        flow, config, note = make(name)
        params, static = eqx.partition(flow, eqx.is_inexact_array, is_leaf=is_leaf)
        opt = optax.adam(spec["lr"])
        state = opt.init(params)

        @eqx.filter_jit
        def step(params, state, x):
            loss, grads = eqx.filter_value_and_grad(loss_fn)(params, static, x)
            updates, state = opt.update(grads, state, params)
            return eqx.apply_updates(params, updates), state, loss

        count = sum(leaf.size for leaf in jax.tree_util.tree_leaves(params))
        data = jnp.asarray(train)
        for index in batches:
            params, state, loss = step(params, state, data[jnp.asarray(index)])
            loss.block_until_ready()
            clock.tick()
        dist = paramax.unwrap(eqx.combine(params, static))
        log_prob = eqx.filter_jit(lambda d, x: d.log_prob(x))
        x = eval_rows(spec, name, test)
        t1 = time.perf_counter()
        lp = np.concatenate(
            [np.asarray(log_prob(dist, jnp.asarray(c))) for c in chunks(x, spec["eval_chunk"])]
        )
        return {
            **clock.summary(),
            **nll_of(lp),
            "eval_s": time.perf_counter() - t1,
            "params": int(count),
            "config": config,
            "note": note,
        }

    def warmup():
        flow = flows.masked_autoregressive_flow(
            jax.random.key(0), base_dist=Normal(jnp.zeros(dim)), flow_layers=1, nn_width=4
        )
        eqx.filter_jit(eqx.filter_grad(lambda f, x: f.log_prob(x).mean()))(
            paramax.unwrap(flow), jnp.asarray(train[:8])
        )

    versions = {"jax": jax.__version__, "flowjax": getattr(flowjax, "__version__", "?")}
    return import_s, warmup, run, versions


CHILDREN = {"kflows": child_kflows, "zuko": child_zuko, "flowjax": child_flowjax}


def child_main(framework: str, spec: dict):
    """One framework, one dataset, the spec's models in turn: a RESULT line per model."""
    with np.load(spec["data"]) as archive:
        train, test, batches = archive["train"], archive["test"], archive["batches"]
    import_s, warmup, run, versions = CHILDREN[framework](spec, train, test, batches)
    t0 = time.perf_counter()
    try:
        warmup()
        warm = {"warmup_s": time.perf_counter() - t0}
    except Exception as err:  # reported, the models still run
        warm = {"warmup_s": None, "warmup_error": error_text(err)}
    emit("CHILD", {"import_s": import_s, **warm, "versions": versions})
    off_circle = float(np.max(np.abs(np.concatenate([train, test])))) >= np.pi
    for name in spec["models"]:
        emit("START", {"builder": name})
        try:
            if name in CIRCULAR and off_circle:
                raise ValueError(
                    f"{name} models angles in [-pi, pi); this dataset has values outside "
                    "(its NLL would be infinite for a reason of data, not of the model)"
                )
            result = run(name)
        except Exception as err:  # a failing model is reported with its error
            result = {"error": error_text(err)}
        emit("RESULT", {"builder": name, **result})


# ------------------------------------------------------------------ the orchestrator
def available_builders(kflows_root: str) -> list[str]:
    """The builder names of the checkout at ``kflows_root`` (``kflows._names.BUILDERS``, the
    one list that kflows.builders, kflows.cli and kflows' namespace read), without TF."""
    sys.path.insert(0, kflows_root)
    try:
        from kflows._names import BUILDERS
    except Exception as err:  # a half-edited checkout must not stop the catalog
        print(f"# kflows._names.BUILDERS unreadable: {error_text(err)}", file=sys.stderr)
        return []
    finally:
        sys.path.remove(kflows_root)
    return sorted(BUILDERS)


def write_data(name: str, args, directory: str) -> dict:
    """The dataset's fixed train and test splits and the batches, in one ``.npz``."""
    sys.path.insert(0, args.kflows_root)
    try:
        from kflows import data
    finally:
        sys.path.remove(args.kflows_root)
    dataset = data.DATASETS.get(name)
    if dataset is None:
        raise SystemExit(f"Expected datasets from {sorted(data.DATASETS)}; got {name!r}.")
    if dataset.context_columns:
        raise SystemExit(f"Expected an unconditional dataset; {name!r} has context columns.")
    train = data.load(name, "train", args.seed)
    test = data.load(name, "test", args.seed)
    if args.test_rows:
        test = test[: args.test_rows]
    batch = min(args.batch, len(train))
    path = os.path.join(directory, f"{name}.npz")
    batches = np.stack(common.batch_indices(len(train), batch, args.steps, args.seed))
    batches = batches.astype(np.int64)
    np.savez(path, train=train, test=test, batches=batches)
    return {
        "name": name,
        "path": path,
        "kind": dataset.kind,
        "dim": int(train.shape[1]),
        "train_rows": len(train),
        "test_rows": len(test),
        "batch": batch,
    }


def pump(stream, lines: queue.Queue):
    """Puts the lines of ``stream`` on ``lines``, then None at its end."""
    for line in stream:
        lines.put(line)
    lines.put(None)


def follow(proc, spec: dict, args, info: dict, results: dict, left: list):
    """Reads a child's lines until it ends or a model runs past ``--model-timeout``.

    Returns the model that was running when it stopped (None between models) and why it
    stopped early (None when it simply ended).
    """
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=pump, args=(proc.stdout, lines), daemon=True).start()
    current, started = None, time.perf_counter()
    while True:
        limit = args.model_timeout if current else args.model_timeout + 120  # + imports
        try:
            line = lines.get(timeout=max(0.0, started + limit - time.perf_counter()))
        except queue.Empty:
            return current, f"timed out after {limit:.0f} s"
        if line is None:
            return current, None
        kind, _, payload = line.partition(" ")
        if kind == "CHILD":
            info.setdefault("children", []).append(json.loads(payload))
        elif kind == "START":
            current, started = json.loads(payload)["builder"], time.perf_counter()
        elif kind == "RESULT":
            result = json.loads(payload)
            result["wall_s"] = time.perf_counter() - started
            results[current] = result
            left.remove(current)
            label = result.get("error") or f"NLL {result['test_nll']:.3f}"
            print(f"# {spec['dataset']} {spec['framework']} {current}: {label}", file=sys.stderr)
            current, started = None, time.perf_counter()


def run_child(framework: str, python: str, spec: dict, args, info: dict, results: dict):
    """Runs the spec's models in children of ``framework``: a killed or crashed child is
    replaced by a fresh one for the models left. Fills ``info`` (imports and warm-up of
    each child) and ``results`` (builder -> result) as the models finish."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    if framework == "kflows":  # the kflows of this checkout (or --kflows-root)
        env["PYTHONPATH"] = os.pathsep.join([args.kflows_root, env.get("PYTHONPATH", "")])
    left = list(spec["models"])
    while left:
        child = {**spec, "framework": framework, "models": left}
        cmd = [python, str(Path(__file__).resolve()), "--child", framework]
        with tempfile.TemporaryFile("w+") as err:
            proc = subprocess.Popen(
                [*cmd, "--spec", json.dumps(child)],
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                env=env,
            )
            try:
                current, failure = follow(proc, child, args, info, results, left)
            finally:  # never leave a child behind (a timeout, an interrupt)
                if proc.poll() is None:
                    proc.kill()
            rc = proc.wait()
            if failure is None and left:
                err.seek(0)
                tail = " | ".join(err.read().strip().splitlines()[-3:])
                failure = f"child failed (rc {rc}): {tail}"[:300]
        if not left:
            break
        # Blame the model that was running, or all that are left if none had started.
        for name in [current] if current else list(left):
            results[name] = {"builder": name, "error": failure}
            left.remove(name)
            print(f"# {spec['dataset']} {framework} {name}: {failure}", file=sys.stderr)


def fmt(value, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.{digits}g}"


METRICS = [
    ("test_nll", "Test NLL, nats (lower is better)"),
    ("train_ms_per_step", "Train ms/step, median after warm-up (lower is better)"),
    ("first_step_s", "Time to first trained step, s (construction + trace + 1 step; lower)"),
    ("params", "Trainable parameters"),
]


def cell(result: dict | None, key: str, notes: list[str]) -> str:
    if result is None:
        return "—"
    if "not_run" in result:
        return "skipped" if result["not_run"] == "skipped" else "not run"
    if "error" in result:
        if result["error"] not in notes:
            notes.append(result["error"])
        return f"error [{notes.index(result['error']) + 1}]"
    value = result.get(key)
    if key == "test_nll" and value is not None:
        text = f"{value:.3f}" if np.isfinite(value) else str(value)
        if result.get("nonfinite_rows"):
            text += f" ({result['nonfinite_rows']}/{result['eval_rows']} rows non-finite)"
        return text
    return fmt(value) if key != "params" or value is None else f"{value:,}"


def tables(report: dict) -> str:
    datasets = report["datasets"]
    frameworks = report["frameworks"]
    results = report["results"]  # dataset -> framework -> builder -> result
    builders = report["builders"]
    notes: list[str] = []
    out = []
    head = "| builder | " + " | ".join(
        f"{d['name']} {LABELS[f]}" for d in datasets for f in frameworks
    )
    rule = "| --- |" + " --- |" * (len(datasets) * len(frameworks))
    for key, title in METRICS:
        out += [f"### {title}", "", head + " |", rule]
        for b in builders:
            cells = [
                cell(results[d["name"]][f].get(b), key, notes) for d in datasets for f in frameworks
            ]
            out.append(f"| {b} | " + " | ".join(cells) + " |")
        out.append("")
    out += [
        "— : no counterpart in that library.",
        "",
        "### Models and sizes",
        "",
        "| builder | " + " | ".join(LABELS[f] for f in frameworks) + " | sizes |",
        "| --- |" + " --- |" * (len(frameworks) + 1),
    ]
    for b in builders:
        configs, sizes_note = [], []
        for f in frameworks:
            found = [results[d["name"]][f].get(b) for d in datasets]
            found = [r for r in found if r and "config" in r]
            configs.append(f"`{found[0]['config']}`" if found else "—")
            sizes_note += [f"{LABELS[f]}: {r['note']}" for r in found[:1] if r.get("note")]
        text = "; ".join(sizes_note) or "layers and hidden widths matched"
        out.append(f"| {b} | " + " | ".join(configs) + f" | {text} |")
    out += [
        "",
        "### Runs",
        "",
        "| dataset | D | train rows | test rows | batch | framework | import s | warm-up s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for d in datasets:
        for f in frameworks:
            info = report["children"][d["name"]].get(f, {})
            kids = info.get("children") or [{}]
            imp = fmt(kids[0].get("import_s")) if kids[0] else "not run"
            warm = fmt(kids[0].get("warmup_s")) if kids[0] else "not run"
            out.append(
                f"| {d['name']} | {d['dim']} | {d['train_rows']} | {d['test_rows']} | "
                f"{d['batch']} | {LABELS[f]} | {imp} | {warm} |"
            )
    spec = report["spec"]
    ode = [b for b in builders if b in ODE_BUILDERS]
    ode += ["zuko's CNF"] if "zuko" in frameworks and "ffjord" in ode else []
    out += [
        "",
        f"Budget: {spec['steps']} Adam steps (lr {spec['lr']:g}) of batch "
        f"{spec['batch']} (or the whole train split when smaller), the same batches in the "
        f"same order for every model; seed {spec['seed']}; {spec['layers']} layers "
        f"({', '.join(f'{k}: {v}' for k, v in spec['layer_overrides'].items())}) of hidden "
        f"widths {tuple(spec['hidden'])}.",
        "Test NLL: mean over the test split"
        + (
            f"; ODE flows ({', '.join(ode)}) on the first {spec['ode_test_rows']} rows only"
            if spec["ode_test_rows"]
            else ""
        )
        + f"; ODE tolerances rtol = atol = {spec['ode_tol']:g}, trace {spec['trace']}"
        + (f" (exact up to D = {EXACT_TRACE_MAX_DIM})" if spec["trace"] == "auto" else "")
        + ".",
    ]
    if report.get("interrupted"):
        out.append("Interrupted: models marked 'not run' had not finished.")
    if report["skipped"]:
        out.append(f"Skipped (--skip): {', '.join(report['skipped'])}.")
    if report["missing"]:
        out.append(f"Not run, no such kflows builder (yet): {', '.join(report['missing'])}.")
    if notes:
        out += ["", "Errors:", ""] + [f"{i}. {text}" for i, text in enumerate(notes, 1)]
    return "\n".join(out)


def parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--datasets", nargs="+", default=list(DEFAULT_DATASETS), help="kflows.data names")
    add("--builders", nargs="+", help="kflows builders (default: all that exist)")
    add(
        "--skip", nargs="+", default=[], metavar="[FRAMEWORK:]NAME",
        help="builders not to run (ffjord), or one framework's counterpart (zuko:ffjord)",
    )  # fmt: skip
    add("--frameworks", nargs="+", default=list(FRAMEWORKS), choices=FRAMEWORKS)
    add("--steps", type=int, default=500)
    add("--batch", type=int, default=256)
    add("--lr", type=float, default=1e-3)
    add("--seed", type=int, default=0)
    add("--layers", type=int, default=5, help="layers of every model (see FIXED_LAYERS)")
    add("--hidden", type=int, nargs="+", default=[64, 64], help="hidden widths, e.g. 64 64")
    add(
        "--layer-overrides", nargs="+", default=[], metavar="NAME=N",
        help="layers of one builder and its counterparts, e.g. planar=20",
    )  # fmt: skip
    add("--ode-tol", type=float, default=1e-5, help="rtol = atol of the ODE flows")
    add(
        "--trace", choices=("auto", "exact", "hutchinson"), default="auto",
        help=f"of the ODE flows (auto: exact up to D = {EXACT_TRACE_MAX_DIM}, else hutchinson)",
    )  # fmt: skip
    add("--ode-test-rows", type=int, default=1000, help="test rows of ODE flows (0: all)")
    add("--test-rows", type=int, default=0, help="test rows of every model (0: all)")
    add("--eval-chunk", type=int, default=4096)
    add("--model-timeout", type=float, default=900.0, help="seconds per model and framework")
    add("--quick", action="store_true", help="smoke sizes: two_moons, 20 steps, tiny models")
    add("--torch-python", default=os.environ.get("KFLOWS_BENCH_TORCH_PYTHON"))
    add("--jax-python", default=os.environ.get("KFLOWS_BENCH_JAX_PYTHON"))
    add("--kflows-root", default=str(HERE.parent), help="checkout whose kflows to run")
    add("--json", help="write everything to this file")
    add("--markdown", help="write the tables to this file")
    add("--child", choices=FRAMEWORKS, help=argparse.SUPPRESS)
    add("--spec", help=argparse.SUPPRESS)
    if parser.parse_known_args(argv)[0].quick:  # new defaults; explicit options still win
        parser.set_defaults(
            datasets=["two_moons"], steps=20, batch=64, layers=2, hidden=[16], ode_tol=1e-3,
            ode_test_rows=64, test_rows=256,
        )  # fmt: skip
    args = parser.parse_args(argv)
    for name, value in (("steps", args.steps), ("batch", args.batch), ("layers", args.layers)):
        if value < 1:
            parser.error(f"Expected --{name} >= 1; got {value}.")
    try:
        args.layer_overrides = {
            **FIXED_LAYERS,
            **{k: int(v) for k, v in (item.split("=", 1) for item in args.layer_overrides)},
        }
    except ValueError:
        parser.error(f"Expected --layer-overrides NAME=N ...; got {args.layer_overrides}.")
    return args


def run_dataset(name: str, args, spec: dict, builders: list, report: dict, tmp: str):
    """Every framework on one dataset, one child after the other, into ``report``."""
    python = {"kflows": sys.executable, "zuko": args.torch_python, "flowjax": args.jax_python}
    data = write_data(name, args, tmp)
    report["datasets"].append(data)
    report["results"][name], report["children"][name] = {}, {}
    for framework in args.frameworks:
        models = [b for b in builders if framework == "kflows" or framework in PEERS.get(b, {})]
        skipped = [b for b in models if f"{framework}:{b}" in args.skip]
        models = [b for b in models if b not in skipped]
        # Filled in as the models finish, so that an interrupted run still shows them.
        out = report["results"][name][framework] = {
            b: {"builder": b, "not_run": "interrupted"} for b in models
        }
        out.update({b: {"builder": b, "not_run": "skipped"} for b in skipped})
        info = report["children"][name][framework] = {}
        py = python[framework]
        if not models:
            continue
        if not py or not (Path(py).exists() or shutil.which(py)):
            why = "no interpreter given" if not py else f"interpreter {py} not found"
            out.update({b: {"builder": b, "not_run": why} for b in models})
            info["not_run"] = why
            continue
        child = {**spec, "dataset": name, "data": data["path"], "models": models}
        run_child(framework, py, child, args, info, out)
        if args.json:  # what is done so far, in case a later child hangs
            Path(args.json).write_text(json.dumps(report, indent=1))


def main(argv=None):
    args = parse(argv)
    if args.child:
        child_main(args.child, json.loads(args.spec))
        return None
    known = available_builders(args.kflows_root)
    wanted = args.builders or known
    missing = [b for b in wanted if b not in known]
    skipped = [b for b in args.skip if b in wanted or b.partition(":")[2] in wanted]
    builders = [b for b in wanted if b in known and b not in args.skip]
    spec = {
        "steps": args.steps,
        "batch": args.batch,
        "lr": args.lr,
        "seed": args.seed,
        "layers": args.layers,
        "hidden": args.hidden,
        "layer_overrides": args.layer_overrides,
        "ode_tol": args.ode_tol,
        "trace": args.trace,
        "ode_test_rows": args.ode_test_rows,
        "eval_chunk": args.eval_chunk,
    }
    report = {
        "machine": common.machine(),
        "argv": sys.argv,
        "spec": spec,
        "frameworks": args.frameworks,
        "builders": builders,
        "missing": missing,
        "skipped": skipped,
        "datasets": [],
        "results": {},
        "children": {},
    }
    t0 = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory(prefix="kflows-catalog-") as tmp:
            for name in args.datasets:
                run_dataset(name, args, spec, builders, report, tmp)
    except KeyboardInterrupt:  # the tables still show what finished
        report["interrupted"] = True
    report["wall_s"] = time.perf_counter() - t0
    text = tables(report)
    print(text)
    print(f"\nMachine: {report['machine']}\nTotal wall time: {report['wall_s']:.0f} s")
    if args.markdown:
        Path(args.markdown).write_text(text + f"\n\nMachine: {report['machine']}\n")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
