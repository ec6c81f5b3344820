"""Layers whose bijector parameters are free weights plus a hypernetwork of the context.

The flows for variational inference (planar, radial, Sylvester) have a handful of
parameters per layer. In amortised inference (a VAE's posterior ``q(z | x)``) they depend
on the conditioning ``x``: an encoder's output, the *context*. Each such layer holds its
parameters as free weights and, when it is built with a context, adds the output of a
small :class:`~kflows.MLP` of the context (a *hypernetwork*), zero-initialised so that the
layer starts where its free weights put it.
"""

from __future__ import annotations

import functools
import math

import keras
import numpy as np
import tensorflow as tf

from kflows import networks
from kflows.layers.layer import FlowLayer


def _parameters(layer, context):
    """The layer's unconstrained parameters: free weights, plus the hypernetwork's output."""
    free = {name: weight.value for name, weight in layer.free_parameters.items()}
    if context is None:
        if getattr(layer, "conditioner", None) is not None:
            raise ValueError(
                f"{layer.name} was built with a context (its parameters depend on it): "
                "pass the context."
            )
        return free
    if getattr(layer, "conditioner", None) is None:
        raise ValueError(
            f"{layer.name} was built without a context, so it has no hypernetwork to read "
            "one: build its flow with context_dim=C (or pass no context)."
        )
    out = layer.conditioner(context)  # [..., 1, P] in the compute dtype
    out = tf.cast(out[..., 0, :], layer.variable_dtype)
    batch = tf.shape(out)[:-1]
    sizes = [math.prod(w.shape) for w in free.values()]
    parts = tf.split(out, sizes, axis=-1)
    return {
        name: value + tf.reshape(part, tf.concat([batch, weight.shape], 0))
        for (name, value), part, weight in zip(
            free.items(), parts, layer.free_parameters.values(), strict=True
        )
    }


class AmortisedLayer(FlowLayer):
    """Base of the layers whose bijector reads a dict of parameters (free + hypernetwork).

    Subclasses set ``bijector_type`` (a :mod:`kflows.bijectors` class taking ``params``,
    a callable returning the dict) and implement ``parameter_specs(dim)``: the name, shape
    and initializer of each parameter. With a context (``build(x_shape, context_shape)``),
    ``conditioner``, a :class:`~kflows.MLP` of the context, is created and its
    zero-initialised output is added to the free weights; without one the layer has no
    network at all (flows without context do not pay for it).

    Fast direction: **sampling** (explicit); density by 1-D root searches.

    Args:
        conditioner: the hypernetwork: None (a default :class:`~kflows.MLP`), a dict of
            its arguments such as ``{"hidden_units": [32]}``, an unbuilt
            :class:`~kflows.networks.Conditioner` that reads features only (no context
            argument), or its Keras config. Built only when the layer sees a context.
    """

    fast_direction = "sampling"
    uses_context = True
    initialisation = "identity"
    bijector_type: type = None

    def __init__(self, conditioner=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(conditioner, networks.Conditioner):
            if conditioner.built:
                raise ValueError(
                    f"Expected an unbuilt conditioner; {conditioner.name} is built (it serves "
                    "another layer). Pass a new one, or a dict of arguments."
                )
            conditioner = keras.saving.serialize_keras_object(conditioner)
        if conditioner is not None and not isinstance(conditioner, dict):
            raise TypeError(
                "Expected conditioner as None, a dict of network arguments or a kflows "
                f"Conditioner; got {type(conditioner).__name__}: {conditioner!r}."
            )
        self._conditioner_spec = conditioner

    def parameter_specs(self, dim: int) -> dict:
        """``{name: (shape, initializer)}`` of the free parameters for ``dim`` features."""
        raise NotImplementedError(f"{type(self).__name__} must implement parameter_specs().")

    @property
    def free_parameters(self) -> dict:
        """The free weights by parameter name (after ``build``)."""
        return {name: getattr(self, name) for name in self._parameter_names}

    def build(self, x_shape, context_shape=None):
        super().build(x_shape, context_shape)
        specs = self.parameter_specs(self.event_dim)
        for name, (shape, initializer) in specs.items():
            # One attribute per weight: tf.train.Checkpoint does not see into Keras's dicts.
            setattr(self, name, self.add_weight(shape=shape, initializer=initializer, name=name))
        self._parameter_names = tuple(specs)
        if context_shape is not None:
            size = sum(int(np.prod(w.shape)) for w in self.free_parameters.values())
            self.conditioner = networks.get(self._conditioner_spec, networks.MLP, self.dtype_policy)
            self.conditioner.set_output(1, size)
            self.conditioner.build((None, int(context_shape[-1])))

    def make_bijector(self, context=None, training=False):
        # A partial of a module-level function, not a closure, so the bijector pickles.
        return self.bijector_type(
            functools.partial(_parameters, self, context),
            variables=self.variables,
            name=type(self).__name__.lower(),
        )

    def get_config(self):
        return {**super().get_config(), "conditioner": self._conditioner_spec}
