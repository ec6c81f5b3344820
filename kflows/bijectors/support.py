"""Bounded supports: data outside a bijector's image has density zero, not NaN."""

from __future__ import annotations

import math

import tensorflow as tf
import tensorflow_probability as tfp

tfb = tfp.bijectors


class ZeroDensityOutside(tfb.Bijector):
    """Wraps ``bijector`` (forward onto the open interval ``(low, high)``) so that data
    outside the interval gets log-det ``-inf``, hence density zero, instead of NaN.

    Points outside are swapped for an interior point before reaching ``bijector`` (so that
    neither values nor gradients see the NaN of e.g. ``logit(-0.5)``), and their
    inverse log-det is replaced by ``-inf``. A sample whose forward map saturates to the
    boundary in floating point (e.g. ``sigmoid(40.0) == 1.0`` in float32) is outside too.

    Args:
        bijector: an element-wise bijector whose forward map lands in ``(low, high)``.
        low: lower end of the support (may be ``-inf``).
        high: upper end of the support (may be ``inf``).
        name: the bijector's name.
    """

    def __init__(self, bijector: tfb.Bijector, low: float, high: float, name: str):
        parameters = dict(locals())
        self._bijector = bijector
        self._low, self._high = low, high
        if math.isinf(high):
            self._inside_point = low + 1.0
        elif math.isinf(low):
            self._inside_point = high - 1.0
        else:
            self._inside_point = 0.5 * (low + high)
        super().__init__(
            forward_min_event_ndims=0,
            parameters=parameters,
            name=name,
            dtype=bijector.dtype,
            is_constant_jacobian=bijector.is_constant_jacobian,
        )

    @classmethod
    def _parameter_properties(cls, dtype):
        return {}

    def _safe(self, y):
        inside = (y > self._low) & (y < self._high)
        return inside, tf.where(inside, y, tf.cast(self._inside_point, y.dtype))

    def _forward(self, x):
        return self._bijector.forward(x)

    # No ``_forward_log_det_jacobian``: TFP then computes it as ``-ildj(forward(x))``, and
    # ``forward(x)`` of an ``x`` that came out of ``inverse(y)`` is ``y`` itself, from the
    # bijector's cache. ``TransformedDistribution.log_prob(y)`` scores ``y`` through
    # ``inverse(y)`` and that forward log-det, so an outside ``y`` gets ``-inf`` there too.

    def _inverse(self, y):
        return self._bijector.inverse(self._safe(y)[1])

    def _inverse_log_det_jacobian(self, y):
        inside, safe = self._safe(y)
        ildj = self._bijector.inverse_log_det_jacobian(safe, event_ndims=0)
        return tf.where(inside, ildj, tf.cast(-math.inf, y.dtype))
