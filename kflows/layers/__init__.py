"""Flow layers, one structure per file: Keras owns the weights here, the maths is in bijectors/."""

from kflows.layers.autoregressive import InverseAutoregressive, MaskedAutoregressive
from kflows.layers.continuous import FFJORD
from kflows.layers.coupling import Coupling
from kflows.layers.elementwise import Elementwise
from kflows.layers.layer import FAST_DIRECTIONS, INITIALISATIONS, FlowLayer
from kflows.layers.linear import LULinear
from kflows.layers.normalization import ActNorm, BatchNorm, Standardize
from kflows.layers.permutation import Permute, Reverse

__all__ = [
    "FAST_DIRECTIONS",
    "FFJORD",
    "INITIALISATIONS",
    "ActNorm",
    "BatchNorm",
    "Coupling",
    "Elementwise",
    "FlowLayer",
    "InverseAutoregressive",
    "LULinear",
    "MaskedAutoregressive",
    "Permute",
    "Reverse",
    "Standardize",
]
