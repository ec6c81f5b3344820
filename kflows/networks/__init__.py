"""Keras 3 conditioner networks, one per file: the *network* axis of a flow layer."""

from kflows.networks.conditioner import Conditioner, get
from kflows.networks.gated import GatedMLP
from kflows.networks.lipschitz import LipschitzMLP
from kflows.networks.made import MADE, ORDERS, draw_seed, made_masks, resolve_order
from kflows.networks.mlp import MLP

__all__ = [
    "MADE",
    "MLP",
    "ORDERS",
    "Conditioner",
    "GatedMLP",
    "LipschitzMLP",
    "draw_seed",
    "get",
    "made_masks",
    "resolve_order",
]
