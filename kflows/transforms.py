"""Element-wise transforms that a conditioner parametrizes.

A transform turns a tensor of unconstrained parameters of shape ``[..., D, num_params]``
(the output of a conditioner network) into an element-wise TFP bijector acting on
``[..., D]``. Structures (:class:`~kflows.Coupling`, :class:`~kflows.MaskedAutoregressive`)
take a transform, so that structure x transform x network compose instead of multiplying
classes.

All-zero parameters give the identity: conditioners zero-initialise their last layer, so
every flow starts as the identity.
"""

from __future__ import annotations

import math
import numbers

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from kflows.bijectors import spline as spline_bijectors

tfb = tfp.bijectors

_TRANSFORMS: dict[str, type] = {}


def _register(name):
    def wrap(cls):
        _TRANSFORMS[name] = cls
        return keras.saving.register_keras_serializable(package="kflows")(cls)

    return wrap


def soft_clamp(x, bound):
    """Smoothly limits ``x`` to ``(-bound, bound)``; the identity near zero.

    ``bound * tanh(x / bound)`` keeps gradients alive everywhere, unlike a hard clip, and
    keeps ``exp(log_scale)`` away from overflow and from collapsing to zero.
    """
    return bound * tf.math.tanh(x / bound)


class Transform:
    """Base of the element-wise transforms.

    To add a transform: set ``num_params`` (parameters per feature), implement
    ``bijector(params)`` returning an element-wise ``tfb.Bijector`` (identity for all-zero
    ``params``), implement ``get_config``, and decorate the class with ``@_register(name)``.
    """

    #: Parameters per feature (a class attribute or a property).
    num_params: int

    def bijector(self, params: tf.Tensor) -> tfb.Bijector:
        raise NotImplementedError

    def get_config(self) -> dict:
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __eq__(self, other):
        return type(self) is type(other) and self.get_config() == other.get_config()

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


@_register("affine")
class Affine(Transform):
    """``y = x * exp(log_scale) + shift`` with a soft-clamped log-scale.

    Args:
        log_scale_bound: the log-scale is ``bound * tanh(raw / bound)``, so one layer
            scales by at most ``exp(bound)`` either way.
    """

    num_params = 2

    def __init__(self, log_scale_bound: float = 5.0):
        if not log_scale_bound > 0:
            raise ValueError(f"Expected log_scale_bound > 0; got {log_scale_bound!r}.")
        self.log_scale_bound = float(log_scale_bound)

    def bijector(self, params):
        shift = params[..., 0]
        log_scale = soft_clamp(params[..., 1], self.log_scale_bound)
        return tfb.Shift(shift)(tfb.Scale(log_scale=log_scale))

    def get_config(self):
        return {"log_scale_bound": self.log_scale_bound}


@_register("additive")
class Additive(Transform):
    """``y = x + shift``: a volume-preserving transform (log-det zero), as in NICE.

    With a coupling structure this is NICE's additive coupling; its Jacobian determinant is
    one whatever the conditioner outputs, so the flow's volume changes come from other
    layers (a learned base scale, ``ActNorm``).

    Example:
        >>> layer = kflows.Coupling(transform="additive")
        >>> flow = kflows.Flow([layer], event_dim=2)
        >>> float(flow.bijector().forward_log_det_jacobian([[1.0, 2.0]], event_ndims=1)[0])
        0.0

    References:
        Dinh, Krueger, Bengio. NICE: Non-linear Independent Components Estimation. ICLR
        2015 workshop.
    """

    num_params = 1

    def bijector(self, params):
        return tfb.Shift(params[..., 0])


@_register("spline")
class RationalQuadraticSpline(Transform):
    """Monotonic rational-quadratic spline on ``[-bound, bound]``, identity outside.

    The neural spline flow transform (Durkan et al., 2019): ``bins`` bins whose widths,
    heights and interior knot derivatives come from the conditioner. Outside
    ``[-bound, bound]`` the map is the identity (linear tails of slope 1), so outliers pass
    through unchanged with a zero log-det and never give NaN values or gradients.

    Parameters per feature: ``3 * bins - 1`` (``bins`` widths, ``bins`` heights and
    ``bins - 1`` interior derivatives). All-zero parameters give uniform bins and unit
    derivatives, which is exactly the identity.

    Args:
        bins: number of bins.
        bound: the spline acts on ``[-bound, bound]``.
        min_bin_width: smallest bin width, as a fraction of ``2 * bound``.
        min_bin_height: smallest bin height, as a fraction of ``2 * bound``.
        min_slope: smallest interior knot derivative.

    Example:
        >>> layer = kflows.Coupling(transform={"name": "spline", "bins": 8, "bound": 4.0})
        >>> layer.transform.num_params  # 8 widths, 8 heights, 7 interior slopes
        23

    References:
        Durkan, Bekasov, Murray, Papamakarios. Neural Spline Flows. NeurIPS 2019.
    """

    def __init__(
        self,
        bins: int = 8,
        bound: float = 3.0,
        min_bin_width: float = 1e-3,
        min_bin_height: float = 1e-3,
        min_slope: float = 1e-3,
    ):
        if isinstance(bins, bool) or not isinstance(bins, numbers.Integral) or bins < 2:
            raise ValueError(f"Expected an integer bins >= 2; got {bins!r}.")
        if not bound > 0:
            raise ValueError(f"Expected bound > 0; got {bound!r}.")
        for name, value in (("min_bin_width", min_bin_width), ("min_bin_height", min_bin_height)):
            if not 0 <= value < 1.0 / bins:
                raise ValueError(f"Expected 0 <= {name} < 1 / bins = {1.0 / bins}; got {value!r}.")
        if not 0 <= min_slope < 1:
            raise ValueError(f"Expected 0 <= min_slope < 1; got {min_slope!r}.")
        self.bins = int(bins)
        self.bound = float(bound)
        self.min_bin_width = float(min_bin_width)
        self.min_bin_height = float(min_bin_height)
        self.min_slope = float(min_slope)
        # softplus(0 + offset) = 1 - min_slope, so zero parameters give unit derivatives.
        self._slope_offset = math.log(math.expm1(1.0 - self.min_slope))

    @property
    def num_params(self) -> int:
        return 3 * self.bins - 1

    def _bin_sizes(self, raw, minimum):
        # 2 * bound * (minimum + (1 - minimum * bins) * softmax): a softmax keeps the sizes
        # positive and summing to 2 * bound; zero raw parameters give uniform bins.
        scale = 2.0 * self.bound
        return scale * minimum + scale * (1.0 - minimum * self.bins) * tf.math.softmax(raw)

    def bijector(self, params):
        raw_widths, raw_heights, raw_slopes = tf.split(
            params, [self.bins, self.bins, self.bins - 1], axis=-1
        )
        widths = self._bin_sizes(raw_widths, self.min_bin_width)
        heights = self._bin_sizes(raw_heights, self.min_bin_height)
        slopes = self.min_slope + tf.math.softplus(raw_slopes + self._slope_offset)
        return spline_bijectors.RationalQuadraticSpline(widths, heights, slopes, self.bound)

    def get_config(self):
        return {
            "bins": self.bins,
            "bound": self.bound,
            "min_bin_width": self.min_bin_width,
            "min_bin_height": self.min_bin_height,
            "min_slope": self.min_slope,
        }


def get(spec) -> Transform:
    """Resolves a transform from an instance, a name (``"affine"``) or a config dict.

    A dict is either ``{"name": "spline", **kwargs}`` or Keras' serialized form.
    """
    if isinstance(spec, Transform):
        return spec
    if isinstance(spec, str):
        if spec not in _TRANSFORMS:
            raise ValueError(f"Expected a transform name in {sorted(_TRANSFORMS)}; got {spec!r}.")
        return _TRANSFORMS[spec]()
    if isinstance(spec, dict):
        if "class_name" in spec:
            return keras.saving.deserialize_keras_object(spec)
        kwargs = dict(spec)
        name = kwargs.pop("name", None)
        if name not in _TRANSFORMS:
            raise ValueError(
                f"Expected a transform dict with 'name' in {sorted(_TRANSFORMS)}; got {spec!r}."
            )
        return _TRANSFORMS[name](**kwargs)
    raise TypeError(f"Expected a Transform, a name or a dict; got {type(spec).__name__}: {spec!r}.")


def serialize(transform: Transform) -> dict:
    return keras.saving.serialize_keras_object(transform)
