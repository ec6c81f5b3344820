"""The one parser of what a flow is given: data, context, weights, seeds and sample counts.

Every public entry point of :class:`~kflows.Flow` (``fit``, ``evaluate``, ``predict``,
``log_prob``, ``sample``, ``sample_and_log_prob``), the export and
:meth:`~kflows.Standardize.adapt` read their inputs through this module, so the contract
is stated once:

* **Forms.** ``x``; ``(x,)``; ``(x, context)`` (a *tuple*: a list of numbers is data);
  ``{"x": x, "context": context}``. ``fit`` and ``evaluate`` also take a
  ``tf.data.Dataset`` of batches in any of these forms, and ``"sample_weight"`` in a dict.
  A flow has no targets: a dataset's pair is ``(x, context)``, and a pair whose second
  element is one number per row (``(x, y)`` labels) is refused as ambiguous.
* **Shapes.** ``x`` is ``[N, D]`` (``[..., D]`` in ``log_prob``); ``context`` is ``[N, C]``
  or ``[C]`` (shared by every row); sample weights are ``[N]``.
* **Types.** Real numbers: floats, or integers, which are cast to the flow's dtype. Booleans,
  complex numbers and strings are refused. Tensors, variables and ``KerasTensor``s are kept
  as they are (cast only), so gradients reach them and graphs are not cut.
* **Values.** Training and evaluation data must be finite: in-memory data is checked before
  the first step, and a dataset is checked batch by batch as it streams (an error names the
  batch, and the weights from before it are kept). Scoring never refuses a value: a row
  with NaN scores NaN (see :meth:`~kflows.Flow.log_prob`).
* **Seeds and counts** are never coerced: an ``int`` seed must fit in int32, a seed pair
  must be two int32 values, and ``num_samples`` must be a non-negative integer.
"""

from __future__ import annotations

import numbers

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

#: Keys of a dict of inputs; ``sample_weight`` only in training and evaluation data.
DATA_KEYS = ("x", "context")
BATCH_KEYS = ("x", "context", "sample_weight")
#: Marks the error raised by a streaming dataset's finiteness check.
NON_FINITE_MARK = "kflows: non-finite values in"

_INT32 = np.iinfo(np.int32)


def is_symbolic(value) -> bool:
    """True for a ``KerasTensor`` (functional API) or a graph tensor inside a ``tf.function``."""
    if isinstance(value, keras.KerasTensor):
        return True
    return tf.is_tensor(value) and not tf.executing_eagerly()


def split(inputs, keys=DATA_KEYS) -> tuple:
    """``x``, ``(x,)``, ``(x, context)`` or a dict -> one value per key (None if absent)."""
    if isinstance(inputs, dict):
        unknown = set(inputs) - set(keys)
        if "x" not in inputs or unknown:
            raise ValueError(
                f"Expected a dict with key 'x' and optionally {list(keys[1:])}; "
                f"got keys {sorted(inputs)}."
            )
        return tuple(inputs.get(key) for key in keys)
    pair = isinstance(inputs, tuple) or (
        # Keras hands tuples of tensors back as lists; a list of numbers is data.
        isinstance(inputs, list)
        and 0 < len(inputs) <= 2
        and all(tf.is_tensor(v) or isinstance(v, keras.KerasTensor) for v in inputs)
    )
    if pair:
        if len(inputs) == 1:
            return (inputs[0],) + (None,) * (len(keys) - 1)
        if len(inputs) == 2:
            return (inputs[0], inputs[1]) + (None,) * (len(keys) - 2)
        raise ValueError(
            f"Expected x, (x,) or (x, context); got a tuple of {len(inputs)} items. A flow "
            "takes no targets; pass sample weights with sample_weight=."
        )
    return (inputs,) + (None,) * (len(keys) - 1)


def _check_dtype(dtype, what: str) -> None:
    dtype = tf.as_dtype(dtype)
    if not (dtype.is_floating or dtype.is_integer) or dtype.is_bool:
        raise TypeError(
            f"Expected {what} of a real numeric dtype (float or int); got {dtype.name}."
        )


def _check_width(shape, what: str, width: int | None, symbol: str) -> None:
    if shape.rank == 0:
        raise ValueError(f"Expected {what} of shape [..., {width or symbol}]; got a scalar.")
    if width is not None and shape.rank is not None and shape[-1] is not None:
        if shape[-1] != width:
            raise ValueError(
                f"Expected {what} with {symbol}={width} features, i.e. shape [..., {width}]; "
                f"got shape {tuple(shape)}."
            )


def as_tensor(value, what: str, width: int | None, dtype, symbol: str = "D"):
    """``value`` as a tensor of ``dtype``, shape-checked; tensors are cast, never copied.

    Eager tensors, variables and graph tensors keep their connection to the tape and graph
    (a ``tf.cast`` is differentiable); numpy arrays and lists are converted. ``KerasTensor``s
    are returned as they are (the caller routes them through the functional API).
    """
    if isinstance(value, keras.KerasTensor):
        _check_dtype(value.dtype, what)
        _check_width(tf.TensorShape(value.shape), what, width, symbol)
        return value
    if isinstance(value, keras.Variable):
        value = value.value
    if not tf.is_tensor(value) and not isinstance(value, tf.Variable):
        array = np.asarray(value)
        if array.dtype.kind not in "fiu":
            raise TypeError(
                f"Expected {what} of a real numeric dtype (float or int); got {array.dtype}."
            )
        value = tf.convert_to_tensor(array)
    _check_dtype(value.dtype, what)
    _check_width(value.shape, what, width, symbol)
    return value if value.dtype == dtype else tf.cast(value, dtype)


# ---------------------------------------------------------------------- in-memory data
def check_array(value, what: str, width: int | None, dtype, symbol: str = "D") -> np.ndarray:
    """A non-empty ``[N, width]`` array of finite real numbers, as ``dtype``; else an error."""
    if tf.is_tensor(value) or isinstance(value, (tf.Variable, keras.Variable)):
        value = tf.convert_to_tensor(value).numpy()
    array = np.asarray(value)
    if array.dtype.name == "bfloat16":  # numpy knows it as an opaque type (ml_dtypes)
        array = array.astype(np.float32)
    if array.dtype.kind not in "fiu":
        raise TypeError(
            f"Expected {what} of a real numeric dtype (float or int); got {array.dtype}."
        )
    if array.ndim != 2 or array.shape[0] == 0:
        raise ValueError(
            f"Expected non-empty {what} of shape [N, {width or symbol}]; got shape {array.shape}."
        )
    _check_width(tf.TensorShape(array.shape), what, width, symbol)
    converted = np.asarray(array, dtype=dtype)
    bad = ~np.all(np.isfinite(converted), axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)
        overflow = bool(np.all(np.isfinite(array[rows[0]])))
        cause = f"values beyond the range of {np.dtype(dtype).name}" if overflow else "NaN or inf"
        raise ValueError(
            f"Expected finite {what}; got {cause} in {rows.size} row(s), first at row {rows[0]}."
        )
    return converted


def check_weights(value, rows: int, what: str) -> np.ndarray:
    """Sample weights: ``[N]`` finite, non-negative, not all zero."""
    weights = np.asarray(value)
    if weights.dtype.kind not in "fiu":
        raise TypeError(f"Expected {what} of a real numeric dtype; got {weights.dtype}.")
    weights = weights.astype(np.float64)
    if weights.shape != (rows,):
        raise ValueError(f"Expected {what} of shape [{rows}] (one per row); got {weights.shape}.")
    if not np.all(np.isfinite(weights)) or np.any(weights < 0) or not np.any(weights > 0):
        raise ValueError(
            f"Expected finite, non-negative {what} with a positive sum; got min "
            f"{np.nanmin(weights) if rows else None}, sum {weights.sum()}."
        )
    return weights


# ---------------------------------------------------------------------- datasets
def _spec_rank(spec) -> int | None:
    return spec.shape.rank if isinstance(spec, tf.TensorSpec) else None


def dataset_as_dicts(dataset: tf.data.Dataset, what: str, dtype, widths: dict) -> tf.data.Dataset:
    """Maps a dataset of batches to ``{"x", "context"?, "sample_weight"?}`` dicts, checked.

    Each batch is cast to ``dtype`` and checked for non-finite values as it streams; a bad
    batch raises an ``InvalidArgumentError`` that carries :data:`NON_FINITE_MARK` and the
    batch's index in the epoch, before any step sees it.
    """
    spec = dataset.element_spec
    if isinstance(spec, dict):
        keys = tuple(key for key in BATCH_KEYS if key in spec)
        if "x" not in spec or set(spec) - set(BATCH_KEYS):
            raise ValueError(
                f"Expected {what} dataset dicts with key 'x' and optionally 'context', "
                f"'sample_weight'; got keys {sorted(spec)}."
            )
        specs = spec
        to_dict = lambda element: element  # noqa: E731
    else:
        parts = spec if isinstance(spec, tuple) else (spec,)
        if len(parts) > 2:
            raise ValueError(
                f"Expected a {what} dataset of x, (x,) or (x, context) batches; got tuples of "
                f"{len(parts)}. A flow takes no targets; yield {{'x', 'context', "
                "'sample_weight'}} dicts to pass sample weights."
            )
        keys = DATA_KEYS[: len(parts)]
        specs = dict(zip(keys, parts, strict=True))
        if isinstance(spec, tuple):
            to_dict = lambda *element: dict(zip(keys, element, strict=True))  # noqa: E731
        else:
            to_dict = lambda element: {"x": element}  # noqa: E731
    for key in keys:
        rank = _spec_rank(specs[key])
        want = 1 if key == "sample_weight" else 2
        if rank is None:
            raise TypeError(
                f"Expected {what} dataset element {key!r} to be a dense tensor; got {specs[key]}."
            )
        if key == "context" and rank == 1:
            raise ValueError(
                f"Expected (x, context) pairs in the {what} dataset, context of shape [N, C]; "
                f"got a second element of shape {specs[key].shape}, one value per row, which "
                "reads like (x, y) labels. A flow takes no targets: for a context of one "
                "feature give it shape [N, 1] (e.g. map(lambda x, c: (x, c[:, None]))), "
                "or yield {'x': x, 'context': c} dicts."
            )
        if rank != want:
            raise ValueError(
                f"Expected batched {what} data: {key} of rank {want}; got element shape "
                f"{specs[key].shape}. Call dataset.batch(batch_size) first."
            )
        _check_dtype(specs[key].dtype, f"{what} {key}")
        if key in widths:
            symbol = "D" if key == "x" else "C"
            _check_width(specs[key].shape, f"{what} {key}", widths[key], symbol)

    def check(index, element):
        element = to_dict(*element) if isinstance(element, tuple) else to_dict(element)
        element = {k: tf.cast(v, dtype) for k, v in element.items()}
        checks = []
        for key, value in element.items():
            finite = tf.reduce_all(tf.math.is_finite(value))
            message = f"{NON_FINITE_MARK} {what} {key} of batch"
            checks.append(tf.debugging.Assert(finite, [message, index], summarize=1))
        with tf.control_dependencies(checks):
            return {k: tf.identity(v) for k, v in element.items()}

    return dataset.enumerate().map(check)


# ---------------------------------------------------------------------- seeds and counts
def stateless_seed(seed) -> tf.Tensor:
    """An int32 ``[2]`` stateless seed from an int, a pair, a tensor, or None (random).

    An int ``s`` means ``[0, s]`` and must fit in int32; a pair must hold two int32 values.
    Nothing is wrapped or truncated: ``2**32 + 7`` is refused, not read as ``7``.
    """
    if seed is None:
        return tfp.random.sanitize_seed(None)
    if isinstance(seed, bool) or isinstance(seed, np.bool_):
        raise TypeError(f"Expected an int or an int32 pair as seed; got {seed!r}.")
    if isinstance(seed, numbers.Integral):
        seed = [0, int(seed)]
    if is_symbolic(seed):
        if not seed.dtype.is_integer or seed.shape.rank != 1 or seed.shape[0] not in (2, None):
            raise ValueError(f"Expected an integer seed of shape [2]; got {seed!r}.")
        return tf.cast(seed, tf.int32)
    values = np.asarray(tf.convert_to_tensor(seed).numpy() if tf.is_tensor(seed) else seed)
    if values.shape != (2,) or values.dtype.kind not in "iu":
        raise ValueError(
            f"Expected an int or an integer seed of shape [2]; got {seed!r} "
            f"(dtype {values.dtype}, shape {values.shape})."
        )
    if values.min() < _INT32.min or values.max() > _INT32.max:
        raise ValueError(
            f"Expected seed values within int32 [{_INT32.min}, {_INT32.max}]; got "
            f"{values.tolist()}. Values are not wrapped: pick a seed in range."
        )
    return tf.constant(values, dtype=tf.int32)


def num_samples(value):
    """A non-negative integer count (a Python or numpy int, or an integer scalar tensor)."""
    if is_symbolic(value):
        if not value.dtype.is_integer or value.shape.rank not in (0, None):
            raise TypeError(f"Expected num_samples as an integer scalar; got {value!r}.")
        return value
    if tf.is_tensor(value):
        if not value.dtype.is_integer or value.shape.rank != 0:
            raise TypeError(f"Expected num_samples as an integer scalar; got {value!r}.")
        value = value.numpy()
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(
            f"Expected num_samples as a non-negative integer; got {type(value).__name__} "
            f"{value!r} (counts are not rounded or truncated)."
        )
    if value < 0:
        raise ValueError(f"Expected num_samples >= 0; got {value}.")
    return int(value)
