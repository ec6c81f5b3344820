"""The maths: ``tfb.Bijector`` subclasses and density rules, one family per file."""

from kflows.bijectors.guard import RowGuard, overflow_as_zero_density
from kflows.bijectors.variables import LayerVariables

__all__ = ["LayerVariables", "RowGuard", "overflow_as_zero_density"]
