"""kflows: normalizing flows for TensorFlow and Keras 3.

Keras owns the weights, TensorFlow Probability owns the maths: every layer is a Keras 3
layer that builds a TFP bijector from its weights, and :class:`Flow` is a ``keras.Model``
whose density is a ``tfd.TransformedDistribution``.
"""

from kflows import (
    _backend,  # noqa: F401  (fails early on a non-TensorFlow Keras backend)
    transforms,
)
from kflows.bases import Base, StandardNormal
from kflows.builders import glow, maf, nsf, nsf_coupling, realnvp
from kflows.export import export
from kflows.flow import Flow
from kflows.layers import (
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

__version__ = "0.1.0"

__all__ = [
    "MADE",
    "MLP",
    "ActNorm",
    "AffineCoupling",
    "Base",
    "BatchNorm",
    "Coupling",
    "Elementwise",
    "Flow",
    "FlowLayer",
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
    "maf",
    "nsf",
    "nsf_coupling",
    "realnvp",
    "transforms",
]
