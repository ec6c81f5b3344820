"""A dense conditioner: coupling layers' and continuous flows' default network."""

from __future__ import annotations

import keras
import tensorflow as tf

from kflows._tracking import track_items
from kflows.networks.conditioner import Conditioner, broadcast_concat


@keras.saving.register_keras_serializable(package="kflows")
class MLP(Conditioner):
    """Dense layers from ``[..., D_in]`` (+ context) to ``[..., out_features, num_params]``.

    Args:
        hidden_units: widths of the hidden layers (all equal when ``residual``).
        activation: hidden activation.
        residual: add each hidden layer's input to its output.

    Example:
        >>> layer = kflows.Coupling(conditioner=kflows.MLP(hidden_units=(64, 64)))
        >>> kflows.Flow([layer], event_dim=4).log_prob([[0.0, 0.0, 0.0, 0.0]]).shape
        TensorShape([1])
    """

    def _dense_width(self, units: int) -> int:
        """Outputs of the Dense behind a hidden layer of ``units`` units."""
        return units

    def _hidden(self, z):
        """A hidden layer's units from its Dense outputs."""
        return self.activation(z)

    def build(self, x_shape, context_shape=None):
        n_in = int(x_shape[-1]) + (int(context_shape[-1]) if context_shape is not None else 0)
        # The width comes from build: in a graph, broadcasting x against the context can
        # leave the static last dimension unknown.
        self._width = n_in
        self.hidden = []
        for i, units in enumerate(self.hidden_units):
            width = self._dense_width(units)
            layer = keras.layers.Dense(width, dtype=self.dtype_policy, name=f"dense_{i}")
            layer.build((None, n_in))
            self.hidden.append(layer)
            n_in = units
        track_items(self, "hidden", self.hidden)
        self.out = keras.layers.Dense(
            self.out_features * self.num_params,
            kernel_initializer="zeros",
            # The transform's parameters in full precision (see kflows/_precision.py).
            dtype=self.variable_dtype,
            name="out",
        )
        self.out.build((None, n_in))

    def call(self, x, context=None):
        h = x if context is None else broadcast_concat(x, context)
        batch = tf.shape(h)[:-1]
        h = tf.reshape(h, [-1, self._width])
        for i, layer in enumerate(self.hidden):
            z = self._hidden(layer(h))
            h = h + z if self.residual and i > 0 else z
        out = self.out(h)
        return tf.reshape(out, tf.concat([batch, [self.out_features, self.num_params]], 0))
