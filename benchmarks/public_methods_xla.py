"""Batch-1 latency and batch-4096 throughput of a traced log_prob, with and without XLA.

Usage: python benchmarks/public_methods_xla.py maf   (any builder name)

Times ``tf.function(flow._score, jit_compile=False/True)`` alternately: the first two calls
(trace and compile), then best of 200 calls at batch 1 and of 10 at batch 4096, three
rounds. Results in RESULTS.md ("Traced public methods, and XLA for them").
"""

import sys
import time

import keras
import numpy as np
import tensorflow as tf

import kflows


def best(fn, x, reps):
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn(x).numpy()
        times.append(time.perf_counter() - start)
    return min(times)


def main(name):
    keras.utils.set_random_seed(0)
    flow = getattr(kflows, name)(num_layers=5, hidden_units=(128, 128), event_dim=8)
    rng = np.random.default_rng(0)
    x1 = tf.constant(rng.standard_normal((1, 8)).astype("float32"))
    xb = tf.constant(rng.standard_normal((4096, 8)).astype("float32"))
    signature = [tf.TensorSpec([None, 8], tf.float32)]
    functions = {}
    for jit in (False, True):
        start = time.perf_counter()
        fn = tf.function(lambda x: flow._score(x, None), input_signature=signature, jit_compile=jit)
        fn(x1).numpy()
        fn(xb).numpy()
        functions[jit] = fn
        print(name, "XLA" if jit else "no XLA", f"first calls {time.perf_counter() - start:.2f} s")
    for _ in range(3):
        for jit, fn in functions.items():
            b1, big = best(fn, x1, 200), best(fn, xb, 10)
            print(
                name,
                "XLA" if jit else "no XLA",
                f"batch 1 {b1 * 1e3:.3f} ms, batch 4096 {4096 / big / 1e3:.0f}k points/s",
            )


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "maf")
