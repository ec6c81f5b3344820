"""The batch-normalization bijector of :class:`kflows.BatchNorm`, reading a Keras layer."""

from __future__ import annotations

from typing import TYPE_CHECKING

import tensorflow as tf
import tensorflow_probability as tfp

from kflows.bijectors.variables import LayerBijector

if TYPE_CHECKING:
    from kflows.layers.normalization import BatchNorm

tfb = tfp.bijectors


def feature_moments(x):
    """Mean and (biased) variance of ``x`` ``[..., D]`` over every axis but the last."""
    axes = list(range(x.shape.rank - 1))
    return tf.nn.moments(x, axes=axes)


def global_moments(x):
    """:func:`feature_moments` over the global batch when replicas train in sync.

    In the replica context of a ``tf.distribute`` strategy with more than one replica, each
    replica holds a slice of the batch: the sums and row counts are summed across replicas
    (``ReplicaContext.all_reduce``, differentiable), first for the mean, then for the squared
    deviations from it (two passes: ``E[x^2] - E[x]^2`` loses the variance of data far
    from zero). Elsewhere (one device, or the cross-replica context) it is
    :func:`feature_moments`. Every replica must call it the same number of times, in the
    same order, as a step does.
    """
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return feature_moments(x)
    axes = list(range(x.shape.rank - 1))
    rows = tf.cast(tf.reduce_prod(tf.shape(x)[:-1]), x.dtype)
    total, count = context.all_reduce(
        tf.distribute.ReduceOp.SUM, [tf.reduce_sum(x, axis=axes), rows]
    )
    mean = total / count
    # As tf.nn.moments: the variance's gradient does not go through the mean (it is zero).
    deviations = tf.math.squared_difference(x, tf.stop_gradient(mean))
    squares = context.all_reduce(tf.distribute.ReduceOp.SUM, tf.reduce_sum(deviations, axis=axes))
    return mean, squares / count


class BatchNormBijector(LayerBijector):
    """``x = (u - beta) * exp(-log_gamma) * sqrt(var + eps) + mean`` for a :class:`BatchNorm`.

    The density direction (inverse) uses the batch's statistics in training and updates the
    layer's moving averages; otherwise, and always for sampling (forward), it uses the
    moving averages. The log-det treats the statistics as constants, as in Real NVP, and is
    the one of the statistics the value used: ``log_prob`` in training asks TFP for the
    forward log-det at ``inverse(y)``, which is the batch statistics' (a
    :class:`~kflows.bijectors.OnePassBijector` remembers it), not the moving ones'. Under
    a ``tf.distribute`` strategy with several replicas, the batch statistics are those of
    the global batch (:func:`global_moments`), so every replica normalises alike and the
    moving averages stay equal on all of them. The maths runs in the layer's
    ``variable_dtype``.

    Args:
        layer: the :class:`~kflows.BatchNorm` layer whose statistics and weights it reads
            (``moving_mean``, ``moving_variance``, ``epsilon``, ``momentum``, ``affine``,
            ``log_gamma``, ``beta``).
        training: use (and update) the batch statistics in the density direction.
        name: the bijector's name.

    References:
        Dinh, Sohl-Dickstein, Bengio. Density estimation using Real NVP. ICLR 2017.
    """

    def __init__(self, layer: BatchNorm, training: bool, name: str = "batch_norm"):
        parameters = dict(locals())
        self._layer = layer
        self._training = bool(training)
        # The statistics and weights are read through the layer: list them for tf.Module.
        dtype = tf.as_dtype(layer.variable_dtype)
        super().__init__(parameters, layer.variables, name=name, dtype=dtype)

    def _moving(self):
        layer = self._layer
        return tf.convert_to_tensor(layer.moving_mean), tf.convert_to_tensor(layer.moving_variance)

    def _log_scale(self, variance):
        """Per-feature log of the inverse map's slope, ``log_gamma - log sqrt(var + eps)``."""
        log_scale = -0.5 * tf.math.log(variance + self._layer.epsilon)
        if self._layer.affine:
            log_scale = log_scale + self._layer.log_gamma
        return log_scale

    def _beta(self, dtype):
        return self._layer.beta if self._layer.affine else tf.zeros([], dtype)

    def _inverse_stats(self, y, update: bool):
        if not self._training:
            return self._moving()
        mean, variance = global_moments(y)
        if update:
            layer, momentum = self._layer, self._layer.momentum
            # Moving averages follow the statistics; they must not carry gradients.
            layer.moving_mean.assign(
                momentum * layer.moving_mean + (1.0 - momentum) * tf.stop_gradient(mean)
            )
            layer.moving_variance.assign(
                momentum * layer.moving_variance + (1.0 - momentum) * tf.stop_gradient(variance)
            )
        return mean, variance

    def _forward_and_log_det(self, x):
        mean, variance = self._moving()
        log_scale = self._log_scale(variance)
        y = (x - self._beta(x.dtype)) * tf.exp(-log_scale) + mean
        return y, tf.broadcast_to(-tf.reduce_sum(log_scale, axis=-1), tf.shape(x)[:-1])

    def _inverse_and_log_det(self, y, update=False):
        mean, variance = self._inverse_stats(y, update=update)
        log_scale = self._log_scale(variance)
        x = (y - mean) * tf.exp(log_scale) + self._beta(y.dtype)
        return x, tf.broadcast_to(tf.reduce_sum(log_scale, axis=-1), tf.shape(y)[:-1])

    def _inverse(self, y):
        # The one place that moves the moving averages: once per inverse, never when a
        # log-det is asked for on its own.
        x, ildj = self._inverse_and_log_det(y, update=True)
        self._one_pass_memo.put(x, y, ildj, direction="inverse")
        return x
