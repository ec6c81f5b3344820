"""Splines with identity tails: safe for inputs far outside the spline's range."""

from __future__ import annotations

import tensorflow as tf
import tensorflow_probability as tfp

tfb = tfp.bijectors


class IdentityTails(tfb.Bijector):
    """Runs ``spline`` inside ``(-bound, bound)`` and the identity outside.

    ``tfb.RationalQuadraticSpline`` is already the identity outside its range, but it still
    evaluates its rational function there and discards it with ``tf.where``; for huge inputs
    (``|x| ~ 1e20`` in float32) that unused branch overflows and its zero-weighted gradient
    becomes ``0 * inf = NaN``. Feeding the spline zeros outside the range avoids that.

    Args:
        spline: a ``tfb.RationalQuadraticSpline`` on ``[-bound, bound]``.
        bound: half-width of the spline's range.
        name: the bijector's name.

    References:
        Durkan, Bekasov, Murray, Papamakarios. Neural Spline Flows. NeurIPS 2019.
    """

    def __init__(self, spline: tfb.Bijector, bound: float, name: str = "spline"):
        parameters = dict(locals())
        self._spline = spline
        self._bound = bound
        super().__init__(
            forward_min_event_ndims=0, parameters=parameters, name=name, dtype=spline.dtype
        )

    @classmethod
    def _is_increasing(cls):
        return True

    @classmethod
    def _parameter_properties(cls, dtype):
        return {}

    def _apply(self, fn, x, outside_value):
        inside = tf.abs(x) < self._bound
        value = fn(tf.where(inside, x, tf.zeros_like(x)), event_ndims=0)
        # The spline broadcasts through dynamic shapes, losing the static event size in
        # graph mode; structures rely on it (the autoregressive loop keeps its shape), so
        # restore it.
        batch_shape = self._spline.bin_widths.shape[:-1]
        value.set_shape(tf.broadcast_static_shape(x.shape, batch_shape))
        return tf.where(inside, value, outside_value)

    def _forward(self, x):
        return self._apply(lambda v, event_ndims: self._spline.forward(v), x, x)

    def _inverse(self, y):
        return self._apply(self._spline_inverse, y, y)

    def _spline_inverse(self, y, event_ndims=0):
        """The spline's inverse, with the gradient of the implicit function theorem.

        ``tfb.RationalQuadraticSpline.inverse`` cuts its gradient where ``y`` is exactly a
        knot (it returns 0 there through a ``tf.where``), so at such points the gradients
        with respect to ``y`` and to the spline's parameters come out wrong (zero for
        ``y``); at initialisation the knots sit at round numbers such as 0, which data
        hits. With ``x = f^-1(y)``: ``dx/dy = 1 / f'(x)`` and ``dx/dtheta = -(df/dtheta)(x) /
        f'(x)``, computed from the forward map, which has no such cut.
        """
        spline = self._spline
        params = [tf.convert_to_tensor(p) for p in (spline.bin_widths, spline.bin_heights)] + [
            tf.convert_to_tensor(spline.knot_slopes)
        ]

        @tf.custom_gradient
        def inverse(y, widths, heights, slopes):
            x = spline.inverse(y)

            def grad(dx):
                with tf.GradientTape() as tape:
                    tape.watch([widths, heights, slopes])
                    same = tfb.RationalQuadraticSpline(
                        widths, heights, slopes, range_min=spline.range_min
                    )
                    fx = same.forward(x)
                slope = tf.exp(same.forward_log_det_jacobian(x, event_ndims=0))
                dy = dx / slope
                dparams = tape.gradient(fx, [widths, heights, slopes], output_gradients=-dy)
                return [dy, *dparams]

            return x, grad

        return inverse(y, *params)

    def _forward_log_det_jacobian(self, x):
        return self._apply(self._spline.forward_log_det_jacobian, x, tf.zeros_like(x))

    def _inverse_log_det_jacobian(self, y):
        # Minus the forward log-det at the inverse (TFP's own inverse log-det cuts its
        # gradient at the knots, as its inverse does); the cache shares the inverse.
        return -self._forward_log_det_jacobian(self.inverse(y))
