"""A gated dense conditioner: each hidden layer is a gated linear unit."""

from __future__ import annotations

import keras
import tensorflow as tf

from kflows.networks.mlp import MLP


@keras.saving.register_keras_serializable(package="kflows")
class GatedMLP(MLP):
    """Dense layers with multiplicative gates, ``h' = act(W h) * sigmoid(V h)``.

    A gate lets each unit switch itself off for some inputs, which a plain MLP can only
    approximate with biases; gated units are the hidden layers of many modern networks
    (Dauphin et al., 2017). Not autoregressive: for coupling layers and continuous flows.

    Args:
        hidden_units: widths of the hidden layers (all equal when ``residual``).
        activation: activation of the gated values.
        residual: add each hidden layer's input to its output.

    Example:
        >>> layer = kflows.Coupling(conditioner=kflows.networks.GatedMLP(hidden_units=(32,)))
        >>> kflows.Flow([layer], event_dim=2).sample(3, seed=0).shape
        TensorShape([3, 2])

    References:
        Dauphin, Fan, Auli, Grangier. Language Modeling with Gated Convolutional Networks.
        ICML 2017.
    """

    def _dense_width(self, units: int) -> int:
        return 2 * units  # the values and the gate logits, side by side

    def _hidden(self, z):
        value, gate = tf.split(z, 2, axis=-1)
        return self.activation(value) * tf.math.sigmoid(gate)
