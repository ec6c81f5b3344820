"""Base distributions as Keras layers (learned ones own Keras weights)."""

from __future__ import annotations

import keras
import tensorflow as tf
import tensorflow_probability as tfp

tfd = tfp.distributions


class Base(keras.layers.Layer):
    """Base of the base distributions.

    To add one: implement ``build(event_shape)`` (call ``super().build``; create weights
    there) and ``distribution()``, returning a TFP distribution with event shape ``[D]`` and
    batch shape ``[]`` that reads the current weights when it runs. Register the class as
    serializable and export it from ``kflows/__init__.py``.
    """

    @property
    def event_dim(self) -> int | None:
        return getattr(self, "_event_dim", None)

    def build(self, event_shape):
        self._event_dim = int(event_shape[-1])

    def distribution(self) -> tfd.Distribution:
        raise NotImplementedError(f"{type(self).__name__} must implement distribution().")

    def call(self, x):
        """The base log-density of ``x``."""
        return self.distribution().log_prob(x)

    def get_config(self):
        return super().get_config()


@keras.saving.register_keras_serializable(package="kflows")
class StandardNormal(Base):
    """The standard normal ``N(0, I)`` over ``D`` features (no weights)."""

    def distribution(self):
        zeros = tf.zeros([self.event_dim], dtype=self.compute_dtype)
        return tfd.MultivariateNormalDiag(loc=zeros, name="standard_normal")
