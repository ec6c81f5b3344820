"""kflows' rational-quadratic spline against TFP's, alone: graph ops, trace time, run time.

For conditioner outputs ``params [batch, D, 3K - 1]`` and points ``[batch, D]``, in graph
mode (``tf.function``; XLA with ``--jit``): the forward map and its log-det, the inverse and
its log-det (the density direction), and the inverse with its log-det and their gradient
for the parameters (the density's training step), for the spline bijector of kflows'
``"spline"`` transform and for ``tfb.RationalQuadraticSpline`` on the same widths, heights
and slopes. Each line gives the traced graph's op count (constants included), the trace
time, and the fastest wall time and CPU time per call over windows that alternate between
the two, so that a shared machine's load hits both alike (``--threads 1`` makes the CPU
time the steadiest figure there).

Usage::

    python benchmarks/spline_speed.py [--batch 512] [--dim 8] [--bins 8] [--jit] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def interleaved(fns, steps=50, windows=7):
    """The fastest wall and CPU ms per call of each function, over windows taken in turn."""
    for fn in fns:
        fn()
    wall = [float("inf")] * len(fns)
    cpu = [float("inf")] * len(fns)
    for _ in range(windows):
        for i, fn in enumerate(fns):
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(steps):
                out = fn()
            float(out)
            wall[i] = min(wall[i], (time.perf_counter() - t0) / steps * 1e3)
            cpu[i] = min(cpu[i], (time.process_time() - c0) / steps * 1e3)
    return wall, cpu


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--dim", type=int, default=8)
    parser.add_argument("--bins", type=int, default=8)
    parser.add_argument("--bound", type=float, default=5.0)
    parser.add_argument("--jit", action="store_true")
    parser.add_argument("--threads", type=int, default=0, help="TF threads (0: TF's choice)")
    args = parser.parse_args()
    import numpy as np
    import tensorflow as tf
    import tensorflow_probability as tfp

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)

    from kflows import transforms

    transform = transforms.RationalQuadraticSpline(bins=args.bins, bound=args.bound)
    rng = np.random.default_rng(0)
    params = tf.constant(rng.normal(size=(args.batch, args.dim, transform.num_params)), tf.float32)
    z = tf.constant(rng.normal(scale=args.bound / 2, size=(args.batch, args.dim)), tf.float32)

    def kflows_spline(params):
        return transform.bijector(params)

    def tfp_spline(params):
        spline = transform.bijector(params)  # the same widths, heights and slopes
        return tfp.bijectors.RationalQuadraticSpline(
            spline.bin_widths, spline.bin_heights, spline.knot_slopes, range_min=-args.bound
        )

    def forward(make):
        def run(z, params):
            spline = make(params)
            y = spline.forward(z)  # first, as TFP's distributions ask
            fldj = spline.forward_log_det_jacobian(z, event_ndims=1)
            return tf.reduce_sum(y) + tf.reduce_sum(fldj)

        return run

    def inverse(make):
        def run(z, params):
            spline = make(params)
            x = spline.inverse(z)
            ildj = spline.inverse_log_det_jacobian(z, event_ndims=1)
            return tf.reduce_sum(x) + tf.reduce_sum(ildj)

        return run

    def inverse_grad(make):
        def run(z, params):
            with tf.GradientTape() as tape:
                tape.watch(params)
                out = inverse(make)(z, params)
            return out + 0.0 * tf.reduce_sum(tape.gradient(out, params))

        return run

    specs = [
        tf.TensorSpec([None, args.dim], tf.float32),
        tf.TensorSpec([None, args.dim, transform.num_params], tf.float32),
    ]
    print(
        f"batch {args.batch}, D {args.dim}, {args.bins} bins, jit={args.jit}, "
        f"threads={args.threads or 'TF default'}",
        flush=True,
    )
    for label, case in [
        ("forward + log-det", forward),
        ("inverse + log-det", inverse),
        ("inverse + log-det + grad", inverse_grad),
    ]:
        calls, notes = [], []
        for make in (kflows_spline, tfp_spline):
            fn = tf.function(case(make), jit_compile=args.jit)
            t0 = time.perf_counter()
            ops = len(fn.get_concrete_function(*specs).graph.get_operations())
            notes.append((ops, time.perf_counter() - t0))
            calls.append(lambda fn=fn: fn(z, params))
        wall, cpu = interleaved(calls)
        figures = zip(("kflows", "tfp"), wall, cpu, notes, strict=True)
        print(
            f"{label:25s} "
            + " | ".join(
                f"{name} {ms:.3f} ms (cpu {cpu_ms:.3f}), {ops} ops, trace {trace:.2f} s"
                for name, ms, cpu_ms, (ops, trace) in figures
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
