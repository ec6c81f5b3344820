"""What a flow's density means at inputs its layers cannot compute: NaN, inf, overflow.

A flow's layers are written for finite inputs. At the edges of the number line a layer can
return a finite answer that is wrong (a fused ``MatMul + Relu`` turns a NaN context into
zeros) or NaN where the density is simply zero (``inf - inf`` inside an affine layer).
The rules, applied at the data end of every flow:

- a row whose context holds NaN or inf has an undefined density: NaN (and NaN samples);
- a row of data holding NaN scores NaN;
- a row of data holding +-inf (and no NaN) lies outside every flow's support: ``-inf``;
- a finite row whose computation overflowed scores ``-inf`` (density zero in the dtype),
  unless the weights themselves are not finite, where NaN stays NaN.
"""

from __future__ import annotations

import math

import tensorflow as tf
import tensorflow_probability as tfp

tfb = tfp.bijectors


def _row_finite(t: tf.Tensor) -> tf.Tensor:
    return tf.reduce_all(tf.math.is_finite(t), axis=-1)


class RowGuard(tfb.Bijector):
    """The identity on finite rows that makes NaN contexts and infinite data explicit.

    The first bijector of a flow's chain (data side). In the density direction a row of
    ``y`` holding +-inf is replaced by zeros and gets log-det ``-inf`` (density zero, the
    way a bounded support scores points outside it), and every row whose context is not
    finite becomes NaN with a NaN log-det. In the sampling direction only the context rule
    applies. Rows are the last axis (event ndims 1).

    Args:
        context: the flow's context ``[..., C]`` or None.
        dtype: the flow's float dtype.
    """

    def __init__(self, context=None, dtype=tf.float32, name: str = "row_guard"):
        parameters = dict(locals())
        self._context = context
        super().__init__(
            forward_min_event_ndims=1, parameters=parameters, name=name, dtype=tf.as_dtype(dtype)
        )

    @classmethod
    def _parameter_properties(cls, dtype):
        return {}

    def _bad_context(self):
        """A boolean per context row (or a scalar False without context)."""
        if self._context is None:
            return tf.constant(False)
        return tf.logical_not(_row_finite(self._context))

    def _nan_where_bad_context(self, value, rows_axis_last: bool):
        bad = self._bad_context()
        if self._context is None:
            return value
        if rows_axis_last:
            bad = bad[..., tf.newaxis]
        return tf.where(bad, tf.constant(math.nan, value.dtype), value)

    def _forward(self, x):
        return self._nan_where_bad_context(x, rows_axis_last=True)

    # No ``_forward_log_det_jacobian``: TFP then computes it as ``-ildj(forward(x))``, and
    # ``TransformedDistribution.log_prob(y)`` asks for it at ``x = inverse(y)``, whose
    # ``forward`` is ``y`` itself from the bijector's cache: the ``-inf`` of an infinite row
    # survives even though ``x`` holds zeros there.

    def _infinite_rows(self, y):
        return tf.logical_and(
            tf.reduce_any(tf.math.is_inf(y), axis=-1),
            tf.logical_not(tf.reduce_any(tf.math.is_nan(y), axis=-1)),
        )

    def _inverse(self, y):
        outside = self._infinite_rows(y)[..., tf.newaxis]
        return self._nan_where_bad_context(tf.where(outside, tf.zeros_like(y), y), True)

    def _inverse_log_det_jacobian(self, y):
        outside = self._infinite_rows(y)
        zeros = tf.zeros_like(y[..., 0])
        ildj = tf.where(outside, tf.constant(-math.inf, y.dtype), zeros)
        return self._nan_where_bad_context(ildj, rows_axis_last=False)


def _weights_finite(variables) -> tf.Tensor:
    checks = [
        tf.reduce_all(tf.math.is_finite(v)) for v in variables if tf.as_dtype(v.dtype).is_floating
    ]
    return tf.reduce_all(tf.stack(checks)) if checks else tf.constant(True)


def nan_unless_finite_weights(values, variables):
    """``values`` (a tensor or a structure of float tensors), all NaN if a weight is not finite.

    A compiled graph does not propagate NaN weights reliably: grappler fuses ``MatMul +
    BiasAdd + Relu`` into one oneDNN kernel whose ReLU maps NaN to 0, so a network with NaN
    weights can return finite, meaningless numbers (eager execution gives NaN). The answer
    of a flow whose weights are not finite is undefined, so it is made NaN explicitly.
    """
    finite = _weights_finite(variables)

    def guard(t):
        return tf.where(finite, t, tf.constant(math.nan, t.dtype))

    return tf.nest.map_structure(guard, values)


def overflow_as_zero_density(log_prob, x, context, variables):
    """``log_prob`` with NaN replaced by ``-inf`` where the inputs and weights were finite.

    With finite inputs and finite weights a flow can produce NaN only by overflowing
    (``inf - inf``, ``0 * inf``): the point is so far out that its density underflows to
    zero in the dtype. Rows with a non-finite input keep what :class:`RowGuard` gave them,
    and every row is NaN when a weight is not finite (:func:`nan_unless_finite_weights`).
    """
    finite = _row_finite(x)
    if context is not None:
        finite = tf.logical_and(finite, _row_finite(context))
    overflow = tf.logical_and(tf.math.is_nan(log_prob), finite)
    log_prob = tf.where(overflow, tf.constant(-math.inf, log_prob.dtype), log_prob)
    return nan_unless_finite_weights(log_prob, variables)
