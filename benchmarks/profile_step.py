"""Where a training step's time goes: tracing, XLA compilation, and the parts of a step.

A Python-level breakdown for ``RESULTS.md``: for kflows and for the raw TFP reference
(same flow, D, hidden units, batch), it counts the ops of the traced step and of the traced
``log_prob`` (graph ops before grappler, constants included: a change that adds ops shows
up here), times the trace of the step (concrete function), the first call (grappler, and
XLA compilation when ``--jit``), and then, per step, the forward ``log_prob``, ``log_prob``
+ gradient, and the full step with the Adam update (fastest of several windows, wall and
process CPU time).

Usage::

    python benchmarks/profile_step.py --flow maf [--jit] [--frameworks kflows]
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
    """The fastest window's wall and CPU time per call, as ``"W ms (cpu C)"``: the CPU
    time is the steadier figure on a machine shared with other work."""
    fn()
    wall = cpu = float("inf")
    for _ in range(windows):
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(steps):
            out = fn()
        float(out)
        wall = min(wall, (time.perf_counter() - t0) / steps * 1e3)
        cpu = min(cpu, (time.process_time() - c0) / steps * 1e3)
    return f"{wall:.2f} ms (cpu {cpu:.2f})"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flow", default="maf", choices=list(common.FLOWS))
    parser.add_argument("--jit", action="store_true")
    parser.add_argument("--dim", type=int, default=8)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument(
        "--frameworks", nargs="+", default=["kflows", "tfp"], choices=["kflows", "tfp"]
    )
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
    for name in args.frameworks:
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

    spec = tf.TensorSpec([None, args.dim], tf.float32)
    f_step = tf.function(step, jit_compile=args.jit)
    t0 = time.perf_counter()
    step_ops = len(f_step.get_concrete_function(spec).graph.get_operations())
    trace_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    float(f_step(x))
    first_call_s = time.perf_counter() - t0
    f_lp = tf.function(lambda x: tf.reduce_mean(log_prob(x)), jit_compile=args.jit)
    log_prob_ops = len(f_lp.get_concrete_function(spec).graph.get_operations())
    f_lg = tf.function(with_grads, jit_compile=args.jit)
    print(
        f"{name:7s} {args.flow} jit={args.jit}: ops step {step_ops}, log_prob {log_prob_ops} | "
        f"build {build_s:.2f} s, trace step {trace_s:.2f} s, first call {first_call_s:.2f} s | "
        f"per step: log_prob {timed(lambda: f_lp(x))}, log_prob+grad "
        f"{timed(lambda: f_lg(x))}, full step {timed(lambda: f_step(x))}",
        flush=True,
    )


if __name__ == "__main__":
    main()
