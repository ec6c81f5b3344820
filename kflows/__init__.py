"""kflows: normalizing flows for TensorFlow and Keras 3.

Keras owns the weights, TensorFlow Probability owns the maths: every layer is a Keras 3
layer that builds a TFP bijector from its weights, and :class:`Flow` is a ``keras.Model``
whose density is a ``tfd.TransformedDistribution``.
"""

from kflows import (
    _backend,  # noqa: F401  (fails early on a non-TensorFlow Keras backend)
    bijectors,
    inputs,
    transforms,
)
from kflows.bases import Base, DiagonalNormal, Fixed, GaussianMixture, StandardNormal, StudentT
from kflows.builders import ffjord, glow, maf, nsf, nsf_coupling, realnvp
from kflows.export import export
from kflows.flow import Flow
from kflows.layers import (
    FFJORD,
    ActNorm,
    AffineCoupling,
    BatchNorm,
    Coupling,
    Elementwise,
    FlowLayer,
    InverseAutoregressive,
    LULinear,
    MaskedAutoregressive,
    Permute,
    Reverse,
    SplineAutoregressive,
    SplineCoupling,
    Standardize,
)
from kflows.networks import MADE, MLP
from kflows.saving import load

__version__ = "0.1.0"

__all__ = [
    "FFJORD",
    "MADE",
    "MLP",
    "ActNorm",
    "AffineCoupling",
    "Base",
    "BatchNorm",
    "Coupling",
    "Elementwise",
    "DiagonalNormal",
    "Fixed",
    "bijectors",
    "inputs",
    "load",
    "Flow",
    "FlowLayer",
    "GaussianMixture",
    "InverseAutoregressive",
    "LULinear",
    "MaskedAutoregressive",
    "Permute",
    "Reverse",
    "SplineAutoregressive",
    "SplineCoupling",
    "StandardNormal",
    "Standardize",
    "glow",
    "export",
    "StudentT",
    "ffjord",
    "maf",
    "nsf",
    "nsf_coupling",
    "realnvp",
    "transforms",
]
