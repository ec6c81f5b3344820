"""SavedModel export for TF Serving, with ``log_prob``, ``sample`` and ``sample_and_log_prob``.

:func:`export` writes a trained :class:`~kflows.Flow` as a TensorFlow SavedModel in the
layout TF Serving watches, ``path/<version>/``, through ``keras.export.ExportArchive``. The
graphs hold standard TensorFlow ops only (the TFP bijectors are traced into plain ops), so
the export loads with ``tf.saved_model.load``, ``saved_model_cli`` or TF Serving where
neither kflows, TensorFlow Probability nor Keras is installed.

Signatures (``D`` features, ``C`` context features, float dtype = the flow's
``input_dtype``: float32 under a mixed precision policy, float64 for a float64 flow):

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
``s`` in-process is ``[0, s]``, see :func:`kflows.inputs.stateless_seed`).

Checks at the signature boundary: a wrong number of features in ``x`` or ``context``, ``x``
and ``context`` with different numbers of rows, and a negative ``num_samples`` fail with an
``InvalidArgumentError`` that names what was expected and what came; a wrong dtype is
refused by the signature itself (TF Serving's JSON API converts numbers to the signature's
dtype).

Values are not refused: as ``Flow.log_prob`` does (the export traces it), the exported
``log_prob`` answers every row, and one bad row does not fail a serving batch nor change the
other rows:

- a row with NaN in ``x`` or in its ``context``, or ±inf in its ``context``: NaN;
- a row with ±inf in ``x`` (and no NaN): ``-inf`` (zero density);
- a finite row whose computation overflows: ``-inf`` (NaN if the weights are not finite).

``sample`` and ``sample_and_log_prob`` give NaN samples for a context row holding NaN or
inf, as the flow's distribution does.

Versions: ``path/<version>`` is claimed under an exclusive ``fcntl.flock`` on
``path/.kflows-export.lock`` (a local or otherwise ``flock``-capable file system, POSIX),
so processes exporting to one ``path`` at once get distinct versions, and an existing
version is replaced only with ``overwrite=True``. A version is an integer in
``[0, 2**63 - 1]``: TF Serving reads version directory names as int64, so larger names are
neither versions nor counted when choosing the next one. Each writer builds its SavedModel in
``path/.tmp-<token>`` while it holds a lock on ``path/.tmp-<token>.lock``; an export first
removes the ``.tmp-*`` and ``.old-*`` entries whose lock is free (their writer died, e.g.
killed mid-export) and leaves those of live writers.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from typing import TYPE_CHECKING

import keras
import numpy as np
import tensorflow as tf

if TYPE_CHECKING:
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

    The version is written atomically: the SavedModel is built in a hidden staging
    directory inside ``path`` (TF Serving ignores names that are not integers) and renamed to
    ``path/<version>`` once complete, so a server watching ``path`` never sees a partial
    version. The version is claimed under an exclusive lock on ``path/.kflows-export.lock``,
    so processes exporting to the same ``path`` at once get distinct versions, and none
    replaces another's without ``overwrite=True``. Staging directories left by dead writers
    are removed at the start. See the module docstring for the signatures.

    Args:
        flow: a built :class:`~kflows.Flow` (fitted, or built with ``flow.build((None, D))``).
        path: the model base path (TF Serving's ``--model_base_path``); created if missing.
        version: integer version in ``[0, 2**63 - 1]`` (TF Serving reads versions as int64);
            by default one more than the largest existing one, or 1 in an empty ``path``.
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
        ValueError: ``version`` is not an integer in ``[0, 2**63 - 1]``, or ``version`` is
            None and the largest existing version is already ``2**63 - 1``.

    Example:
        >>> flow = kflows.maf(num_layers=2, hidden_units=(16, 16))
        >>> flow.compile()
        >>> history = flow.fit(kflows.data.two_moons(512), epochs=1, verbose=0)
        >>> kflows.export(flow, "models/maf", warmup=False)  # doctest: +ELLIPSIS
        '.../models/maf/1'
    """
    # Duck-typed, so that this module does not import kflows.flow (which imports it).
    if not (isinstance(flow, keras.Model) and hasattr(flow, "distribution")):
        raise TypeError(f"Expected a kflows.Flow; got {type(flow).__name__}.")
    flow._require_built()
    if version is not None:
        version = _check_version(version)
    if warmup is None:
        warmup = _serving_api_available()
    base = os.path.abspath(os.fspath(path))
    os.makedirs(base, exist_ok=True)
    _claim(base, version, overwrite)  # fail early; claimed for good under the lock below
    with _locked(base):
        _remove_dead_writers(base)
        writer, token = _new_writer(base)
    staging = os.path.join(base, _STAGING + token)
    old = os.path.join(base, _OLD + token)
    try:
        archive = _archive(flow)
        archive.write_out(staging, verbose=False)
        if warmup:
            write_warmup(staging, flow, model_name=os.path.basename(base))
        with _locked(base):
            version, replaced = _claim(base, version, overwrite)
            target = os.path.join(base, str(version))
            _publish(staging, target, os.path.join(base, replaced) if replaced else None, old)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        try:
            os.unlink(os.path.join(base, _STAGING + token + _LOCK_SUFFIX))
        finally:
            os.close(writer)
    return target


# ---------------------------------------------------------------------- versions
#: Lock file in the base path, held while a version is claimed and renamed into place.
LOCK_FILE = ".kflows-export.lock"
#: The largest version TF Serving can load: it reads version directory names as int64.
MAX_VERSION = 2**63 - 1
# A writer holds a lock on ``.tmp-<token>.lock`` while it owns ``.tmp-<token>`` (the staging
# directory) and ``.old-<token>`` (a version it replaces, being deleted).
_STAGING, _OLD, _LOCK_SUFFIX = ".tmp-", ".old-", ".lock"


def _check_version(version) -> int:
    if (
        isinstance(version, bool)
        or not isinstance(version, (int, np.integer))
        or not 0 <= version <= MAX_VERSION
    ):
        raise ValueError(
            "Expected version to be None or an integer in [0, 2**63 - 1] (TF Serving reads "
            f"versions as int64); got {version!r}."
        )
    return int(version)


def _versions(base: str) -> dict[int, str]:
    """``{version: name}`` of the entries of ``base`` that TF Serving reads as versions."""
    found = {}
    for name in os.listdir(base):
        if name.isascii() and name.isdigit() and int(name) <= MAX_VERSION:
            found[int(name)] = name
    return found


def _claim(base: str, version: int | None, overwrite: bool) -> tuple[int, str | None]:
    """The version to write and the name of the entry it replaces, if any.

    Only a decision under :func:`_locked` holds: another writer may claim a version
    before the lock is taken.
    """
    existing = _versions(base)
    if version is None:
        latest = max(existing, default=0)
        if latest >= MAX_VERSION:
            raise ValueError(
                f"Expected the versions in {base} to leave room for one more up to 2**63 - 1 "
                f"(TF Serving reads versions as int64); got version {latest}. Pass an unused "
                "version explicitly."
            )
        return latest + 1, None
    if version in existing and not overwrite:
        raise FileExistsError(
            f"Expected a new version; {os.path.join(base, existing[version])} exists. Pass "
            "overwrite=True to replace it, or version=None to take the next free version."
        )
    return version, existing.get(version)


def _publish(staging: str, target: str, replaced: str | None, old: str) -> None:
    """Renames a complete SavedModel into place (atomic on one file system).

    ``replaced``, the existing version (with ``overwrite=True``), is first renamed to
    ``old``, and renamed back if the new version cannot take its place (if that fails too,
    it stays in ``old`` and the error says so).
    """
    if replaced:
        os.rename(replaced, old)
    try:
        os.rename(staging, target)
    except OSError:
        if replaced:
            os.rename(old, replaced)
        raise


# ---------------------------------------------------------------------- locks
def _lock(path: str, blocking: bool = True) -> int | None:
    """Opens ``path`` (created if missing) and takes an exclusive ``flock`` on it.

    Returns:
        The open file descriptor (closing it releases the lock), or None if ``blocking`` is
        False and another open file holds the lock.
    """
    import fcntl  # POSIX only; imported here so that `import kflows` works elsewhere

    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if blocking else fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd


@contextlib.contextmanager
def _locked(base: str):
    """Holds the base path's lock: one exporter at a time claims versions and staging names."""
    fd = _lock(os.path.join(base, LOCK_FILE))
    try:
        yield
    finally:
        os.close(fd)


def _new_writer(base: str) -> tuple[int, str]:
    """Creates and locks ``.tmp-<token>.lock``, then makes ``.tmp-<token>``; hold the base lock.

    Returns:
        The descriptor holding the writer's lock, and the token.
    """
    fd, lock = tempfile.mkstemp(prefix=_STAGING, suffix=_LOCK_SUFFIX, dir=base)
    os.close(fd)
    fd = _lock(lock)
    token = os.path.basename(lock)[len(_STAGING) : -len(_LOCK_SUFFIX)]
    try:
        os.mkdir(os.path.join(base, _STAGING + token))  # mkdir's usual permissions
    except BaseException:
        os.unlink(lock)
        os.close(fd)
        raise
    return fd, token


def _remove_dead_writers(base: str) -> None:
    """Removes the ``.tmp-*`` and ``.old-*`` entries of writers that died; hold the base lock.

    A writer is dead when its lock can be taken (the kernel drops a ``flock`` when its
    holder exits, killed or not). Entries without a lock file (left by older kflows) count
    as dead; entries whose lock cannot be opened (another user's) are left alone.
    """
    tokens = set()
    for name in os.listdir(base):
        for prefix in (_STAGING, _OLD):
            if name.startswith(prefix):
                tokens.add(name[len(prefix) :].removesuffix(_LOCK_SUFFIX))
    for token in sorted(tokens):
        lock = os.path.join(base, _STAGING + token + _LOCK_SUFFIX)
        try:
            fd = _lock(lock, blocking=False)
        except OSError:
            continue
        if fd is None:  # its writer is alive
            continue
        try:
            for prefix in (_STAGING, _OLD):
                shutil.rmtree(os.path.join(base, prefix + token), ignore_errors=True)
            os.unlink(lock)
        finally:
            os.close(fd)


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
    dim, ctx_dim, dtype = flow.event_dim, flow.context_dim, flow.input_dtype

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
        return {"log_prob": flow.log_prob(x, context)}

    def sample(num_samples, seed, context=None):
        return {"samples": _draw(num_samples, seed, context, with_log_prob=False)}

    def sample_and_log_prob(num_samples, seed, context=None):
        samples, log_prob = _draw(num_samples, seed, context, with_log_prob=True)
        return {"samples": samples, "log_prob": log_prob}

    def _draw(num_samples, seed, context, with_log_prob):
        if context is not None:
            context = _checked_features(context, "context", ctx_dim)
        num_samples = _checked_num_samples(num_samples)
        return flow._draw(num_samples, context, seed, with_log_prob=with_log_prob)

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
    dtype = flow.input_dtype
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
