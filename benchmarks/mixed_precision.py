"""Mixed precision against float32: training speed and test NLL, measured in the same run.

Each flow (the benchmark's headline configuration: D=8, 5 layers, 2 x 128 hidden units,
batch 512, Adam 1e-3) trains the same batches in the same order under ``float32``,
``mixed_bfloat16`` and ``mixed_float16``, alternating the policies over ``--rounds`` rounds
so that drifting machine load hits all of them alike. Reported per policy: the fastest
20-step window (ms/step), its ratio to float32's in the same round, and the test NLL after
training (nats) minus float32's.

    python benchmarks/mixed_precision.py [--flows maf realnvp nsf_coupling] [--steps 200]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402
import numpy as np  # noqa: E402

#: float16 matmuls are emulated on CPU (350x slower here): pass it with --policies on a GPU.
POLICIES = ("float32", "mixed_bfloat16")
BUILDERS = {"maf": "maf", "realnvp": "realnvp", "nsf_ar": "nsf", "nsf_coupling": "nsf_coupling"}


class _StepTimes:
    """A Keras callback recording the end time of every training batch."""

    def __init__(self, keras):
        class Callback(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.ends = []

            def on_train_batch_end(self, batch, logs=None):
                self.ends.append(time.perf_counter())

        self.callback = Callback()

    def fastest_window_ms(self, window: int) -> float:
        ends = np.asarray(self.callback.ends[1:])  # the first step includes tracing
        spans = (ends[window:] - ends[:-window]) / window
        return float(spans.min() * 1e3)


def run_one(kflows, keras, flow_name, policy, train, test, args):
    keras.utils.set_random_seed(args.seed)
    flow = getattr(kflows, BUILDERS[flow_name])(
        num_layers=5, hidden_units=(128, 128), event_dim=train.shape[1], dtype=policy
    )
    flow.compile(optimizer=keras.optimizers.Adam(1e-3))
    times = _StepTimes(keras)
    batches = args.steps * args.batch
    history = flow.fit(
        train[:batches],
        batch_size=args.batch,
        epochs=1,
        shuffle=False,
        verbose=0,
        callbacks=[times.callback],
    )
    nll = flow.evaluate(test, batch_size=4096, verbose=0, return_dict=True)["loss"]
    return {
        "ms_per_step": times.fastest_window_ms(args.window),
        "test_nll": float(nll),
        "train_nll_last": float(history.history["loss"][-1]),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flows", nargs="+", default=["maf", "realnvp", "nsf_coupling"])
    parser.add_argument("--policies", nargs="+", default=list(POLICIES))
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--window", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.policies[0] != "float32":
        parser.error("Expected float32 first in --policies: it is the reference.")
    if args.steps <= args.window + 1:
        parser.error(f"Expected --steps > --window + 1; got {args.steps} and {args.window}.")

    import keras

    import kflows

    with tempfile.TemporaryDirectory() as tmp:
        paths = common.make_data(8, args.steps * args.batch, 8192, args.seed, tmp)
        train, test = np.load(paths["train"]), np.load(paths["test"])
    print(
        f"{'flow':<13} {'policy':<15} {'round':>5} {'ms/step':>8} {'ratio':>6} "
        f"{'test NLL':>9} {'dNLL':>7}"
    )
    for flow_name in args.flows:
        for round_ in range(args.rounds):
            order = args.policies if round_ % 2 == 0 else [args.policies[0], *args.policies[:0:-1]]
            results = {p: run_one(kflows, keras, flow_name, p, train, test, args) for p in order}
            ref = results["float32"]
            for policy in args.policies:
                r = results[policy]
                print(
                    f"{flow_name:<13} {policy:<15} {round_:>5} {r['ms_per_step']:>8.2f} "
                    f"{r['ms_per_step'] / ref['ms_per_step']:>6.2f} {r['test_nll']:>9.3f} "
                    f"{r['test_nll'] - ref['test_nll']:>+7.3f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
