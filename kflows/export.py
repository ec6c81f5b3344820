"""SavedModel export for TF Serving, with ``log_prob``, ``sample`` and ``sample_and_log_prob``.

:func:`export` writes a trained :class:`~kflows.Flow` as a TensorFlow SavedModel in the
layout TF Serving watches, ``path/<version>/``, through ``keras.export.ExportArchive``. The
graphs hold standard TensorFlow ops only (the TFP bijectors are traced into plain ops), so
the export loads with ``tf.saved_model.load``, ``saved_model_cli`` or TF Serving where
neither kflows, TensorFlow Probability nor Keras is installed.

Signatures (``D`` features, ``C`` context features, float dtype = the flow's compute dtype):

============================ ======================================= ==========================
signature                    inputs                                  outputs
============================ ======================================= ==========================
``log_prob``                 ``x`` ``[N, D]`` (+ ``context``         ``log_prob`` ``[N]``
                             ``[N, C]``)
``sample``                   ``num_samples`` int32 ``[]``,           ``samples`` ``[n, D]``
                             ``seed`` int32 ``[2]`` (+ ``context``   (``[n, B, D]`` with
                             ``[B, C]``)                             context)
``sample_and_log_prob``      as ``sample``                           ``samples`` as above,
                                                                     ``log_prob`` ``[n]``
                                                                     (``[n, B]``)
``serving_default``          as ``log_prob``                         as ``log_prob``
============================ ======================================= ==========================

``seed`` is a stateless seed: the draws depend on it alone, and ``flow.sample(n, seed=[a,
b])`` in-process returns the same samples as the export fed ``seed=[a, b]`` (an int seed
``s`` in-process is ``[0, s]``, see :func:`kflows.flow.stateless_seed`).

Checks at the signature boundary: a wrong number of features in ``x`` or ``context``, ``x``
and ``context`` with different numbers of rows, and a negative ``num_samples`` fail with an
``InvalidArgumentError`` that names what was expected and what came; a wrong dtype is
refused by the signature itself (TF Serving's JSON API converts numbers to the signature's
dtype). Unlike ``Flow.log_prob``, which refuses NaN/inf, the exported ``log_prob`` does not
check values: a row with NaN gets a NaN log-density and the other rows are unaffected, so one
bad row does not fail a whole serving batch.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import keras
import numpy as np
import tensorflow as tf

from kflows.flow import Flow

#: Name of the TF Serving warm-up file inside a version directory.
WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")


def export(
    flow: Flow,
    path: str | os.PathLike,
    version: int | None = None,
    overwrite: bool = False,
    warmup: bool | None = None,
) -> str:
    """Exports ``flow`` as a TF Serving SavedModel under ``path/<version>/``.

    The version is written atomically: the SavedModel is built in a hidden temporary
    directory inside ``path`` (TF Serving ignores names that are not integers) and renamed to
    ``path/<version>`` once complete, so a server watching ``path`` never sees a partial
    version. See the module docstring for the signatures.

    Args:
        flow: a built :class:`~kflows.Flow` (fitted, or built with ``flow.build((None, D))``).
        path: the model base path (TF Serving's ``--model_base_path``); created if missing.
        version: integer version (>= 0); by default one more than the largest existing one,
            or 1 in an empty ``path``.
        overwrite: replace an existing ``path/<version>``. It is renamed away just before
            the new version is renamed in, so a server may briefly see the version missing.
        warmup: write ``assets.extra/tf_serving_warmup_requests`` (one request per
            signature) so that TF Serving runs each graph once at load time. It needs the
            ``tensorflow-serving-api`` package (``pip install kflows[serving]``). ``None``
            (default) writes it when that package is installed; ``True`` requires it.

    Returns:
        The version directory, ``path/<version>``.

    Raises:
        FileExistsError: ``path/<version>`` exists and ``overwrite`` is False.

    Example:
        >>> flow = kflows.maf(num_layers=2, hidden_units=(16, 16))
        >>> flow.fit(x, epochs=1)
        >>> kflows.export(flow, "models/maf")   # or flow.export("models/maf")
        'models/maf/1'
    """
    if not isinstance(flow, Flow):
        raise TypeError(f"Expected a kflows.Flow; got {type(flow).__name__}.")
    flow._require_built()
    if warmup is None:
        warmup = _serving_api_available()
    base = os.path.abspath(os.fspath(path))
    os.makedirs(base, exist_ok=True)
    version = _next_version(base) if version is None else _check_version(version)
    target = os.path.join(base, str(version))
    if os.path.exists(target) and not overwrite:
        raise FileExistsError(
            f"Expected a new version; {target} exists. Pass overwrite=True to replace it, or "
            "version=None to take the next free version."
        )
    staging = tempfile.mkdtemp(prefix=f".tmp-{version}-", dir=base)
    # mkdtemp makes the directory private (0700); a server running as another user must
    # read the version, so give it the permissions a plain mkdir would.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(staging, 0o777 & ~umask)
    try:
        archive = _archive(flow)
        archive.write_out(staging, verbose=False)
        if warmup:
            write_warmup(staging, flow, model_name=os.path.basename(base))
        _publish(staging, target, base)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


# ---------------------------------------------------------------------- versions
def _check_version(version) -> int:
    if isinstance(version, bool) or not isinstance(version, (int, np.integer)) or version < 0:
        raise ValueError(f"Expected version to be an integer >= 0 or None; got {version!r}.")
    return int(version)


def _next_version(base: str) -> int:
    versions = [int(name) for name in os.listdir(base) if name.isascii() and name.isdigit()]
    return max(versions, default=0) + 1


def _publish(staging: str, target: str, base: str) -> None:
    """Moves a complete SavedModel into place with renames (atomic on one file system)."""
    old = None
    if os.path.exists(target):
        old = tempfile.mkdtemp(prefix=".old-", dir=base)
        os.rename(target, os.path.join(old, "version"))
    # Fails, rather than merging, if another writer created a non-empty target meanwhile.
    os.rename(staging, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# ---------------------------------------------------------------------- signatures
def _checked_features(t: tf.Tensor, name: str, width: int) -> tf.Tensor:
    """``t`` with a runtime check of its shape ``[N, width]``.

    The signature's static shape is not enforced by TF Serving's C++ path, so the check is an
    op in the graph; the assert gives the readable message, ``ensure_shape`` the rank check.
    """
    symbol = "D" if name == "x" else "C"
    check = tf.debugging.assert_equal(
        tf.shape(t)[-1],
        width,
        message=f"{name} must have {symbol}={width} features, i.e. shape [N, {width}]",
    )
    with tf.control_dependencies([check]):
        return tf.ensure_shape(tf.identity(t), [None, width], name=name)


def _checked_num_samples(num_samples: tf.Tensor) -> tf.Tensor:
    check = tf.debugging.assert_non_negative(num_samples, message="num_samples must be >= 0")
    with tf.control_dependencies([check]):
        return tf.identity(num_samples)


def _endpoints(flow: Flow) -> dict:
    """``{name: (fn, input_signature)}``; the argument names become the input names."""
    dim, ctx_dim, dtype = flow.event_dim, flow.context_dim, flow.compute_dtype

    def log_prob(x, context=None):
        x = _checked_features(x, "x", dim)
        if context is not None:
            context = _checked_features(context, "context", ctx_dim)
            rows = tf.debugging.assert_equal(
                tf.shape(x)[0],
                tf.shape(context)[0],
                message="x and context must have the same number of rows",
            )
            with tf.control_dependencies([rows]):
                x = tf.identity(x)
        return {"log_prob": flow.distribution(context).log_prob(x)}

    def sample(num_samples, seed, context=None):
        dist = _distribution(context)
        return {"samples": dist.sample(_checked_num_samples(num_samples), seed=seed)}

    def sample_and_log_prob(num_samples, seed, context=None):
        dist = _distribution(context)
        samples, log_prob = dist.experimental_sample_and_log_prob(
            _checked_num_samples(num_samples), seed=seed
        )
        return {"samples": samples, "log_prob": log_prob}

    def _distribution(context):
        if context is not None:
            context = _checked_features(context, "context", ctx_dim)
        return flow.distribution(context)

    x = tf.TensorSpec([None, dim], dtype, name="x")
    draws = [
        tf.TensorSpec([], tf.int32, name="num_samples"),
        tf.TensorSpec([2], tf.int32, name="seed"),
    ]
    if ctx_dim is None:
        return {
            "log_prob": (lambda x: log_prob(x), [x]),
            "sample": (lambda num_samples, seed: sample(num_samples, seed), draws),
            "sample_and_log_prob": (
                lambda num_samples, seed: sample_and_log_prob(num_samples, seed),
                draws,
            ),
        }
    context = tf.TensorSpec([None, ctx_dim], dtype, name="context")
    return {
        "log_prob": (lambda x, context: log_prob(x, context), [x, context]),
        "sample": (
            lambda num_samples, seed, context: sample(num_samples, seed, context),
            [*draws, context],
        ),
        "sample_and_log_prob": (
            lambda num_samples, seed, context: sample_and_log_prob(num_samples, seed, context),
            [*draws, context],
        ),
    }


def _archive(flow: Flow) -> keras.export.ExportArchive:
    # No archive.track(flow): the endpoints track the variables they use, and tracking the
    # model would make Keras trace its default `call` signature, which needs a context in a
    # conditional flow built from x alone.
    archive = keras.export.ExportArchive()
    endpoints = _endpoints(flow)
    for name, (fn, signature) in endpoints.items():
        fn.__name__ = name  # names the graph functions (error messages show them)
        archive.add_endpoint(name, fn, input_signature=signature)
    # The first endpoint (log_prob) also becomes "serving_default".
    return archive


# ---------------------------------------------------------------------- warm-up
def _serving_api_available() -> bool:
    try:
        import tensorflow_serving.apis  # noqa: F401
    except ImportError:
        return False
    return True


def warmup_inputs(flow: Flow) -> dict[str, dict[str, np.ndarray]]:
    """One small request per signature: ``{signature_name: {input_name: array}}``."""
    dtype = flow.compute_dtype
    draw = {"num_samples": np.array(1, np.int32), "seed": np.array([0, 0], np.int32)}
    x = {"x": np.zeros((1, flow.event_dim), dtype)}
    if flow.context_dim is not None:
        context = {"context": np.zeros((1, flow.context_dim), dtype)}
        x, draw = {**x, **context}, {**draw, **context}
    return {"log_prob": x, "sample": draw, "sample_and_log_prob": draw}


def write_warmup(directory: str, flow: Flow, model_name: str) -> str:
    """Writes TF Serving's warm-up file (PredictionLog records) into a SavedModel directory.

    Returns:
        The path of the file, ``directory/assets.extra/tf_serving_warmup_requests``.
    """
    try:
        from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2
    except ImportError as err:
        raise ImportError(
            "Writing a TF Serving warm-up file needs the tensorflow-serving-api package: "
            "pip install 'kflows[serving]', or pass warmup=False."
        ) from err
    path = os.path.join(directory, WARMUP_FILE)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tf.io.TFRecordWriter(path) as writer:
        for signature, inputs in warmup_inputs(flow).items():
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=model_name, signature_name=signature)
            )
            for key, value in inputs.items():
                request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request)
            )
            writer.write(log.SerializeToString())
    return path
