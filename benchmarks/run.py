"""Benchmark kflows against raw TFP, zuko and FlowJAX on the same data, architecture and batch.

Each framework runs in its own subprocess (``bench_<framework>.py``) so that imports,
threads and peak memory do not mix; the children run one after the other, never together.
Results are ratios kflows / reference measured in this run.

Usage::

    python benchmarks/run.py                                   # headline config, 4 flows
    python benchmarks/run.py --torch-python "$TORCH_VENV/bin/python" \\
        --jax-python "$JAX_VENV/bin/python" --json results.json
    python benchmarks/run.py --sweep                           # D x hidden x batch grid

A reference whose interpreter is missing is reported as "not run". Interpreters also come
from the environment: ``KFLOWS_BENCH_TORCH_PYTHON``, ``KFLOWS_BENCH_JAX_PYTHON``,
``KFLOWS_BENCH_TF_PYTHON`` (TF + TFP + tf_keras; this interpreter by default).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import common  # noqa: E402

FRAMEWORKS = ("kflows", "tfp", "zuko", "flowjax")
REFERENCES = FRAMEWORKS[1:]

#: (key, label, how to compare): "ratio" = kflows / reference, "diff" = kflows - reference.
METRICS = [
    ("train_ms_per_step", "train ms/step (lower is better)", "ratio"),
    ("train_cpu_ms_per_step", "train CPU ms/step, all threads (lower)", "ratio"),
    ("first_step_s", "time to first trained step, s (lower)", "ratio"),
    ("log_prob_pts_per_s", "log_prob points/s, batch 4096 (higher)", "ratio"),
    ("sample_pts_per_s", "sample points/s, batch 4096 (higher)", "ratio"),
    ("inprocess_log_prob_b1_ms", "compiled log_prob latency, batch 1, ms (lower)", "ratio"),
    ("export_log_prob_b1_ms", "export log_prob latency, batch 1, ms (lower)", "ratio"),
    ("export_log_prob_pts_per_s", "export log_prob points/s, batch 4096 (higher)", "ratio"),
    ("peak_rss_mb", "peak RSS, MiB (lower)", "ratio"),
    ("test_nll", "test NLL after the same steps, nats (lower)", "diff"),
]


def interpreters(args) -> dict:
    return {
        "kflows": args.tf_python,
        "tfp": args.tf_python,
        "zuko": args.torch_python,
        "flowjax": args.jax_python,
    }


def run_child(
    framework: str, python: str | None, spec: dict, timeout: float, kflows_root: str
) -> dict:
    """Runs one framework on one spec; a failure becomes a result saying why."""
    if framework not in ("kflows", "tfp") and not python:
        return {"framework": framework, "not_run": "no interpreter given"}
    if python and not shutil.which(python) and not Path(python).exists():
        return {"framework": framework, "not_run": f"interpreter {python} not found"}
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    if framework in ("kflows", "tfp"):
        # The kflows of this checkout (or --kflows-root), not an installed one.
        env["PYTHONPATH"] = os.pathsep.join([kflows_root, env.get("PYTHONPATH", "")])
    cmd = [python, str(HERE / f"bench_{framework}.py"), "--spec", json.dumps(spec)]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"framework": framework, "not_run": f"timed out after {timeout:.0f} s"}
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            result = json.loads(line[len("RESULT ") :])
            result["wall_s"] = time.perf_counter() - t0
            return result
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    return {"framework": framework, "not_run": f"failed (rc {proc.returncode}): {' | '.join(tail)}"}


def configs(args) -> list[dict]:
    if args.sweep:
        grid = itertools.product(args.flows, (2, 8, 32, 64), (128, 512), (512, 4096))
    else:
        grid = itertools.product(args.flows, args.dim, args.hidden, args.batch)
    return [
        {"flow": f, "dim": d, "hidden": h, "batch": b, "layers": args.layers, "steps": args.steps}
        for f, d, h, b in grid
    ]


def fmt(value) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, str):
        return value
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}" if abs(value) >= 0.01 else f"{value:.2g}"


def compare(kf: dict, ref: dict, key: str, how: str) -> str:
    if "not_run" in ref:
        return "not run"
    a, b = kf.get(key), ref.get(key)
    if a is None or b is None:
        return "n/a"
    if how == "diff":
        return f"{a - b:+.3f}"
    return f"{a / b:.2f}x" if b else "n/a"


def config_name(spec: dict) -> str:
    return f"{spec['flow']} D={spec['dim']} H={spec['hidden']} B={spec['batch']}"


def tables(rows: list[tuple[dict, dict]]) -> str:
    """The ratio table (kflows / reference) and the absolute values of every framework."""
    out = [
        "### Ratios kflows / reference (NLL: kflows - reference, nats)",
        "",
        "| config | metric | kflows | / raw TFP | / zuko | / FlowJAX |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for spec, results in rows:
        kf = results["kflows"]
        if "not_run" in kf:
            out.append(f"| {config_name(spec)} | all | not run: {kf['not_run']} | | | |")
            continue
        for key, label, how in METRICS:
            cells = [compare(kf, results[r], key, how) for r in REFERENCES]
            out.append(
                f"| {config_name(spec)} | {label} | {fmt(kf.get(key))} | "
                + " | ".join(cells)
                + " |"
            )
    out += [
        "",
        "### Absolute values",
        "",
        "| config | metric | " + " | ".join(FRAMEWORKS) + " |",
        "| --- | --- | " + " | ".join("---" for _ in FRAMEWORKS) + " |",
    ]
    for spec, results in rows:
        for key, label, _ in METRICS:
            cells = [
                "not run" if "not_run" in results[f] else fmt(results[f].get(key))
                for f in FRAMEWORKS
            ]
            out.append(f"| {config_name(spec)} | {label} | " + " | ".join(cells) + " |")
    notes = [
        f"- {config_name(spec)}: {f}: {results[f]['not_run']}"
        for spec, results in rows
        for f in FRAMEWORKS
        if "not_run" in results[f]
    ]
    if notes:
        out += ["", "Not run:", "", *notes]
    return "\n".join(out)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--flows", nargs="+", default=list(common.FLOWS), choices=list(common.FLOWS)
    )
    parser.add_argument("--dim", nargs="+", type=int, default=[8])
    parser.add_argument("--hidden", nargs="+", type=int, default=[128])
    parser.add_argument("--batch", nargs="+", type=int, default=[512])
    parser.add_argument("--layers", type=int, default=5)
    parser.add_argument("--steps", type=int, default=common.DEFAULTS["steps"])
    parser.add_argument(
        "--sweep",
        action="store_true",
        help="D in {2,8,32,64} x hidden in {128,512} x batch in {512,4096}",
    )
    parser.add_argument("--frameworks", nargs="+", default=list(FRAMEWORKS), choices=FRAMEWORKS)
    parser.add_argument(
        "--tf-python", default=os.environ.get("KFLOWS_BENCH_TF_PYTHON", sys.executable)
    )
    parser.add_argument("--torch-python", default=os.environ.get("KFLOWS_BENCH_TORCH_PYTHON"))
    parser.add_argument("--jax-python", default=os.environ.get("KFLOWS_BENCH_JAX_PYTHON"))
    parser.add_argument("--num-train", type=int, default=20000)
    parser.add_argument("--num-test", type=int, default=5000)
    parser.add_argument("--extra", default="{}", help="JSON merged into every spec")
    parser.add_argument(
        "--timeout", type=float, default=240.0, help="seconds per framework process"
    )
    parser.add_argument("--json", help="write all results to this file")
    parser.add_argument(
        "--kflows-root", default=str(HERE.parent), help="checkout whose kflows to benchmark"
    )
    args = parser.parse_args(argv)

    python = interpreters(args)
    t0 = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory(prefix="kflows-bench-") as tmp:
        for spec in configs(args):
            spec = {
                **spec,
                **json.loads(args.extra),
                "data": common.make_data(
                    spec["dim"], args.num_train, args.num_test, common.DEFAULTS["seed"], tmp
                ),
            }
            results = {}
            for framework in FRAMEWORKS:
                if framework not in args.frameworks:
                    results[framework] = {"framework": framework, "not_run": "not selected"}
                    continue
                results[framework] = run_child(
                    framework, python[framework], spec, args.timeout, args.kflows_root
                )
                status = results[framework].get("not_run", "ok")
                print(f"# {config_name(spec)} {framework}: {status}", file=sys.stderr, flush=True)
            rows.append((spec, results))
    elapsed = time.perf_counter() - t0
    print(tables(rows))
    print(f"\nMachine: {common.machine()}\nTotal wall time: {elapsed:.0f} s")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "machine": common.machine(),
                    "argv": sys.argv,
                    "wall_s": elapsed,
                    "results": [{"spec": s, "results": r} for s, r in rows],
                },
                indent=1,
            )
        )
    return rows


if __name__ == "__main__":
    main()
