"""The base class of every kflows flow layer."""

from __future__ import annotations

import keras
import tensorflow_probability as tfp

tfb = tfp.bijectors

FAST_DIRECTIONS = ("density", "sampling", "both", "neither")


class FlowLayer(keras.layers.Layer):
    """A Keras 3 layer that owns weights and builds a TFP bijector from them on demand.

    Direction: the bijector's *forward* maps the base side to the data side (sampling);
    its *inverse* maps data towards the base (density evaluation). In a
    :class:`~kflows.Flow`, the first layer of the list touches the data.

    To add a layer:

    1. Subclass ``FlowLayer``; take hyperparameters in ``__init__`` (JSON-serializable, and
       returned by ``get_config`` as ``{**super().get_config(), ...}``).
    2. Create weights (and sublayers, passing ``dtype=self.dtype_policy``) in
       ``build(x_shape, context_shape=None)``; the event size is ``x_shape[-1]``.
    3. Implement ``make_bijector(context=None, training=False)`` returning a fresh
       ``tfb.Bijector`` that reads the *current* weights when it runs (pass callables or
       variables, never tensors computed once), is the identity at initialisation, and
       accepts a ``context`` whose leading dimensions broadcast against the data's.
    4. Set ``fast_direction`` to ``"density"``, ``"sampling"``, ``"both"`` or ``"neither"``
       (both directions cost the same, many passes: continuous flows).
    5. Decorate with ``@keras.saving.register_keras_serializable(package="kflows")``,
       export it from ``kflows/__init__.py`` and add one entry to ``tests/registry.py``.

    Optional hooks: ``needs_data_init`` and ``initialize(x, context)`` for layers
    initialised from data (see :class:`~kflows.ActNorm`), ``updates_in_training`` for layers
    whose training-mode bijector differs (batch statistics).
    """

    fast_direction: str = "both"
    #: False for layers whose bijector does not depend on the number of features.
    requires_build: bool = True
    #: True for layers whose bijector reads ``training`` (so the flow passes it on).
    updates_in_training: bool = False

    @property
    def event_dim(self) -> int | None:
        return getattr(self, "_event_dim", None)

    @property
    def needs_data_init(self) -> bool:
        return False

    def build(self, x_shape, context_shape=None):
        self._event_dim = int(x_shape[-1])

    def bijector(self, context=None, training=False) -> tfb.Bijector:
        """A fresh bijector reading the layer's current weights (forward: base to data side).

        Its ``trainable_variables`` are the layer's weights, as ``tf.Variable``s.
        """
        if self.requires_build and not self.built:
            raise ValueError(
                f"{self.name} is not built, so it has no weights yet: use it in a kflows.Flow "
                f"that has seen data (or flow.build((None, D))), or call "
                f"{self.name}.build((None, D)) with the number of features D."
            )
        return self.make_bijector(context, training=training)

    def make_bijector(self, context=None, training=False) -> tfb.Bijector:
        raise NotImplementedError(f"{type(self).__name__} must implement make_bijector().")

    def call(self, x, context=None, training=False):
        """Maps data-side ``x`` to the base side (the bijector's inverse)."""
        return self.bijector(context, training=training).inverse(x)

    def compute_output_shape(self, x_shape, context_shape=None):
        return x_shape


def check_event_dim(x_shape, minimum: int, layer: str) -> int:
    dim = x_shape[-1]
    if dim is None or int(dim) < minimum:
        raise ValueError(f"{layer} expects at least {minimum} feature(s); got shape {x_shape}.")
    return int(dim)
