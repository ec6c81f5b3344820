"""Trains a small flow with MultiWorkerMirroredStrategy on two workers, and on one device.

Run from the repository folder::

    python tests/scripts/multi_worker.py

starts two workers on 127.0.0.1 (two free ports), each this script in its own process with
its own ``TF_CONFIG``; meanwhile it trains the same flow (BatchNorm, MAF, ActNorm, MAF) in
its own process on one device with the same global batch. It stops both workers when one
fails or after ``--timeout`` seconds, and prints one JSON line: the losses of ``fit`` and
``evaluate`` everywhere and the largest differences between the workers' weights (moving
statistics included) and against the single device's. It exits 1 if a difference exceeds
``--tolerance``. ``--dataset`` feeds ``fit`` a ``tf.data.Dataset`` instead of arrays.

With ``TF_CONFIG`` set, the script is one worker (one per host, the same command on every
host) and prints its own losses::

    TF_CONFIG='{"cluster": {"worker": ["host0:12345", "host1:12345"]},
                "task": {"type": "worker", "index": 0}}' python tests/scripts/multi_worker.py

tests/test_distributed.py runs the launcher (:func:`compare`). Each worker reads the whole
data set and Keras shards it by batch (auto-shard policy ``DATA``): of each global batch of
``--batch-size`` rows, worker ``i`` trains on the ``i``-th half; the flow's loss (a mean over
the replica's rows divided by the number of replicas) summed over the replicas is the mean
over the global batch, and BatchNorm's statistics are all-reduced, so they are the global
batch's too.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

EVENT_DIM = 2


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=512, help="training rows (two moons)")
    parser.add_argument("--batch-size", type=int, default=128, help="global batch size")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument(
        "--dataset", action="store_true", help="fit a tf.data.Dataset of global batches"
    )
    parser.add_argument("--out", help="worker: write the result here (JSON), not to stdout")
    parser.add_argument("--timeout", type=float, default=240.0, help="launcher: seconds")
    parser.add_argument("--tolerance", type=float, default=1e-5, help="launcher: max diff")
    return parser.parse_args(argv)


def make_flow():
    """The flow every process trains: same layers, same starting weights."""
    import numpy as np

    import kflows

    flow = kflows.Flow(
        [
            kflows.BatchNorm(momentum=0.5),  # synchronised batch statistics
            kflows.MaskedAutoregressive(conditioner={"hidden_units": (8,)}),
            kflows.ActNorm(),  # initialised from the first global batch
            kflows.Reverse(),
            kflows.MaskedAutoregressive(conditioner={"hidden_units": (8,)}),
        ],
        event_dim=EVENT_DIM,
    )
    rng = np.random.default_rng(0)
    for weight in flow.trainable_weights:  # not zero: every weight gets a gradient
        weight.assign(0.3 * rng.standard_normal(weight.shape).astype("float32"))
    flow.compile()  # Adam(1e-3)
    return flow


def train(flow, args):
    """Fits ``flow``; returns its losses and weights (trainable and moving statistics)."""
    from kflows import data

    x = data.two_moons(args.rows, seed=0)
    if args.dataset:
        import tensorflow as tf

        batches = tf.data.Dataset.from_tensor_slices(x).batch(args.batch_size)
        history = flow.fit(batches, epochs=args.epochs, verbose=0)
    else:
        history = flow.fit(
            x, epochs=args.epochs, batch_size=args.batch_size, shuffle=False, verbose=0
        )
    evaluation = flow.evaluate(x, batch_size=args.batch_size, verbose=0, return_dict=True)
    return {
        "loss": [float(v) for v in history.history["loss"]],
        "evaluate": float(evaluation["loss"]),
        "weights": [[w.path, w.numpy().tolist()] for w in flow.weights if w.dtype != "bool"],
    }


def worker(args):
    import tensorflow as tf

    # A collective that waits longer than this (a worker died) fails instead of hanging.
    options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=120)
    strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    with strategy.scope():
        flow = make_flow()
    result = {
        "task": json.loads(os.environ["TF_CONFIG"])["task"]["index"],
        "replicas": strategy.num_replicas_in_sync,
        **train(flow, args),
    }
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(result, f)
    else:  # a worker started by hand: its losses, not its weights
        print(json.dumps({k: v for k, v in result.items() if k != "weights"}))


def free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def start_workers(argv, tmp, env=None):
    """Starts two workers on 127.0.0.1, each with its TF_CONFIG; their output goes to files."""
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(2)]}
    procs, logs = [], []
    for index in range(2):
        tf_config = {"cluster": cluster, "task": {"type": "worker", "index": index}}
        worker_env = {**os.environ, **(env or {}), "TF_CONFIG": json.dumps(tf_config)}
        log = open(os.path.join(tmp, f"worker{index}.log"), "w+", encoding="utf-8")
        command = [sys.executable, os.path.abspath(__file__), *argv]
        command += ["--out", os.path.join(tmp, f"worker{index}.json")]
        procs.append(
            subprocess.Popen(command, env=worker_env, stdout=log, stderr=subprocess.STDOUT)
        )
        logs.append(log)
    return procs, logs


def stop(procs):
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait(timeout=30)


def wait_workers(procs, logs, tmp, deadline):
    """Waits for both workers; stops both if one fails or the deadline passes."""
    failure = None
    try:
        while failure is None and any(p.poll() is None for p in procs):
            time.sleep(0.2)
            failed = [i for i, p in enumerate(procs) if p.poll() not in (None, 0)]
            if failed:
                failure = f"worker {failed[0]} exited with status {procs[failed[0]].returncode}"
            elif time.monotonic() > deadline and any(p.poll() is None for p in procs):
                failure = "the workers did not finish in time (--timeout)"
        failed = [i for i, p in enumerate(procs) if p.returncode != 0]
        if failure is None and failed:
            failure = f"worker {failed[0]} exited with status {procs[failed[0]].returncode}"
    finally:
        stop(procs)
    tails = []
    for index, log in enumerate(logs):
        log.seek(0)
        tails.append(f"--- worker {index} ---\n" + log.read()[-3000:])
        log.close()
    if failure is not None:
        raise RuntimeError(failure + "\n" + "\n".join(tails))
    results = []
    for index in range(2):
        with open(os.path.join(tmp, f"worker{index}.json"), encoding="utf-8") as f:
            results.append(json.load(f))
    return results


def max_diff(a, b):
    """Largest absolute difference between two lists of ``[path, values]``, weight by weight.

    Weights are matched by position (names may differ by Keras' unique-name suffixes).
    """
    import numpy as np

    shapes = [[np.shape(v) for _, v in weights] for weights in (a, b)]
    if shapes[0] != shapes[1]:
        raise ValueError(f"Expected weights of the same shapes; got {shapes[0]} and {shapes[1]}.")
    return max(
        float(np.max(np.abs(np.subtract(u, v)))) for (_, u), (_, v) in zip(a, b, strict=True)
    )


def compare(args, argv=(), env=None):
    """Two workers and one device train the same flow; returns how their weights compare.

    ``argv`` are the options passed on to the workers; ``env`` adds to their environment.
    """
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        procs, logs = start_workers(list(argv), tmp, env)
        try:
            # Meanwhile, the reference: no strategy, one device, the same global batch.
            single = make_flow()
            conditioners = [
                w
                for layer in single.flow_layers
                if hasattr(layer, "conditioner")
                for w in layer.trainable_weights
            ]
            before = [[w.path, w.numpy().tolist()] for w in conditioners]
            reference = train(single, args)
            after = [[w.path, w.numpy().tolist()] for w in conditioners]
        except BaseException:
            stop(procs)  # the workers never outlive the launcher
            raise
        workers = wait_workers(procs, logs, tmp, started + args.timeout)
    return {
        "workers": len(workers),
        "replicas": [w["replicas"] for w in workers],
        "loss_workers": [w["loss"] for w in workers],
        "loss_single": reference["loss"],
        "evaluate_workers": [w["evaluate"] for w in workers],
        "evaluate_single": reference["evaluate"],
        "max_diff_between_workers": max_diff(workers[0]["weights"], workers[1]["weights"]),
        "max_diff_vs_single": max(max_diff(w["weights"], reference["weights"]) for w in workers),
        "max_change_in_training": max_diff(before, after),
        "seconds": round(time.monotonic() - started, 1),
    }


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    if os.environ.get("TF_CONFIG"):
        worker(args)
        return 0
    result = compare(args, argv)
    print(json.dumps(result))
    worst = max(result["max_diff_between_workers"], result["max_diff_vs_single"])
    return 0 if worst <= args.tolerance else 1


if __name__ == "__main__":
    sys.exit(main())
