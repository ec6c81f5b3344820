"""Autoregressive flows: MAF and its inverse, IAF, over a Keras 3 MADE.

References:
    Papamakarios, Pavlakou, Murray. Masked Autoregressive Flow for Density Estimation.
    NeurIPS 2017. Kingma et al. Improved Variational Inference with Inverse Autoregressive
    Flow. NeurIPS 2016.
"""

from __future__ import annotations

import functools

import keras
import tensorflow_probability as tfp

from kflows import transforms
from kflows.layers.base import FlowLayer
from kflows.layers.one_pass import OnePassMAF
from kflows.networks import MADE, draw_seed

tfb = tfp.bijectors


def _conditioned_transform(layer, context, x, **_):
    """The element-wise transform at ``x``, its parameters from the layer's MADE."""
    return layer.transform.bijector(layer.made(x, context))


@keras.saving.register_keras_serializable(package="kflows")
class MaskedAutoregressive(FlowLayer):
    """Masked autoregressive flow layer (MAF): ``x_i = tau(u_i; c_i(x_<i, context))``.

    Fast direction: **density** (one MADE pass for ``log_prob``); sampling takes D passes.

    Args:
        transform: element-wise transform: ``"affine"``, ``"spline"``, a dict such as
            ``{"name": "spline", "bins": 8, "bound": 3.0}``, or a
            :class:`~kflows.transforms.Transform`.
        hidden_units: widths of the MADE's hidden layers.
        order: ``"left-to-right"``, ``"right-to-left"``, ``"random"`` or a permutation.
        residual: residual MADE blocks.
        activation: hidden activation.
        seed: seed of a random order.

    Example:
        >>> flow = kflows.Flow([kflows.MaskedAutoregressive(hidden_units=(64, 64))])
    """

    fast_direction = "density"

    def __init__(
        self,
        transform="affine",
        hidden_units=(128, 128),
        order="left-to-right",
        residual: bool = False,
        activation="relu",
        seed: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.transform = transforms.get(transform)
        self.made_kwargs = dict(
            hidden_units=hidden_units,
            order=order,
            residual=residual,
            activation=activation,
            seed=draw_seed(seed) if order == "random" else seed,
        )
        # Validate the hyperparameters now rather than at build time.
        self._made_config = MADE(self.transform.num_params, **self.made_kwargs).get_config()

    def build(self, x_shape, context_shape=None):
        super().build(x_shape, context_shape)
        self.made = MADE(
            self.transform.num_params, **self.made_kwargs, dtype=self.dtype_policy, name="made"
        )
        self.made.build(x_shape, context_shape)

    def _maf(self, context):
        # A partial of a module-level function, not a closure, so the bijector pickles.
        bijector_fn = functools.partial(_conditioned_transform, self, context)
        return OnePassMAF(bijector_fn=bijector_fn, variables=self.variables, name="maf")

    def make_bijector(self, context=None, training=False):
        return self._maf(context)

    def get_config(self):
        made = self._made_config
        return {
            **super().get_config(),
            "transform": transforms.serialize(self.transform),
            "hidden_units": made["hidden_units"],
            "order": made["order"],
            "residual": made["residual"],
            "activation": made["activation"],
            "seed": made["seed"],
        }


@keras.saving.register_keras_serializable(package="kflows")
class InverseAutoregressive(MaskedAutoregressive):
    """Inverse autoregressive flow layer (IAF): a :class:`MaskedAutoregressive` inverted.

    Fast direction: **sampling** (one MADE pass). Density evaluation of arbitrary points
    takes D passes; of the flow's own samples it is free (``sample_and_log_prob``).
    """

    fast_direction = "sampling"

    def make_bijector(self, context=None, training=False):
        return tfb.Invert(self._maf(context))
