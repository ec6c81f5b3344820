"""The maths: ``tfb.Bijector`` subclasses and density rules, one family per file.

Written against TFP's public API only; :mod:`kflows._compat` checks the TFP release.
"""

from kflows import _compat  # noqa: F401  (checks the TFP version at import)
from kflows.bijectors.autoregressive import Autoregressive
from kflows.bijectors.batch_norm import BatchNormBijector
from kflows.bijectors.bnaf import BlockNeuralAutoregressive
from kflows.bijectors.circular import CircularShift
from kflows.bijectors.coupling import Coupling
from kflows.bijectors.gaussianization import KernelGaussianization
from kflows.bijectors.guard import RowGuard, nan_unless_finite_weights, overflow_as_zero_density
from kflows.bijectors.monotonic import Monotonic
from kflows.bijectors.one_pass import OnePassBijector
from kflows.bijectors.residual import Residual
from kflows.bijectors.residual_1d import Planar, Radial, Sylvester
from kflows.bijectors.spline import RationalQuadraticSpline
from kflows.bijectors.support import ZeroDensityOutside
from kflows.bijectors.variables import LayerVariables

__all__ = [
    "Autoregressive",
    "BatchNormBijector",
    "BlockNeuralAutoregressive",
    "CircularShift",
    "Coupling",
    "KernelGaussianization",
    "LayerVariables",
    "Monotonic",
    "OnePassBijector",
    "Planar",
    "Radial",
    "RationalQuadraticSpline",
    "Residual",
    "RowGuard",
    "Sylvester",
    "ZeroDensityOutside",
    "nan_unless_finite_weights",
    "overflow_as_zero_density",
]
