"""kflows side of the benchmark: the flow built by name, trained with ``compile`` + ``fit``.

Run by ``benchmarks/run.py``; by hand: ``python benchmarks/bench_kflows.py --spec '{...}'``
(see ``common.py`` for the spec). The flow builder is looked up by name, so flows that need
a transform this kflows does not have (``"spline"``) are reported as not run.
"""

from __future__ import annotations

import inspect
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402
import numpy as np  # noqa: E402

# The builders and transform of each benchmark flow, most specific first: the NSF
# builders (kflows.nsf / kflows.nsf_coupling) are used when this kflows has them.
BUILDERS = {
    "maf": [("maf", {})],
    "realnvp": [("realnvp", {})],
    "nsf_ar": [("nsf", {}), ("maf", {"transform": "spline"})],
    "nsf_coupling": [("nsf_coupling", {}), ("realnvp", {"transform": "spline"})],
}


def spline_spec():
    return {"name": "spline", "bins": common.SPLINE_BINS, "bound": common.SPLINE_BOUND}


def make_flow(kflows, spec):
    """The spec's flow from kflows' builders, or raises LookupError saying what is missing."""
    hidden = (spec["hidden"],) * spec["depth"]
    spline = common.FLOWS[spec["flow"]]["transform"] == "spline"
    if spline and "spline" not in kflows.transforms._TRANSFORMS:
        raise LookupError("kflows has no 'spline' transform on this branch")
    for name, kwargs in BUILDERS[spec["flow"]]:
        builder = getattr(kflows, name, None)
        if builder is None:
            continue
        if spline:
            # kflows.nsf / nsf_coupling take the spline's bins and bound; maf / realnvp a
            # transform spec.
            params = inspect.signature(builder).parameters
            if "bins" in params:
                kwargs = {**kwargs, "bins": common.SPLINE_BINS, "bound": common.SPLINE_BOUND}
            else:
                kwargs = {**kwargs, "transform": spline_spec()}
        return builder(num_layers=spec["layers"], hidden_units=hidden, **kwargs)
    raise LookupError(f"kflows has none of the builders {BUILDERS[spec['flow']]}")


def export_log_prob(kflows, flow, directory):
    """A SavedModel of ``flow``'s ``log_prob``, reloaded; ``kflows.export`` when it exists."""
    import keras
    import tensorflow as tf

    dim = flow.event_dim
    if callable(getattr(kflows, "export", None)):
        path = kflows.export(flow, directory, warmup=False)
    else:
        archive = keras.export.ExportArchive()
        archive.track(flow)
        archive.add_endpoint(
            "log_prob",
            lambda x: flow.log_prob(x),
            input_signature=[tf.TensorSpec([None, dim], flow.compute_dtype, name="x")],
        )
        path = os.path.join(directory, "1")
        archive.write_out(path, verbose=False)
    loaded = tf.saved_model.load(path)

    def log_prob(x):
        out = loaded.log_prob(x)
        return out["log_prob"] if isinstance(out, dict) else out

    return log_prob


def main():
    spec = common.parse_spec(__doc__)
    import tensorflow as tf

    import kflows

    train, test, batches = common.load(spec)
    dim = train.shape[1]
    timer = common.Timer(spec["window"])
    try:
        flow = make_flow(kflows, spec)
    except LookupError as err:
        common.not_run(spec, "kflows", str(err))
        return
    compile_kwargs = {} if spec.get("jit") is None else {"jit_compile": spec["jit"]}
    import keras

    flow.compile(keras.optimizers.Adam(spec["learning_rate"]), **compile_kwargs)

    # The same batches as the references, fed by tf.data from row indices.
    index = np.stack([b for b in common.batch_indices(len(train), spec["batch"], spec["steps"], 0)])
    data = tf.constant(train)
    dataset = (
        tf.data.Dataset.from_tensor_slices(index)
        .map(lambda i: tf.gather(data, i), num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )

    class Clock(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 0:
                float(logs["loss"])
                timer.after_first_step()
            else:
                timer.after_step(lambda: float(logs["loss"]))

    flow.fit(dataset, epochs=1, verbose=0, shuffle=False, callbacks=[Clock()])
    del batches

    signature = [tf.TensorSpec([None, dim], tf.float32)]
    log_prob = tf.function(lambda x: flow.log_prob(x), input_signature=signature)
    n_eval = spec["eval_batch"]
    nll = -float(
        np.mean(
            np.concatenate(
                [log_prob(test[i : i + n_eval]).numpy() for i in range(0, len(test), n_eval)]
            )
        )
    )
    x_eval = (
        tf.constant(test[:n_eval])
        if len(test) >= n_eval
        else tf.constant(np.resize(test, (n_eval, dim)))
    )
    lp_s = common.best_time(lambda: log_prob(x_eval).numpy(), spec["throughput_reps"])

    sample = tf.function(
        lambda seed: flow.sample(n_eval, seed=seed),
        input_signature=[tf.TensorSpec([2], tf.int32)],
    )
    seed = tf.constant([0, 1], tf.int32)
    sample_s = common.best_time(lambda: sample(seed).numpy(), spec["throughput_reps"])

    x1 = tf.constant(test[:1])
    inproc_1 = common.best_time(lambda: log_prob(x1).numpy(), spec["latency_reps"])
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        exported = export_log_prob(kflows, flow, tmp)
        export_build_s = time.perf_counter() - t0
        export_1 = common.best_time(lambda: exported(x1).numpy(), spec["latency_reps"])
        export_big = common.best_time(lambda: exported(x_eval).numpy(), spec["throughput_reps"])

    common.emit(
        spec,
        "kflows",
        {
            **timer.ms_per_step(),
            "first_step_s": timer.first_step_s,
            "test_nll": nll,
            "log_prob_pts_per_s": n_eval / lp_s,
            "sample_pts_per_s": n_eval / sample_s,
            "inprocess_log_prob_b1_ms": inproc_1 * 1e3,
            "export_log_prob_b1_ms": export_1 * 1e3,
            "export_log_prob_pts_per_s": n_eval / export_big,
            "export_build_s": export_build_s,
            "versions": {"tensorflow": tf.__version__, "keras": keras.__version__},
        },
    )


if __name__ == "__main__":
    main()
