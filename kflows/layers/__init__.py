"""Flow layers, one family per file."""

from kflows.layers.autoregressive import InverseAutoregressive, MaskedAutoregressive
from kflows.layers.base import FlowLayer
from kflows.layers.continuous import FFJORD
from kflows.layers.coupling import AffineCoupling, Coupling
from kflows.layers.permutation import Permute, Reverse

__all__ = [
    "FFJORD",
    "AffineCoupling",
    "Coupling",
    "FlowLayer",
    "InverseAutoregressive",
    "MaskedAutoregressive",
    "Permute",
    "Reverse",
]
