"""Serving: export trained flows, reload them where only TensorFlow exists, call each signature.

``flow.export(path)`` writes a TensorFlow SavedModel for TF Serving in a new version folder
``path/<version>/`` whose graphs hold standard TensorFlow ops only. To show that, this
script trains an unconditional flow (two moons) and a conditional one (two moons given the
moon), exports both, then starts a fresh Python process in which ``kflows``,
``tensorflow_probability``, ``keras`` and ``tf_keras`` cannot be imported, loads each export
with ``tf.saved_model.load`` and calls every signature: ``log_prob``, ``serving_default``,
``sample`` and ``sample_and_log_prob``. The parent compares the answers with the flow's own
``log_prob``, ``sample`` and ``sample_and_log_prob`` (the same stateless seed gives the same
samples) and prints the largest difference for each output.

Usage:
    python examples/serving.py [--epochs 10] [--out outputs/serving] [--quick]
"""

import argparse
import os
import subprocess
import sys

import numpy as np

#: What the serving process must not be able to import: the export needs TensorFlow alone.
BLOCKED = ("kflows", "tensorflow_probability", "keras", "tf_keras")


def requests(conditional):
    """The inputs of every signature, as numpy arrays (the same in both processes)."""
    x = np.array([[-0.57, 1.5], [0.57, -1.5], [0.0, 0.0]], np.float32)
    draw = {"num_samples": np.int32(3), "seed": np.array([1, 2], np.int32)}
    score = {"x": x}
    if conditional:  # one context row per point; sampling: 3 draws for each of 2 contexts
        score["context"] = np.array([[0.0], [1.0], [1.0]], np.float32)
        draw["context"] = np.array([[0.0], [1.0]], np.float32)
    return {
        "log_prob": score,
        "serving_default": score,
        "sample": draw,
        "sample_and_log_prob": draw,
    }


def serve(path, answers):
    """Runs in the clean process: loads the export with TensorFlow only, calls every signature.

    Saves each output to the ``.npz`` file ``answers`` as ``"<signature>.<output>"``.
    """
    for name in BLOCKED:
        sys.modules[name] = None  # `import keras` now fails, as if it were not installed
    import tensorflow as tf

    loaded = tf.saved_model.load(path)
    inputs = loaded.signatures["log_prob"].structured_input_signature[1]
    results = {}
    for name, request in requests(conditional="context" in inputs).items():
        outputs = loaded.signatures[name](**{k: tf.constant(v) for k, v in request.items()})
        shapes = {k: list(v.shape) for k, v in outputs.items()}
        print(f"  {name:<20} {sorted(request)} -> {shapes}")
        results.update({f"{name}.{k}": v.numpy() for k, v in outputs.items()})
    leaked = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED and sys.modules[m])
    if leaked:
        raise SystemExit(f"blocked modules were imported: {leaked}")
    np.savez(answers, **results)


def expected(flow, conditional):
    """The flow's own answers to the same requests, keyed like :func:`serve`'s."""
    draw = requests(conditional)["sample"]
    n, seed, context = int(draw["num_samples"]), list(draw["seed"]), draw.get("context")
    score = requests(conditional)["log_prob"]
    log_prob = flow.log_prob(score["x"], score.get("context")).numpy()
    samples, sample_log_prob = flow.sample_and_log_prob(n, context, seed=seed)
    return {
        "log_prob.log_prob": log_prob,
        "serving_default.log_prob": log_prob,
        "sample.samples": flow.sample(n, context, seed=seed).numpy(),
        "sample_and_log_prob.samples": samples.numpy(),
        "sample_and_log_prob.log_prob": sample_log_prob.numpy(),
    }


def main(args):
    import keras

    import kflows
    from kflows import data

    epochs = 1 if args.quick else args.epochs
    moons = data.table("labelled_moons", subset="train")
    for name, conditional in (("moons", False), ("moons_given_moon", True)):
        keras.utils.set_random_seed(0)
        flow = kflows.realnvp(
            num_layers=4, hidden_units=(32, 32), context_dim=1 if conditional else None
        )
        flow.compile(optimizer=keras.optimizers.Adam(3e-3))
        x = (moons.values, moons.context) if conditional else moons.values
        flow.fit(x, epochs=epochs, batch_size=256, verbose=0)
        path = flow.export(os.path.join(args.out, "export", name))
        print(f"{name}: exported to {path}; serving it from a process without kflows:", flush=True)
        answers = os.path.join(args.out, f"{name}_answers.npz")
        # A fresh interpreter running this file's `serve`; the parent's modules do not leak.
        subprocess.run([sys.executable, __file__, "--serve", path, answers], check=True)
        with np.load(answers) as served:
            for key, value in expected(flow, conditional).items():
                gap = np.max(np.abs(served[key] - value))
                print(f"  max |export - in-process| of {key:<30} {gap:.1e}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--out", default=os.path.join("outputs", "serving"), help="exports")
    parser.add_argument("--quick", action="store_true", help="CI sizes: 1 epoch")
    parser.add_argument("--serve", nargs=2, metavar=("EXPORT", "ANSWERS"), help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.serve:
        serve(*arguments.serve)
    else:
        main(arguments)
