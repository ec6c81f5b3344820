"""The shared benchmark spec: data, architecture, batches, timing and the result format.

Every framework runs in its own process (``bench_kflows.py``, ``bench_tfp.py``,
``bench_zuko.py``, ``bench_flowjax.py``) and imports only this file and NumPy from here, so
that the reference virtual environments need neither TensorFlow nor kflows. A child reads
its spec as JSON from ``--spec`` and prints one line ``RESULT {json}`` on stdout.

The data is made once by :func:`make_data` (seeded, saved as ``.npy``) and every child trains
on the same batches in the same order (:func:`batch_indices`), so the test NLLs compare.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np

#: Flows every framework implements: structure and element-wise transform.
FLOWS = {
    "maf": {"structure": "autoregressive", "transform": "affine"},
    "realnvp": {"structure": "coupling", "transform": "affine"},
    "nsf_ar": {"structure": "autoregressive", "transform": "spline"},
    "nsf_coupling": {"structure": "coupling", "transform": "spline"},
}

#: Spline settings shared by all NSF implementations (bins, tail bound).
SPLINE_BINS = 8
SPLINE_BOUND = 5.0
#: Soft bound of the affine log-scale (kflows' default; the others are close to it).
LOG_SCALE_BOUND = 5.0

DEFAULTS = {
    "flow": "maf",
    "dim": 8,
    "hidden": 128,
    "depth": 2,
    "layers": 5,
    "batch": 512,
    "steps": 200,  # training steps, also the steps behind the test NLL
    "window": 20,  # steps per timing window; ms/step is the fastest window
    "eval_batch": 4096,  # log_prob / sampling / export throughput batch
    "throughput_reps": 5,
    "latency_reps": 200,
    "learning_rate": 1e-3,
    "seed": 0,
}


def make_data(dim: int, num_train: int, num_test: int, seed: int, out_dir) -> dict:
    """Writes a seeded, non-Gaussian D-dimensional data set; returns the ``.npy`` paths.

    Two correlated Gaussian clusters bent by a ``tanh`` nonlinearity: multimodal, skewed and
    dependent across features, so that neither a Gaussian nor an independent model fits.
    """
    rng = np.random.default_rng(seed)
    n = num_train + num_test
    mix = rng.normal(size=(dim, dim)) / np.sqrt(dim)
    centers = rng.normal(size=(2, dim)) * 1.5
    z = rng.normal(size=(n, dim))
    x = z @ mix + centers[rng.integers(0, 2, size=n)]
    x = x + 0.5 * np.tanh(x[:, ::-1] * 1.5)
    x = ((x - x.mean(0)) / x.std(0)).astype(np.float32)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "train": str(out / f"train_d{dim}_s{seed}.npy"),
        "test": str(out / f"test_d{dim}_s{seed}.npy"),
    }
    np.save(paths["train"], x[:num_train])
    np.save(paths["test"], x[num_train:])
    return paths


def batch_indices(num_rows: int, batch: int, steps: int, seed: int):
    """Row indices of each training batch: shuffled epochs, full batches only."""
    rng = np.random.default_rng(seed + 1)
    per_epoch = num_rows // batch
    if per_epoch == 0:
        raise ValueError(f"Expected at least one batch of {batch} rows; got {num_rows} rows.")
    out = []
    while len(out) < steps:
        perm = rng.permutation(num_rows)
        out.extend(perm[i * batch : (i + 1) * batch] for i in range(per_epoch))
    return out[:steps]


def load(spec: dict):
    """Train and test arrays and the training batches (as arrays) of a spec."""
    train = np.load(spec["data"]["train"])
    test = np.load(spec["data"]["test"])
    batches = [train[i] for i in batch_indices(len(train), spec["batch"], spec["steps"], 0)]
    return train, test, batches


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class Timer:
    """Times a training loop: first step (from model construction) and windows of steps."""

    def __init__(self, window: int):
        self.window = window
        self.windows: list[float] = []
        self.cpu_windows: list[float] = []
        self.start = time.perf_counter()
        self.first_step_s = None
        self._mark = None
        self._count = 0

    def after_first_step(self):
        self.first_step_s = time.perf_counter() - self.start
        self._mark, self._cpu_mark = time.perf_counter(), time.process_time()

    def after_step(self, sync):
        """Call after each later step; ``sync()`` waits for the device (only at window ends)."""
        self._count += 1
        if self._count == self.window:
            sync()
            now, cpu = time.perf_counter(), time.process_time()
            self.windows.append((now - self._mark) / self.window * 1e3)
            self.cpu_windows.append((cpu - self._cpu_mark) / self.window * 1e3)
            self._mark, self._cpu_mark, self._count = now, cpu, 0

    def ms_per_step(self) -> dict:
        if not self.windows:
            return {"train_ms_per_step": None, "train_ms_per_step_median": None}
        # CPU time (all threads) is less disturbed by other processes than wall time.
        return {
            "train_ms_per_step": min(self.windows),
            "train_ms_per_step_median": statistics.median(self.windows),
            "train_cpu_ms_per_step": min(self.cpu_windows),
        }


def best_time(fn, reps: int, budget_s: float = 3.0) -> float:
    """Fastest of up to ``reps`` calls of ``fn`` (which must block until done), in seconds.

    Stops early once ``budget_s`` is spent, so that slow configurations (autoregressive
    sampling of a slow reference) do not dominate the run; at least one timed call runs.
    """
    fn()
    best, spent = float("inf"), 0.0
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        elapsed = time.perf_counter() - t0
        best, spent = min(best, elapsed), spent + elapsed
        if spent > budget_s:
            break
    return best


def parse_spec(description: str) -> dict:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--spec", required=True, help="JSON spec (see benchmarks/common.py)")
    spec = {**DEFAULTS, **json.loads(parser.parse_args().spec)}
    if spec["flow"] not in FLOWS:
        raise ValueError(f"Expected flow in {sorted(FLOWS)}; got {spec['flow']!r}.")
    return spec


def emit(spec: dict, framework: str, metrics: dict):
    """Prints the one result line the orchestrator reads."""
    result = {"framework": framework, "spec": spec, "peak_rss_mb": peak_rss_mb(), **metrics}
    sys.stdout.write("RESULT " + json.dumps(result) + "\n")
    sys.stdout.flush()


def not_run(spec: dict, framework: str, reason: str):
    """Reports a configuration this framework cannot run (e.g. a missing transform)."""
    emit(spec, framework, {"not_run": reason})


def machine() -> str:
    """The platform, CPU count and model, and Python version, for a results header."""
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{platform.platform()}; {os.cpu_count()} CPUs ({cpu}); Python {platform.python_version()}"
    )
