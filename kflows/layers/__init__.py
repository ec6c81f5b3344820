"""Flow layers, one structure per file: Keras owns the weights here, the maths is in bijectors/."""

# ruff: noqa: F401 (the layers are imported here and exported by the computed __all__)
from kflows import _names
from kflows.layers.autoregressive import InverseAutoregressive, MaskedAutoregressive
from kflows.layers.bnaf import BlockNeuralAutoregressive
from kflows.layers.continuous import FFJORD
from kflows.layers.coupling import Coupling
from kflows.layers.elementwise import Elementwise
from kflows.layers.gaussianization import Gaussianization
from kflows.layers.layer import FAST_DIRECTIONS, INITIALISATIONS, FlowLayer
from kflows.layers.linear import LULinear
from kflows.layers.normalization import ActNorm, BatchNorm, Standardize
from kflows.layers.permutation import Permute, Reverse
from kflows.layers.planar import Planar
from kflows.layers.radial import Radial
from kflows.layers.residual import Residual
from kflows.layers.sylvester import Sylvester

#: The layers, named once in kflows/_names.py (``list()``: griffe then reads no names it
#: cannot expand), and the vocabularies of the layers' traits.
__all__ = [*list(_names.LAYERS), "FAST_DIRECTIONS", "INITIALISATIONS"]
