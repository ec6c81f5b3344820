"""The maths: ``tfb.Bijector`` subclasses and density rules, one family per file.

Written against TFP's public API only; :mod:`kflows._compat` checks the TFP release.
"""

from kflows import _compat  # noqa: F401  (checks the TFP version at import)
from kflows.bijectors.autoregressive import Autoregressive
from kflows.bijectors.batch_norm import BatchNormBijector
from kflows.bijectors.coupling import Coupling
from kflows.bijectors.guard import RowGuard, nan_unless_finite_weights, overflow_as_zero_density
from kflows.bijectors.one_pass import OnePassBijector
from kflows.bijectors.spline import RationalQuadraticSpline
from kflows.bijectors.support import ZeroDensityOutside
from kflows.bijectors.variables import LayerVariables

__all__ = [
    "Autoregressive",
    "BatchNormBijector",
    "Coupling",
    "LayerVariables",
    "OnePassBijector",
    "RationalQuadraticSpline",
    "RowGuard",
    "ZeroDensityOutside",
    "nan_unless_finite_weights",
    "overflow_as_zero_density",
]
