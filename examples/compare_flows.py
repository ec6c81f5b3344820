"""Train ready-made flows on two moons; print test NLL and seconds per epoch for each.

Usage:
    python examples/compare_flows.py [--flows nsf nsf_coupling] [--epochs 30]
        [--num-layers 5] [--hidden 64 64] [--batch-size 256] [--num-points 20000]
        [--jit-compile auto|true|false]

Any builder of the ``kflows`` namespace (``maf``, ``realnvp``, ``nsf``, ``nsf_coupling``,
``glow``) can be named. The time per epoch is the median over epochs after the first (which
includes tracing and compilation).
"""

import argparse
import statistics
import time

import keras

import kflows
from kflows import data


class _EpochTimer(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--flows", nargs="+", default=["nsf", "nsf_coupling"])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--num-layers", type=int, default=5)
    parser.add_argument("--hidden", type=int, nargs="+", default=[64, 64])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--num-points", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jit-compile", choices=["auto", "true", "false"], default="auto")
    args = parser.parse_args()

    train, test = data.split(data.two_moons(args.num_points, seed=args.seed), seed=args.seed)
    for name in args.flows:
        keras.utils.set_random_seed(args.seed)
        flow = getattr(kflows, name)(args.num_layers, hidden_units=tuple(args.hidden))
        flow.compile(jit_compile={"auto": "auto", "true": True, "false": False}[args.jit_compile])
        timer = _EpochTimer()
        flow.fit(
            train, epochs=args.epochs, batch_size=args.batch_size, verbose=0, callbacks=[timer]
        )
        result = flow.evaluate(test, batch_size=4096, verbose=0, return_dict=True)
        per_epoch = statistics.median(timer.seconds[1:] or timer.seconds)
        print(
            f"{name}: test NLL {result['loss']:.4f} nats ({result['bits_per_dim']:.4f} bits/dim) "
            f"after {args.epochs} epochs; {per_epoch:.2f} s/epoch (median), first epoch "
            f"{timer.seconds[0]:.1f} s, {len(train)} train / {len(test)} test points"
        )


if __name__ == "__main__":
    main()
