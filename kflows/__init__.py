"""kflows: normalizing flows for TensorFlow and Keras 3.

Keras owns the weights, TensorFlow Probability owns the maths: every layer is a Keras 3
layer (:mod:`kflows.layers`, networks in :mod:`kflows.networks`) that builds a TFP
bijector (:mod:`kflows.bijectors`) from its weights, and :class:`Flow` is a
``keras.Model`` whose density is a ``tfd.TransformedDistribution``.
"""

from kflows import (
    _backend,  # noqa: F401  (fails early on a non-TensorFlow Keras backend)
    bases,
    bijectors,
    builders,
    data,
    diagnostics,
    inputs,
    layers,
    nan_guard,
    networks,
    transforms,
)
from kflows.bases import Base, DiagonalNormal, Fixed, GaussianMixture, StandardNormal, StudentT
from kflows.builders import ffjord, glow, maf, nsf, nsf_coupling, realnvp
from kflows.flow import Flow
from kflows.layers import (
    FFJORD,
    ActNorm,
    BatchNorm,
    Coupling,
    Elementwise,
    FlowLayer,
    InverseAutoregressive,
    LULinear,
    MaskedAutoregressive,
    Permute,
    Reverse,
    Standardize,
)
from kflows.nan_guard import NonFiniteError
from kflows.networks import MADE, MLP, Conditioner
from kflows.saving import load
from kflows.serving import export

__version__ = "0.1.0"

#: The public API, built from the subpackages' own ``__all__`` (constants stay in them).
__all__ = sorted(
    {
        *(name for name in layers.__all__ if not name.isupper()),
        *bases.__all__,
        *builders.__all__,
        *("Conditioner", "MADE", "MLP"),
        *("Flow", "export", "load"),
        *("bijectors", "data", "diagnostics", "inputs", "networks", "transforms"),
        *nan_guard.__all__,
    }
)
