"""Fixed element-wise bijectors chosen by name: bounded or positive supports, fixed affines."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from kflows.layers.base import FlowLayer

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


class _ZeroDensityOutside(tfb.Bijector):
    """Wraps ``bijector`` (forward onto the open interval ``(low, high)``) so that data
    outside the interval gets log-det ``-inf``, hence density zero, instead of NaN.

    Points outside are swapped for an interior point before reaching ``bijector`` (so that
    neither values nor gradients see the NaN of e.g. ``logit(-0.5)``), and their
    inverse log-det is replaced by ``-inf``. A sample whose forward map saturates to the
    boundary in floating point (e.g. ``sigmoid(40.0) == 1.0`` in float32) is outside too.
    """

    def __init__(self, bijector: tfb.Bijector, low: float, high: float, name: str):
        parameters = dict(locals())
        self._bijector = bijector
        self._low, self._high = low, high
        if math.isinf(high):
            self._inside_point = low + 1.0
        elif math.isinf(low):
            self._inside_point = high - 1.0
        else:
            self._inside_point = 0.5 * (low + high)
        super().__init__(
            forward_min_event_ndims=0,
            parameters=parameters,
            name=name,
            dtype=bijector.dtype,
            is_constant_jacobian=bijector.is_constant_jacobian,
        )

    @classmethod
    def _parameter_properties(cls, dtype):
        return {}

    def _safe(self, y):
        inside = (y > self._low) & (y < self._high)
        return inside, tf.where(inside, y, tf.cast(self._inside_point, y.dtype))

    def _forward(self, x):
        return self._bijector.forward(x)

    # No ``_forward_log_det_jacobian``: TFP then computes it as ``-ildj(forward(x))``, and
    # ``forward(x)`` of an ``x`` that came out of ``inverse(y)`` is ``y`` itself, from the
    # bijector's cache. ``TransformedDistribution.log_prob(y)`` scores ``y`` through
    # ``inverse(y)`` and that forward log-det, so an outside ``y`` gets ``-inf`` there too.

    def _inverse(self, y):
        return self._bijector.inverse(self._safe(y)[1])

    def _inverse_log_det_jacobian(self, y):
        inside, safe = self._safe(y)
        ildj = self._bijector.inverse_log_det_jacobian(safe, event_ndims=0)
        return tf.where(inside, ildj, tf.cast(-math.inf, y.dtype))


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
        bijector: one of the names above.
        params: the bijector's parameters (JSON numbers); missing ones take the defaults.

    Example:
        >>> flow = kflows.Flow([kflows.Elementwise("sigmoid", {"low": 0.0, "high": 1.0}),
        ...                     kflows.MaskedAutoregressive()])
    """

    fast_direction = "both"
    requires_build = False

    def __init__(self, bijector: str = "shift", params: dict | None = None, **kwargs):
        super().__init__(**kwargs)
        if bijector not in _BIJECTORS:
            raise ValueError(f"Expected bijector in {sorted(_BIJECTORS)}; got {bijector!r}.")
        spec = _BIJECTORS[bijector]
        params = dict(params or {})
        unknown = set(params) - set(spec.defaults)
        if unknown:
            raise ValueError(
                f"Expected params of {bijector!r} among {sorted(spec.defaults)}; "
                f"got {sorted(unknown)}."
            )
        for key, value in params.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"Expected a number for {bijector} {key}; got {value!r}.")
        params = {**spec.defaults, **{k: float(v) for k, v in params.items()}}
        problem = spec.check(params)
        if problem:
            raise ValueError(f"Expected {problem} for {bijector!r}; got {params}.")
        self.bijector_name = bijector
        self.params = params

    def make_bijector(self, context=None, training=False):
        spec = _BIJECTORS[self.bijector_name]
        dtype = self.compute_dtype
        bijector = spec.make(**{k: tf.constant(v, dtype) for k, v in self.params.items()})
        if spec.support is None:
            return bijector
        low, high = spec.support(self.params)
        return _ZeroDensityOutside(bijector, low, high, name=self.bijector_name)

    def get_config(self):
        return {**super().get_config(), "bijector": self.bijector_name, "params": self.params}
