"""Training on rows streamed from a ``.npy`` file: peak memory must not grow with the rows.

Writes ``rows x D`` float32 data to a ``.npy`` file, then trains a kflows MAF for one epoch
on it through a ``tf.data`` pipeline that reads the file memory-mapped, one chunk at a
time, so only a few chunks are ever resident. Each size runs in its own process; the
report compares peak RSS (``ru_maxrss``) of 1,000,000 rows with that of 100,000 rows.

Usage::

    python benchmarks/stream.py                          # 1,000,000 vs 100,000 rows, D=8
    python benchmarks/stream.py --rows 200000 20000 --batch 1024
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def write_npy(path: str, rows: int, dim: int, seed: int = 0, chunk: int = 100_000):
    """Writes the data chunk by chunk into a memory-mapped file (never all in memory)."""
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(rows, dim))
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(dim, dim)) / np.sqrt(dim)
    for start in range(0, rows, chunk):
        z = rng.normal(size=(min(chunk, rows - start), dim))
        x = z @ mix
        out[start : start + len(z)] = x + 0.5 * np.tanh(x[:, ::-1] * 1.5)
    out.flush()
    del out


def streamed_dataset(path: str, batch: int, chunk_rows: int, seed: int):
    """Batches from a memory-mapped ``.npy``: chunks in random order, rows shuffled inside."""
    import tensorflow as tf

    data = np.load(path, mmap_mode="r")
    rows, dim = data.shape
    starts = np.arange(0, rows, chunk_rows)

    def chunks():
        rng = np.random.default_rng(seed)
        for start in rng.permutation(starts):
            # Copying one chunk out of the memmap is the only read of the file.
            block = np.array(data[start : start + chunk_rows])
            yield block[rng.permutation(len(block))]

    spec = tf.TensorSpec([None, dim], tf.float32)
    return (
        tf.data.Dataset.from_generator(chunks, output_signature=spec)
        .unbatch()
        .batch(batch, drop_remainder=True)
        .prefetch(tf.data.AUTOTUNE)
    )


def child(args):
    import tensorflow as tf

    import kflows

    data = np.load(args.path, mmap_mode="r")
    rows, dim = data.shape
    flow = kflows.maf(num_layers=5, hidden_units=(128, 128))
    flow.compile()
    dataset = streamed_dataset(args.path, args.batch, args.chunk_rows, seed=0)
    t0 = time.perf_counter()
    history = flow.fit(dataset, epochs=1, verbose=0)
    result = {
        "rows": rows,
        "dim": dim,
        "file_mb": os.path.getsize(args.path) / 2**20,
        "steps": rows // args.batch,
        "train_s": time.perf_counter() - t0,
        "final_loss": float(history.history["loss"][-1]),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "tensorflow": tf.__version__,
    }
    print("RESULT " + json.dumps(result), flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", nargs="+", type=int, default=[1_000_000, 100_000])
    parser.add_argument("--dim", type=int, default=8)
    parser.add_argument("--batch", type=int, default=2048)
    parser.add_argument("--chunk-rows", type=int, default=65_536)
    parser.add_argument("--path", help=argparse.SUPPRESS)  # set for the child process
    args = parser.parse_args(argv)
    if args.path:
        child(args)
        return None
    results = []
    with tempfile.TemporaryDirectory(prefix="kflows-stream-") as tmp:
        for rows in args.rows:
            path = os.path.join(tmp, f"x_{rows}.npy")
            write_npy(path, rows, args.dim)
            cmd = [
                sys.executable,
                __file__,
                "--path",
                path,
                "--batch",
                str(args.batch),
                "--chunk-rows",
                str(args.chunk_rows),
            ]
            env = dict(os.environ)
            env["PYTHONPATH"] = os.pathsep.join(
                [
                    os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                    env.get("PYTHONPATH", ""),
                ]
            )
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
            if not line:
                raise RuntimeError(f"streaming run failed: {proc.stderr[-2000:]}")
            results.append(json.loads(line[0][len("RESULT ") :]))
            os.remove(path)
    print("| rows | D | file MiB | steps | train s | final loss | peak RSS MiB |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        print(
            f"| {r['rows']:,} | {r['dim']} | {r['file_mb']:.1f} | {r['steps']} | "
            f"{r['train_s']:.1f} | {r['final_loss']:.3f} | {r['peak_rss_mb']:.0f} |"
        )
    if len(results) > 1:
        big, small = max(results, key=lambda r: r["rows"]), min(results, key=lambda r: r["rows"])
        growth = big["peak_rss_mb"] - small["peak_rss_mb"]
        print(
            f"\nPeak RSS grows by {growth:.0f} MiB from {small['rows']:,} to {big['rows']:,} "
            f"rows; the data itself grows by {big['file_mb'] - small['file_mb']:.0f} MiB."
        )
    return results


if __name__ == "__main__":
    main()
