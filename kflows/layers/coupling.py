"""Coupling flows (RealNVP): some features parametrize a transform of the others.

Reference:
    Dinh, Sohl-Dickstein, Bengio. Density estimation using Real NVP. ICLR 2017.
"""

from __future__ import annotations

import functools

import keras
import numpy as np
import tensorflow_probability as tfp

from kflows import bijectors, networks, transforms
from kflows.layers.layer import FlowLayer, check_event_dim, conditioned_transform

tfb = tfp.bijectors

MASKS = ("half", "alternate")


def resolve_mask(mask, dim: int) -> np.ndarray:
    """Boolean mask of the features passed through unchanged (they condition the rest)."""
    if isinstance(mask, str):
        if mask == "half":
            out = np.arange(dim) < dim // 2
        elif mask == "alternate":
            out = np.arange(dim) % 2 == 0
        else:
            raise ValueError(f"Expected mask in {MASKS} or a list of booleans; got {mask!r}.")
    else:
        out = np.asarray(mask).astype(bool)
        if out.shape != (dim,):
            raise ValueError(f"Expected a mask of {dim} booleans; got {mask!r}.")
    if out.all() or not out.any():
        raise ValueError(
            f"Expected a mask that keeps some features and transforms others; got {out.tolist()}."
        )
    return out


@keras.saving.register_keras_serializable(package="kflows")
class Coupling(FlowLayer):
    """Coupling layer: ``x_B = tau(u_B; c(u_A, context))``, ``x_A = u_A``.

    Fast direction: **both** (one conditioner pass either way).

    Args:
        transform: element-wise transform ``tau`` of the transformed features:
            ``"affine"`` (RealNVP), ``"spline"`` (neural spline flow), a dict or a
            :class:`~kflows.transforms.Transform`.
        mask: which features pass through unchanged and condition the rest: ``"half"`` (the
            first ``D // 2``), ``"alternate"`` (even indices), or a list of D booleans
            (``True`` = passed through).
        conditioner: the network ``c`` (a :class:`~kflows.MLP` by default), a dict of its
            arguments such as ``{"hidden_units": [64, 64]}``, or None.

    Example:
        >>> layer = kflows.Coupling(transform="spline", mask="alternate")
        >>> flow = kflows.Flow([layer], event_dim=3)
        >>> flow.sample(2, seed=0).shape
        TensorShape([2, 3])
    """

    fast_direction = "both"
    uses_context = True
    initialisation = "identity"

    def __init__(self, transform="affine", mask="half", conditioner=None, **kwargs):
        super().__init__(**kwargs)
        self.transform = transforms.get(transform)
        if isinstance(mask, str):
            resolve_mask(mask, 2)  # checks the name now rather than at build time
            self.mask = mask
        else:
            self.mask = [bool(m) for m in mask]
        self.conditioner = networks.get(conditioner, networks.MLP, self.dtype_policy)

    def build(self, x_shape, context_shape=None):
        dim = check_event_dim(x_shape, 2, type(self).__name__)
        super().build(x_shape, context_shape)
        self._keep = resolve_mask(self.mask, dim)
        kept = int(self._keep.sum())
        self.conditioner.set_output(dim - kept, self.transform.num_params)
        self.conditioner.build((None, kept), context_shape)

    def make_bijector(self, context=None, training=False):
        # A partial of a module-level function, not a closure, so the bijector pickles (and
        # TFP, which compares callables, never takes two bijectors' caches for one).
        return bijectors.Coupling(
            functools.partial(conditioned_transform, self, context),
            mask=self._keep,
            variables=self.variables,
        )

    def get_config(self):
        return {
            **super().get_config(),
            "transform": transforms.serialize(self.transform),
            "mask": self.mask,
            "conditioner": keras.saving.serialize_keras_object(self.conditioner),
        }
