"""What the NaN guard of ``Flow.fit`` costs per training step: guard on vs off, one run.

Two identical flows (same weights, same data, same batches) train with ``fit``, one with
``nan_guard=True`` (the default), one with ``nan_guard=False``. Each round runs both, one
epoch of ``--steps`` steps each, back to back and in an order that alternates from round
to round, so that machine noise and position hit both alike; the first call, which traces
the step, is not timed. Reported: the median per-step time of each, and the median of the
rounds' paired ratios (guard on / guard off), which a loaded machine disturbs least.
Prints one JSON line.

Usage::

    python benchmarks/nan_guard_overhead.py [--flow maf] [--dim 8] [--hidden 128]
        [--batch 512] [--steps 50] [--rounds 30] [--jit]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def measure(flow="maf", dim=8, hidden=128, layers=5, batch=512, steps=50, rounds=30, jit=False):
    """``{"off_ms", "on_ms", "ratio", ...}``: milliseconds per step with the guard off and on,
    and the median ratio of adjacent runs."""
    import keras
    import numpy as np

    import kflows

    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch * steps, dim)).astype("float32")
    builder = getattr(kflows, flow)
    flows = {}
    for guard in (False, True):
        keras.utils.set_random_seed(0)
        model = builder(num_layers=layers, hidden_units=(hidden, hidden), event_dim=dim)
        model.compile(optimizer=keras.optimizers.Adam(1e-4), jit_compile=jit)
        model.fit(x[:batch], batch_size=batch, verbose=0, nan_guard=guard)  # trace
        flows[guard] = model
    times = {False: [], True: []}
    for round_ in range(rounds):
        order = (False, True) if round_ % 2 == 0 else (True, False)  # no position bias
        for guard in order:
            start = time.perf_counter()
            flows[guard].fit(x, batch_size=batch, shuffle=False, verbose=0, nan_guard=guard)
            times[guard].append((time.perf_counter() - start) / steps * 1e3)
    ratios = [on / off for on, off in zip(times[True], times[False], strict=True)]
    return {
        "flow": flow,
        "dim": dim,
        "hidden": hidden,
        "layers": layers,
        "batch": batch,
        "steps": steps,
        "jit": jit,
        "rounds": rounds,
        "off_ms": round(statistics.median(times[False]), 4),
        "on_ms": round(statistics.median(times[True]), 4),
        "ratio": round(statistics.median(ratios), 4),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flow", default="maf", choices=["maf", "realnvp", "nsf", "nsf_coupling"])
    parser.add_argument("--dim", type=int, default=8)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=5)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--jit", action="store_true")
    args = parser.parse_args()
    print(json.dumps(measure(**vars(args))))


if __name__ == "__main__":
    main()
