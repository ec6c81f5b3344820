"""Coupling flows (RealNVP): half of the features parametrize a transform of the rest.

Reference:
    Dinh, Sohl-Dickstein, Bengio. Density estimation using Real NVP. ICLR 2017.
"""

from __future__ import annotations

import functools

import keras
import numpy as np
import tensorflow_probability as tfp

from kflows import transforms
from kflows.layers.base import FlowLayer, check_event_dim
from kflows.layers.one_pass import OnePassRealNVP
from kflows.networks import MLP

tfb = tfp.bijectors


def resolve_mask(mask, dim: int) -> np.ndarray:
    """Boolean mask of the features passed through unchanged (they condition the rest)."""
    if isinstance(mask, str):
        if mask == "half":
            out = np.arange(dim) < dim // 2
        elif mask == "alternate":
            out = np.arange(dim) % 2 == 0
        else:
            raise ValueError(f"Expected mask 'half', 'alternate' or a list; got {mask!r}.")
    else:
        out = np.asarray(mask).astype(bool)
        if out.shape != (dim,):
            raise ValueError(f"Expected a mask of {dim} booleans; got {mask!r}.")
    if out.all() or not out.any():
        raise ValueError(
            f"Expected a mask that keeps some features and transforms others; got {out.tolist()}."
        )
    return out


def _conditioned_transform(layer, context, x_kept, output_units, **_):
    """The transform of the other features, its parameters from the kept ones."""
    return layer.transform.bijector(layer.conditioner(x_kept, context))


@keras.saving.register_keras_serializable(package="kflows")
class Coupling(FlowLayer):
    """Coupling layer: ``x_B = tau(u_B; c(u_A, context))``, ``x_A = u_A``.

    Fast direction: **both** (one conditioner pass either way).

    Args:
        transform: element-wise transform of the transformed features: ``"affine"``
            (RealNVP), ``"spline"`` (neural spline flow), a dict or a
            :class:`~kflows.transforms.Transform`.
        mask: which features pass through unchanged and condition the rest: ``"half"`` (the
            first ``D // 2``), ``"alternate"`` (even indices), or a list of D booleans
            (``True`` = passed through).
        hidden_units: widths of the conditioner's hidden layers.
        residual: residual conditioner.
        activation: hidden activation.

    Example:
        >>> layer = kflows.Coupling(mask="alternate", hidden_units=(64, 64))
    """

    fast_direction = "both"

    def __init__(
        self,
        transform="affine",
        mask="half",
        hidden_units=(128, 128),
        residual: bool = False,
        activation="relu",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.transform = transforms.get(transform)
        self.mask = mask if isinstance(mask, str) else [bool(m) for m in mask]
        self.net_kwargs = dict(hidden_units=hidden_units, residual=residual, activation=activation)
        self._net_config = MLP(1, 1, **self.net_kwargs).get_config()

    def build(self, x_shape, context_shape=None):
        dim = check_event_dim(x_shape, 2, type(self).__name__)
        super().build(x_shape, context_shape)
        keep = resolve_mask(self.mask, dim)
        self._num_kept = int(keep.sum())
        # Put the kept features first, as tfb.RealNVP expects, and undo that afterwards.
        self._perm = np.concatenate([np.flatnonzero(keep), np.flatnonzero(~keep)])
        self._needs_perm = not np.array_equal(self._perm, np.arange(dim))
        self.conditioner = MLP(
            dim - self._num_kept,
            self.transform.num_params,
            **self.net_kwargs,
            dtype=self.dtype_policy,
            name="conditioner",
        )
        self.conditioner.build((None, self._num_kept), context_shape)

    def make_bijector(self, context=None, training=False):
        # A partial of a module-level function, not a closure, so the bijector pickles.
        bijector_fn = functools.partial(_conditioned_transform, self, context)
        coupling = OnePassRealNVP(
            num_masked=self._num_kept, bijector_fn=bijector_fn, variables=self.variables
        )
        if not self._needs_perm:
            return coupling
        perm = self._perm.astype(np.int32)
        return tfb.Chain(
            [tfb.Permute(np.argsort(perm).astype(np.int32)), coupling, tfb.Permute(perm)]
        )

    def get_config(self):
        net = self._net_config
        return {
            **super().get_config(),
            "transform": transforms.serialize(self.transform),
            "mask": self.mask,
            "hidden_units": net["hidden_units"],
            "residual": net["residual"],
            "activation": net["activation"],
        }


#: RealNVP's affine coupling: :class:`Coupling` with ``transform="affine"`` (the default).
AffineCoupling = Coupling
