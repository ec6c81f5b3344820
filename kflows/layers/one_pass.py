"""Bijectors that get the transform and its log-det from one conditioner pass.

TFP's ``MaskedAutoregressiveFlow`` and ``RealNVP`` call the conditioner once for the
transform and once more for the log-det, so ``log_prob`` (and its gradient) pays for every
network twice; graph optimisations do not merge the two passes because each reads the
weights anew. :class:`OnePass` computes both from one pass and hands the log-det to TFP's
bijector cache, the way ``tfb.FFJORD`` does, so a later ``inverse_log_det_jacobian`` of the
same tensor is a cache hit. The maths stays TFP's: the structures subclass the TFP bijectors
and the element-wise transforms are TFP bijectors.
"""

from __future__ import annotations

import tensorflow as tf
import tensorflow_probability as tfp
from tensorflow_probability.python.internal import cache_util

from kflows.bijectors.variables import LayerVariables

tfb = tfp.bijectors


class OnePass:
    """Mixin for a bijector whose transform and log-det share one expensive pass.

    Subclasses implement ``_forward_and_log_det(x)`` returning ``(y, fldj)`` (``fldj`` may
    be None when the forward pass does not give it cheaply, as in autoregressive sampling)
    and ``_inverse_and_log_det(y)`` returning ``(x, ildj)``; the log-dets are reduced over
    the bijector's minimal event dimensions, as ``_forward_log_det_jacobian`` would return.
    """

    # The cache calls these methods and stores the log-dets they return next to the output.
    _cache = cache_util.BijectorCacheWithGreedyAttrs(
        forward_name="_greedy_forward", inverse_name="_greedy_inverse"
    )

    def _greedy_forward(self, x, **kwargs):
        y, fldj = self._forward_and_log_det(x, **kwargs)
        return y, (None if fldj is None else {"fldj": fldj, "ildj": -fldj})

    def _greedy_inverse(self, y, **kwargs):
        x, ildj = self._inverse_and_log_det(y, **kwargs)
        return x, {"ildj": ildj, "fldj": -ildj}

    def _forward(self, x, **kwargs):
        return self._forward_and_log_det(x, **kwargs)[0]

    def _inverse(self, y, **kwargs):
        return self._inverse_and_log_det(y, **kwargs)[0]

    def _forward_log_det_jacobian(self, x, **kwargs):
        y = self.forward(x, **kwargs)  # a cache hit after sampling; stores fldj if it can
        attrs = self._cache.forward_attributes(x, **kwargs)
        if "fldj" not in attrs:
            # One pass in the inverse direction at y gives the log-det at x.
            attrs.update(self._greedy_inverse(y, **kwargs)[1])
        return attrs["fldj"]

    def _inverse_log_det_jacobian(self, y, **kwargs):
        self.inverse(y, **kwargs)  # the cached inverse pass stores the log-det
        attrs = self._cache.inverse_attributes(y, **kwargs)
        if "ildj" not in attrs:
            # y came out of a forward pass that left the log-det out (autoregressive
            # sampling): one inverse pass gives it.
            attrs.update(self._greedy_inverse(y, **kwargs)[1])
        return attrs["ildj"]


class OnePassMAF(LayerVariables, OnePass, tfb.MaskedAutoregressiveFlow):
    """``tfb.MaskedAutoregressiveFlow`` with one conditioner pass for density and log-det.

    Sampling is the D-pass recursion; its last pass sees every feature it needs, so the
    log-det comes out of the same loop instead of one more pass at the end.
    """

    def _forward_and_log_det(self, x, **kwargs):
        size = x.shape[-1]
        if size is None:
            raise ValueError(f"Expected a known number of features; got x of shape {x.shape}.")

        def step(y):
            return (self._bijector_fn(y, **kwargs).forward(x),)

        # D - 1 passes in the loop, the last one outside: its bijector gives the log-det,
        # which graph pruning drops when only samples are asked for.
        (y,) = tf.while_loop(lambda _: True, step, (tf.zeros_like(x),), maximum_iterations=size - 1)
        bijector = self._bijector_fn(y, **kwargs)
        return bijector.forward(x), bijector.forward_log_det_jacobian(x, event_ndims=1)

    def _inverse_and_log_det(self, y, **kwargs):
        bijector = self._bijector_fn(y, **kwargs)
        return bijector.inverse(y), bijector.inverse_log_det_jacobian(y, event_ndims=1)


class OnePassRealNVP(LayerVariables, OnePass, tfb.RealNVP):
    """``tfb.RealNVP`` (with ``num_masked`` > 0) with one conditioner pass per direction."""

    def _halves(self, z):
        self._cache_input_depth(z)
        return z[..., : self._masked_size], z[..., self._masked_size :]

    def _forward_and_log_det(self, x, **kwargs):
        x0, x1 = self._halves(x)
        bijector = self._bijector_fn(x0, self._bijector_input_units(), **kwargs)
        y1 = bijector.forward(x1)
        return tf.concat([x0, y1], axis=-1), bijector.forward_log_det_jacobian(x1, event_ndims=1)

    def _inverse_and_log_det(self, y, **kwargs):
        y0, y1 = self._halves(y)
        bijector = self._bijector_fn(y0, self._bijector_input_units(), **kwargs)
        x1 = bijector.inverse(y1)
        return tf.concat([y0, x1], axis=-1), bijector.inverse_log_det_jacobian(y1, event_ndims=1)
