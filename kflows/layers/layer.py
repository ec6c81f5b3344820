"""The base class of every kflows flow layer, and the traits each layer declares."""

from __future__ import annotations

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from kflows._precision import FullPrecisionWeights

tfb = tfp.bijectors

#: Which direction costs one pass: ``log_prob`` (density), ``sample`` (sampling), both, or
#: neither (both directions integrate an ODE).
FAST_DIRECTIONS = ("density", "sampling", "both", "neither")
#: What a layer is before training: the identity, a fixed permutation (volume-preserving),
#: a map set from data (``initialize``/``adapt``), a fixed map set by its arguments, or a
#: random invertible map drawn by its initializers (a family with no identity point).
INITIALISATIONS = ("identity", "permutation", "data", "fixed", "random")


class FlowLayer(FullPrecisionWeights, keras.layers.Layer):
    """A Keras 3 layer that owns weights and builds a TFP bijector from them on demand.

    Direction: the bijector's *forward* maps the base side to the data side (sampling);
    its *inverse* maps data towards the base (density evaluation). In a
    :class:`~kflows.Flow`, the first layer of the list touches the data.

    To add a layer:

    1. Subclass ``FlowLayer`` in one new file of ``kflows/layers/``; take hyperparameters
       in ``__init__`` (JSON values, or nested Keras objects such as a conditioner),
       returned by ``get_config`` as ``{**super().get_config(), ...}``.
    2. Declare the traits, checked when the class is defined: ``fast_direction`` (one of
       :data:`FAST_DIRECTIONS`), ``uses_context`` (bool; a layer that ignores the context
       still accepts it) and ``initialisation`` (one of :data:`INITIALISATIONS`; a property
       when it depends on the arguments).
    3. Create weights (and sublayers, passing ``dtype=self.dtype_policy``) in
       ``build(x_shape, context_shape=None)``; the event size is ``x_shape[-1]``.
    4. Implement ``make_bijector(context=None, training=False)`` returning a fresh
       ``tfb.Bijector`` that reads the *current* weights when it runs (pass callables or
       variables, never tensors computed once), lists the layer's variables (see
       :class:`kflows.bijectors.LayerVariables`), and accepts a ``context`` whose leading
       dimensions broadcast against the data's. The maths lives in ``kflows/bijectors/``.
    5. Decorate with ``@keras.saving.register_keras_serializable(package="kflows")``,
       export it from ``kflows/layers/__init__.py`` and add one entry to
       ``tests/registry.py``: every generic check then runs on it.

    Optional hooks: ``needs_data_init`` and ``initialize(x, context)`` for layers
    initialised from data (see :class:`~kflows.ActNorm`).
    """

    #: False for layers whose bijector does not depend on the number of features.
    requires_build: bool = True

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for trait, allowed in (
            ("fast_direction", FAST_DIRECTIONS),
            ("initialisation", INITIALISATIONS),
        ):
            value = getattr(cls, trait, None)
            if not isinstance(value, property) and value not in allowed:
                raise TypeError(f"Expected {cls.__name__}.{trait} in {allowed}; got {value!r}.")
        if not isinstance(getattr(cls, "uses_context", None), bool):
            raise TypeError(f"Expected {cls.__name__}.uses_context to be True or False.")
        if cls.make_bijector is FlowLayer.make_bijector:
            raise TypeError(f"Expected {cls.__name__} to implement make_bijector().")

    @property
    def event_dim(self) -> int | None:
        return getattr(self, "_event_dim", None)

    @property
    def needs_data_init(self) -> bool:
        return False

    def check_ready(self) -> None:
        """Raises if the layer cannot be used yet (e.g. a ``Standardize`` never adapted).

        Called eagerly by the flow's public methods before their traced graph runs, where a
        Python check would be skipped.
        """

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

    def compute_output_shape(self, x_shape, context_shape=None):
        return x_shape


def conditioned_transform(layer, context, x):
    """``layer.transform`` at ``x``, its parameters from ``layer.conditioner(x, context)``.

    The network may compute in a lower precision (a mixed policy); its parameters are cast
    to ``x``'s dtype, so the transform and its log-det run in the variable dtype.
    """
    return layer.transform.bijector(tf.cast(layer.conditioner(x, context), x.dtype))


def check_event_dim(x_shape, minimum: int, layer: str) -> int:
    dim = x_shape[-1]
    if dim is None or int(dim) < minimum:
        raise ValueError(f"{layer} expects at least {minimum} feature(s); got shape {x_shape}.")
    return int(dim)
