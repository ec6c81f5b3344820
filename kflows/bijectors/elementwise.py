"""The shared set-up of element-wise bijectors that hold their tensors as given."""

from __future__ import annotations

import tensorflow as tf


def dtype_of(value) -> tf.DType | None:
    """``value``'s dtype as a ``tf.DType``; None when it has none (a Python number).

    Example:
        >>> dtype_of(tf.zeros([2], tf.float64)), dtype_of(1.5)
        (tf.float64, None)
    """
    dtype = getattr(value, "dtype", None)
    return None if dtype is None else tf.as_dtype(dtype)


class ElementwiseParams:
    """Mixin: an element-wise bijector (``forward_min_event_ndims=0``) of tensors it holds.

    The tensors are kept as given, not as parameters TFP could slice or batch
    (``_parameter_properties`` is empty). ``parameters`` is the subclass's
    ``dict(locals())``; ``dtype`` the bijector's (None: any).
    """

    def __init__(self, parameters: dict, name: str, dtype=None):
        super().__init__(forward_min_event_ndims=0, parameters=parameters, name=name, dtype=dtype)

    @classmethod
    def _parameter_properties(cls, dtype):
        return {}
