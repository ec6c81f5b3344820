"""Flow layers, one family per file."""

from kflows.layers.autoregressive import InverseAutoregressive, MaskedAutoregressive
from kflows.layers.base import FlowLayer
from kflows.layers.continuous import FFJORD
from kflows.layers.coupling import AffineCoupling, Coupling
from kflows.layers.elementwise import Elementwise
from kflows.layers.linear import LULinear
from kflows.layers.normalization import ActNorm, BatchNorm, Standardize
from kflows.layers.permutation import Permute, Reverse
from kflows.layers.spline import SplineAutoregressive, SplineCoupling

__all__ = [
    "FFJORD",
    "ActNorm",
    "AffineCoupling",
    "BatchNorm",
    "Coupling",
    "Elementwise",
    "FlowLayer",
    "InverseAutoregressive",
    "LULinear",
    "MaskedAutoregressive",
    "Permute",
    "Reverse",
    "SplineAutoregressive",
    "SplineCoupling",
    "Standardize",
]
