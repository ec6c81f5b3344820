"""Autoregressive flows: MAF and its inverse, IAF, over an autoregressive conditioner.

References:
    Papamakarios, Pavlakou, Murray. Masked Autoregressive Flow for Density Estimation.
    NeurIPS 2017. Kingma et al. Improved Variational Inference with Inverse Autoregressive
    Flow. NeurIPS 2016.
"""

from __future__ import annotations

import functools

import keras
import tensorflow_probability as tfp

from kflows import bijectors, networks, transforms
from kflows.layers.layer import FlowLayer, conditioned_transform

tfb = tfp.bijectors


@keras.saving.register_keras_serializable(package="kflows")
class MaskedAutoregressive(FlowLayer):
    """Masked autoregressive flow layer (MAF): ``x_i = tau(u_i; c_i(x_<i, context))``.

    Fast direction: **density** (one conditioner pass for ``log_prob``); sampling takes D
    passes.

    Args:
        transform: element-wise transform ``tau``: ``"affine"``, ``"spline"``, a dict such
            as ``{"name": "spline", "bins": 8, "bound": 3.0}``, or a
            :class:`~kflows.transforms.Transform`.
        conditioner: an autoregressive network ``c`` (a :class:`~kflows.MADE` by default),
            a dict of its arguments such as ``{"hidden_units": [64, 64], "order":
            "random"}``, or None.

    Example:
        >>> layer = kflows.MaskedAutoregressive(conditioner={"hidden_units": [64, 64]})
        >>> flow = kflows.Flow([layer], event_dim=2)
        >>> flow.log_prob([[0.0, 1.0]]).shape
        TensorShape([1])
    """

    fast_direction = "density"
    uses_context = True
    initialisation = "identity"

    def __init__(self, transform="affine", conditioner=None, **kwargs):
        super().__init__(**kwargs)
        self.transform = transforms.get(transform)
        self.conditioner = networks.get(conditioner, networks.MADE, self.dtype_policy)
        if not self.conditioner.autoregressive:
            raise ValueError(
                f"Expected an autoregressive conditioner (such as kflows.MADE) for "
                f"{type(self).__name__}; got {type(self.conditioner).__name__}."
            )

    def build(self, x_shape, context_shape=None):
        super().build(x_shape, context_shape)
        self.conditioner.set_output(self.event_dim, self.transform.num_params)
        self.conditioner.build(x_shape, context_shape)

    def make_bijector(self, context=None, training=False):
        # A partial of a module-level function, not a closure, so the bijector pickles (and
        # TFP, which compares callables, never takes two bijectors' caches for one).
        return bijectors.Autoregressive(
            functools.partial(conditioned_transform, self, context),
            event_size=self.event_dim,
            variables=self.variables,
            name="maf",
        )

    def get_config(self):
        return {
            **super().get_config(),
            "transform": transforms.serialize(self.transform),
            "conditioner": keras.saving.serialize_keras_object(self.conditioner),
        }


@keras.saving.register_keras_serializable(package="kflows")
class InverseAutoregressive(MaskedAutoregressive):
    """Inverse autoregressive flow layer (IAF): a :class:`MaskedAutoregressive` inverted.

    Fast direction: **sampling** (one conditioner pass). Density evaluation of arbitrary
    points takes D passes; of the flow's own samples it is free (``sample_and_log_prob``).
    Arguments as in :class:`MaskedAutoregressive`.
    """

    fast_direction = "sampling"

    def make_bijector(self, context=None, training=False):
        return tfb.Invert(super().make_bijector(context, training))
