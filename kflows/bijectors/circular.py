"""Bijectors of the circle ``[-pi, pi)``: the circular shift (a rotation)."""

from __future__ import annotations

import math

import tensorflow as tf
import tensorflow_probability as tfp

from kflows.bijectors.elementwise import ElementwiseParams, dtype_of

tfb = tfp.bijectors


def on_circle(x):
    """True where ``x`` lies on the closed interval ``[-pi, pi]`` (``pi`` rounded to
    ``x``'s dtype; both ends are the same point of the circle); False for NaN."""
    pi = tf.constant(math.pi, x.dtype)
    return (x >= -pi) & (x <= pi)


def wrap(x):
    """``x`` modulo ``2 pi``, into ``[-pi, pi)``.

    ``floormod`` rounds into ``[0, 2 pi]`` at worst (both ends included), and the end
    ``pi`` is folded onto ``-pi``: the result stays on the circle whatever the rounding.
    Its gradient is 1.
    """
    pi = tf.constant(math.pi, x.dtype)
    angle = tf.math.floormod(x + pi, 2.0 * pi) - pi
    return tf.where(angle >= pi, -pi + (angle - tf.stop_gradient(angle)), angle)


class CircularShift(ElementwiseParams, tfb.Bijector):
    """A rotation of the circle ``[-pi, pi)``: ``y = (x + shift)`` modulo ``2 pi``.

    Volume-preserving on the circle (log-det 0). Points off the circle are not angles: a
    ``y`` outside ``[-pi, pi]`` is passed through unchanged with inverse log-det ``-inf``,
    so its density is zero, never NaN or a finite number (an ``x`` outside likewise gets
    forward log-det ``+inf``, the minus of the inverse's at its image).

    Args:
        shift: the rotation angle, any real (only its value modulo ``2 pi`` matters);
            broadcasts against the input like an element-wise op.
        name: the bijector's name.

    Example:
        >>> shift = CircularShift(tf.constant(1.0))
        >>> np.round(shift.forward(tf.constant([0.0, 3.0])).numpy(), 4)
        array([ 1.    , -2.2832], dtype=float32)
        >>> shift.inverse_log_det_jacobian(tf.constant([4.0]), event_ndims=0).numpy()
        array([-inf], dtype=float32)

    References:
        Rezende, Papamakarios, Racaniere, Albergo, Kanwar, Shanahan, Cranmer. Normalizing
        Flows on Tori and Spheres. ICML 2020.
    """

    def __init__(self, shift, name: str = "circular_shift"):
        parameters = dict(locals())
        self._shift = shift
        super().__init__(parameters, name, dtype_of(shift))

    @property
    def shift(self):
        return self._shift

    def _rotate(self, z, sign: float):
        shift = tf.convert_to_tensor(self._shift, z.dtype)
        return tf.where(on_circle(z), wrap(z + sign * shift), z)

    def _log_det(self, z, off: float):
        # NaN stays NaN; a point off the circle has no density (inverse) or comes from none.
        value = tf.where(on_circle(z), tf.zeros_like(z), tf.constant(off, z.dtype))
        return tf.where(tf.math.is_nan(z), z, value)

    def _forward(self, x):
        return self._rotate(x, 1.0)

    def _inverse(self, y):
        return self._rotate(y, -1.0)

    def _forward_log_det_jacobian(self, x):
        return self._log_det(x, math.inf)

    def _inverse_log_det_jacobian(self, y):
        return self._log_det(y, -math.inf)
