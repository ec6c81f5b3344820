"""Trains a small RealNVP flow (behind an ActNorm) on two moons under BackupAndRestore.

Run by tests/test_resume.py in fresh processes:

    python resume.py BACKUP_DIR OUT_DIR [--save-freq N|epoch] [--kill-after STEPS]
                     [--reference REFERENCE_BACKUP_DIR]

Training is deterministic (fixed seeds, ``shuffle=False``). With ``--kill-after``, the
process sends itself SIGKILL from a callback once that many batches (counted over all
epochs) have been trained: a real kill, with no Python clean-up and no ``on_train_end``.
Every run writes the weights it starts ``fit`` with (after BackupAndRestore has restored
them) to ``OUT_DIR/start.npz`` and those after the first epoch to ``OUT_DIR/epoch0.npz``.
A run that ends writes its final weights to ``OUT_DIR/final.npz`` and prints one JSON line
(epochs run, optimizer iterations). With ``--reference`` it then also trains a fresh flow
from scratch, uninterrupted, and writes its final weights to ``OUT_DIR/reference.npz``.
"""

import argparse
import json
import os
import signal

import keras
import numpy as np

import kflows
from kflows import data

EPOCHS = 3
BATCH_SIZE = 64
ROWS = 512  # 8 batches per epoch


class KillAfter(keras.callbacks.Callback):
    """SIGKILLs this process after ``steps`` batches, noting the count in ``marker`` first."""

    def __init__(self, steps, marker):
        super().__init__()
        self.steps, self.marker, self.seen = steps, marker, 0

    def on_train_batch_end(self, batch, logs=None):
        self.seen += 1
        if self.seen == self.steps:
            with open(self.marker, "w") as f:
                f.write(str(self.seen))
                f.flush()
                os.fsync(f.fileno())
            os.kill(os.getpid(), signal.SIGKILL)


class Snapshots(keras.callbacks.Callback):
    """Writes the weights at the start of ``fit`` and after the first epoch to ``out_dir``."""

    def __init__(self, out_dir):
        super().__init__()
        self.out_dir = out_dir

    def save(self, name):
        np.savez(os.path.join(self.out_dir, name), *self.model.get_weights())

    def on_train_begin(self, logs=None):
        self.save("start.npz")

    def on_epoch_end(self, epoch, logs=None):
        if epoch == 0:
            self.save("epoch0.npz")


def train(backup_dir, save_freq, extra_callbacks=()):
    keras.utils.set_random_seed(0)
    x = data.two_moons(ROWS, seed=0)
    # RealNVP behind an ActNorm, built lazily by fit; ActNorm initialises from the first batch.
    flow = kflows.Flow(
        [
            kflows.ActNorm(),
            kflows.Coupling(conditioner={"hidden_units": (8,)}),
            kflows.Reverse(),
            kflows.Coupling(conditioner={"hidden_units": (8,)}),
        ]
    )
    flow.compile(optimizer=keras.optimizers.Adam(1e-2))
    backup = keras.callbacks.BackupAndRestore(backup_dir, save_freq=save_freq)
    history = flow.fit(
        x,
        epochs=EPOCHS,
        batch_size=BATCH_SIZE,
        shuffle=False,
        verbose=0,
        callbacks=[backup, *extra_callbacks],
    )
    return flow, history


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("backup_dir")
    parser.add_argument("out_dir")
    parser.add_argument("--save-freq", default="epoch")
    parser.add_argument("--kill-after", type=int)
    parser.add_argument("--reference")
    args = parser.parse_args()
    save_freq = args.save_freq if args.save_freq == "epoch" else int(args.save_freq)

    # After BackupAndRestore in the list: its on_train_begin restores first.
    callbacks = [Snapshots(args.out_dir)]
    if args.kill_after is not None:
        marker = os.path.join(args.out_dir, "killed_after")
        callbacks.append(KillAfter(args.kill_after, marker))
    flow, history = train(args.backup_dir, save_freq, callbacks)
    np.savez(os.path.join(args.out_dir, "final.npz"), *flow.get_weights())
    result = {
        "epochs_run": len(history.history["loss"]),
        "iterations": int(flow.optimizer.iterations.numpy()),
    }
    if args.reference:
        reference, history = train(args.reference, save_freq)
        np.savez(os.path.join(args.out_dir, "reference.npz"), *reference.get_weights())
        result["reference_epochs_run"] = len(history.history["loss"])
        result["reference_iterations"] = int(reference.optimizer.iterations.numpy())
    print(json.dumps(result))


if __name__ == "__main__":
    main()
