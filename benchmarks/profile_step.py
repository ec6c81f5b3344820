"""Where a training step's time goes: tracing, XLA compilation, and the parts of a step.

A Python-level breakdown for ``RESULTS.md``: for kflows and for the raw TFP reference
(same flow, D, hidden units, batch), it times the trace of the step (concrete function), the
first call (XLA compilation when ``--jit``), and then, per step, the forward ``log_prob``,
``log_prob`` + gradient, and the full step with the Adam update (fastest of several windows).

Usage::

    python benchmarks/profile_step.py --flow maf [--jit]
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402
import numpy as np  # noqa: E402


def timed(fn, steps=20, windows=5):
    fn()
    best = float("inf")
    for _ in range(windows):
        t0 = time.perf_counter()
        for _ in range(steps):
            out = fn()
        float(out)
        best = min(best, (time.perf_counter() - t0) / steps * 1e3)
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flow", default="maf", choices=list(common.FLOWS))
    parser.add_argument("--jit", action="store_true")
    parser.add_argument("--dim", type=int, default=8)
    parser.add_argument("--batch", type=int, default=512)
    args = parser.parse_args()
    import bench_kflows
    import bench_tfp
    import keras
    import tensorflow as tf
    import tensorflow_probability as tfp
    import tf_keras as tfk

    import kflows

    spec = {**common.DEFAULTS, "flow": args.flow, "dim": args.dim, "batch": args.batch}
    x = tf.constant(np.random.default_rng(0).normal(size=(args.batch, args.dim)), tf.float32)
    for name in ("kflows", "tfp"):
        t0 = time.perf_counter()
        if name == "kflows":
            flow = bench_kflows.make_flow(kflows, spec)
            flow.build((None, args.dim))
            keras_vars = flow.trainable_variables
            variables = [v.value for v in keras_vars]
            opt = keras.optimizers.Adam(1e-3)
            opt.build(keras_vars)
            log_prob = flow.distribution().log_prob
            apply = functools.partial(opt.apply, trainable_variables=keras_vars)
        else:
            dist, nets = bench_tfp.build(spec, tf, tfp, tfk)
            dist.log_prob(x[:2])
            variables = [v for net in nets for v in net.trainable_variables]
            opt = tfk.optimizers.Adam(1e-3)
            log_prob = dist.log_prob

            def apply(grads, opt=opt, variables=variables):
                opt.apply_gradients(zip(grads, variables, strict=True))

        build_s = time.perf_counter() - t0
        profile(name, args, x, log_prob, variables, apply, build_s)


def profile(name, args, x, log_prob, variables, apply, build_s):
    import tensorflow as tf

    def loss_grad(x):
        with tf.GradientTape() as tape:
            loss = -tf.reduce_mean(log_prob(x))
        return loss, tape.gradient(loss, variables)

    def step(x):
        loss, grads = loss_grad(x)
        apply(grads)
        return loss

    def with_grads(x):
        # Return something of every gradient, or graph pruning drops the backward pass.
        loss, grads = loss_grad(x)
        return loss + 0.0 * tf.add_n([tf.reduce_sum(g) for g in grads])

    f_step = tf.function(step, jit_compile=args.jit)
    t0 = time.perf_counter()
    f_step.get_concrete_function(tf.TensorSpec([None, args.dim], tf.float32))
    trace_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    float(f_step(x))
    first_call_s = time.perf_counter() - t0
    f_lp = tf.function(lambda x: tf.reduce_mean(log_prob(x)), jit_compile=args.jit)
    f_lg = tf.function(with_grads, jit_compile=args.jit)
    print(
        f"{name:7s} {args.flow} jit={args.jit}: build {build_s:.2f} s, trace step "
        f"{trace_s:.2f} s, first call {first_call_s:.2f} s | per step: log_prob "
        f"{timed(lambda: f_lp(x)):.2f} ms, log_prob+grad {timed(lambda: f_lg(x)):.2f} ms, "
        f"full step {timed(lambda: f_step(x)):.2f} ms",
        flush=True,
    )


if __name__ == "__main__":
    main()
