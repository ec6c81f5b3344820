"""The autoregressive bijector of MAF and IAF: one pass for density, D passes for sampling."""

from __future__ import annotations

import tensorflow as tf
import tensorflow_probability as tfp

from kflows._validate import integer
from kflows.bijectors.variables import EventSized, LayerBijector

tfb = tfp.bijectors


class Autoregressive(EventSized, LayerBijector):
    """``x_i = tau(u_i; theta_i(x_<i))``: an autoregressive bijector over a conditioner.

    Forward is base side ``u`` to data side ``x`` (sampling); inverse is data to base
    (density). ``transform_fn(z)`` returns an element-wise bijector on ``[..., D]`` whose
    parameters for feature ``i`` depend only on ``z[..., :i]`` (a MADE guarantees this; a
    MADE with another order of the features works the same way).

    - Inverse (density): **one** call of ``transform_fn`` at ``x`` gives ``u`` and the
      log-det at once.
    - Forward (sampling): the D-pass recursion; feature ``i`` is exact after ``i + 1``
      passes. The last pass sees every feature it needs, so its bijector gives the forward
      log-det as well: ``experimental_sample_and_log_prob`` costs D passes, not D + 1.

    The log-dets are summed over the event (``forward_min_event_ndims=1``). Wrap it in
    ``tfb.Invert`` for an IAF (fast sampling, D passes for the density of new points).

    Args:
        transform_fn: ``z [..., D] -> tfb.Bijector``, element-wise, autoregressive in ``z``.
        event_size: D, the number of features.
        variables: the variables ``transform_fn`` reads (see :class:`LayerVariables`).
        validate_args: check the number of features at run time when it is not static.
        name: the bijector's name.

    Example:
        >>> # x_i = u_i + sum(x_<i): the shift of feature i reads the features before it.
        >>> fn = lambda z: tfb.Shift(tf.cumsum(z, axis=-1, exclusive=True))
        >>> bijector = Autoregressive(fn, event_size=3)
        >>> bijector.forward(tf.constant([[1.0, 1.0, 1.0]])).numpy()
        array([[1., 2., 4.]], dtype=float32)

    References:
        Papamakarios, Pavlakou, Murray. Masked Autoregressive Flow for Density Estimation.
        NeurIPS 2017. Kingma, Salimans, Jozefowicz, Chen, Sutskever, Welling. Improved
        Variational Inference with Inverse Autoregressive Flow. NeurIPS 2016.
    """

    def __init__(
        self,
        transform_fn,
        event_size: int,
        variables=(),
        validate_args: bool = False,
        name: str = "autoregressive",
    ):
        parameters = dict(locals())
        if not callable(transform_fn):
            raise TypeError(f"Expected a callable transform_fn; got {transform_fn!r}.")
        self._transform_fn = transform_fn
        self._event_size = integer(event_size, "event_size")
        super().__init__(parameters, variables, validate_args, name)

    def _forward_and_log_det(self, x):
        x = self._checked(x)

        def step(z):
            return (self._transform_fn(z).forward(x),)

        # Pass k makes the first k features exact. D - 1 passes run in the loop; the last
        # one runs outside it, so that its bijector also gives the log-det.
        (z,) = tf.while_loop(
            lambda z: True, step, (tf.zeros_like(x),), maximum_iterations=self._event_size - 1
        )
        transform = self._transform_fn(z)
        return transform.forward(x), transform.forward_log_det_jacobian(x, event_ndims=1)

    def _inverse_and_log_det(self, y):
        y = self._checked(y)
        transform = self._transform_fn(y)
        return transform.inverse(y), transform.inverse_log_det_jacobian(y, event_ndims=1)
