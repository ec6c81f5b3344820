"""Fixed element-wise bijectors chosen by name: bounded or positive supports, fixed affines."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from kflows.bijectors.support import ZeroDensityOutside
from kflows.layers.layer import FlowLayer

tfb = tfp.bijectors


@dataclass(frozen=True)
class _Spec:
    """How to build one named bijector: its factory, parameter defaults and data support."""

    make: Callable[..., tfb.Bijector]
    defaults: dict = field(default_factory=dict)
    #: ``params -> (low, high)``, the open interval the forward map lands in; None for R.
    support: Callable[[dict], tuple[float, float]] | None = None
    #: ``params -> error message or None``.
    check: Callable[[dict], str | None] = lambda p: None


_BIJECTORS = {
    "sigmoid": _Spec(
        make=lambda low, high: tfb.Sigmoid(low=low, high=high),
        defaults={"low": 0.0, "high": 1.0},
        support=lambda p: (p["low"], p["high"]),
        check=lambda p: None if p["low"] < p["high"] else "low < high",
    ),
    "tanh": _Spec(make=tfb.Tanh, support=lambda p: (-1.0, 1.0)),
    "softplus": _Spec(
        make=lambda hinge_softness: tfb.Softplus(hinge_softness=hinge_softness),
        defaults={"hinge_softness": 1.0},
        support=lambda p: (0.0, math.inf),
        check=lambda p: None if p["hinge_softness"] > 0 else "hinge_softness > 0",
    ),
    "exp": _Spec(make=tfb.Exp, support=lambda p: (0.0, math.inf)),
    "shift": _Spec(make=lambda shift: tfb.Shift(shift), defaults={"shift": 0.0}),
    "scale": _Spec(
        make=lambda scale: tfb.Scale(scale),
        defaults={"scale": 1.0},
        check=lambda p: None if p["scale"] != 0 else "scale != 0",
    ),
    "sinh_arcsinh": _Spec(
        make=lambda skewness, tailweight: tfb.SinhArcsinh(skewness, tailweight),
        defaults={"skewness": 0.0, "tailweight": 1.0},
        check=lambda p: None if p["tailweight"] > 0 else "tailweight > 0",
    ),
}


@keras.saving.register_keras_serializable(package="kflows")
class Elementwise(FlowLayer):
    """A fixed element-wise bijector chosen by name, e.g. to give the data a bounded support.

    The forward map (base side to data side) is applied to every feature. Placed first (data
    side), ``Elementwise("sigmoid", {"low": 0, "high": 1})`` makes a flow whose samples lie in
    ``(0, 1)^D``; ``"softplus"`` or ``"exp"`` make them positive. Data outside the support
    has ``log_prob`` ``-inf`` (density zero), never NaN; the support is open, so its
    boundary is outside as well.

    Names, their params (defaults), the data support and the TFP bijector:

    - ``sigmoid``: ``low`` (0), ``high`` (1); ``(low, high)``; ``Sigmoid(low, high)``.
    - ``tanh``: no params; ``(-1, 1)``; ``Tanh``.
    - ``softplus``: ``hinge_softness`` (1); ``(0, inf)``; ``Softplus``.
    - ``exp``: no params; ``(0, inf)``; ``Exp``.
    - ``shift``: ``shift`` (0); R; ``Shift``.
    - ``scale``: ``scale`` (1, nonzero); R; ``Scale``.
    - ``sinh_arcsinh``: ``skewness`` (0), ``tailweight`` (1); R; ``SinhArcsinh``
      (heavier or lighter tails).

    Fast direction: **both**. Context: ignored. No weights.

    Args:
        function: one of the names above.
        params: the function's parameters (JSON numbers); missing ones take the defaults.

    Example:
        >>> layer = kflows.Elementwise("sigmoid", {"low": 0.0, "high": 1.0})
        >>> flow = kflows.Flow([layer, kflows.MaskedAutoregressive()], event_dim=2)
        >>> float(flow.log_prob([[0.5, 0.5], [1.5, 0.5]])[1])  # outside (0, 1)^2
        -inf
    """

    fast_direction = "both"
    uses_context = False
    initialisation = "fixed"
    requires_build = False

    def __init__(self, function: str = "shift", params: dict | None = None, **kwargs):
        super().__init__(**kwargs)
        if function not in _BIJECTORS:
            raise ValueError(f"Expected function in {sorted(_BIJECTORS)}; got {function!r}.")
        spec = _BIJECTORS[function]
        params = dict(params or {})
        unknown = set(params) - set(spec.defaults)
        if unknown:
            raise ValueError(
                f"Expected params of {function!r} among {sorted(spec.defaults)}; "
                f"got {sorted(unknown)}."
            )
        for key, value in params.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"Expected a number for {function} {key}; got {value!r}.")
        params = {**spec.defaults, **{k: float(v) for k, v in params.items()}}
        problem = spec.check(params)
        if problem:
            raise ValueError(f"Expected {problem} for {function!r}; got {params}.")
        self.function = function
        self.params = params

    def make_bijector(self, context=None, training=False):
        spec = _BIJECTORS[self.function]
        dtype = self.variable_dtype
        bijector = spec.make(**{k: tf.constant(v, dtype) for k, v in self.params.items()})
        if spec.support is None:
            return bijector
        low, high = spec.support(self.params)
        return ZeroDensityOutside(bijector, low, high, name=self.function)

    def get_config(self):
        return {**super().get_config(), "function": self.function, "params": self.params}
