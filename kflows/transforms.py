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

import functools
import math
import numbers

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from kflows._validate import integer
from kflows.bijectors import circular, monotonic
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
        integer(bins, "bins", minimum=2)
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


@_register("circular_spline")
class CircularSpline(RationalQuadraticSpline):
    """A circle map of angles in ``[-pi, pi)``: a spline with equal end slopes, then a rotation.

    The circular spline flow transform (Rezende et al., 2020): a rational-quadratic spline
    on ``[-pi, pi]`` whose two end knots share one learned derivative, so that it is a C1
    diffeomorphism of the circle, followed by a learned rotation
    (:class:`~kflows.bijectors.circular.CircularShift`, log-det 0). Data off the circle
    (outside ``[-pi, pi]``) gets inverse log-det ``-inf``: density zero, never NaN.

    Parameters per feature: ``3 * bins + 1`` (``bins`` widths, ``bins`` heights, ``bins -
    1`` interior derivatives, the shared end derivative and the rotation angle). All-zero
    parameters give the identity.

    Args:
        bins: number of bins.
        min_bin_width, min_bin_height, min_slope: as in :class:`RationalQuadraticSpline`.

    Example:
        >>> transform = kflows.transforms.CircularSpline(bins=8)
        >>> transform.num_params  # 8 widths, 8 heights, 7 + 1 slopes, 1 rotation
        25
        >>> bijector = transform.bijector(tf.zeros([2, 25]))
        >>> bijector.inverse_log_det_jacobian(tf.constant([0.5, 4.0]), event_ndims=0).numpy()[1]
        np.float32(-inf)

    References:
        Rezende, Papamakarios, Racaniere, Albergo, Kanwar, Shanahan, Cranmer. Normalizing
        Flows on Tori and Spheres. ICML 2020.
    """

    def __init__(
        self,
        bins: int = 8,
        min_bin_width: float = 1e-3,
        min_bin_height: float = 1e-3,
        min_slope: float = 1e-3,
    ):
        super().__init__(bins, math.pi, min_bin_width, min_bin_height, min_slope)

    @property
    def num_params(self) -> int:
        return 3 * self.bins + 1

    def bijector(self, params):
        raw_widths, raw_heights, raw_slopes, shift = tf.split(
            params, [self.bins, self.bins, self.bins, 1], axis=-1
        )
        widths = self._bin_sizes(raw_widths, self.min_bin_width)
        heights = self._bin_sizes(raw_heights, self.min_bin_height)
        slopes = self.min_slope + tf.math.softplus(raw_slopes + self._slope_offset)
        spline = spline_bijectors.RationalQuadraticSpline(
            widths, heights, slopes[..., :-1], self.bound, boundary_slope=slopes[..., -1]
        )
        # Forward (base to data side): the spline, then the rotation; the inverse meets the
        # rotation first, which gives data off the circle its -inf.
        return tfb.Chain([circular.CircularShift(shift[..., 0]), spline])

    def get_config(self):
        config = super().get_config()
        del config["bound"]
        return config


def _positive(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0:
        raise ValueError(f"Expected a number {name} > 0; got {value!r}.")
    return float(value)


#: The identity's weight in NAF's map, the least slope it can have (see
#: :func:`~kflows.bijectors.monotonic.deep_sigmoid`): sampling never inverts a plateau.
DSF_MIN_SLOPE = 1e-3


@_register("sigmoidal")
class DeepSigmoidal(Transform):
    """NAF's deep sigmoidal flow: ``x = logit(sum_k w_k sigmoid(a_k y + b_k))``.

    ``a_k = 1e-3 + softplus(.)`` (one at zero parameters), ``b_k`` free, ``w = softmax(.)``:
    ``3 * hidden`` parameters per feature; zero parameters give the identity. The identity
    is mixed in with weight :data:`DSF_MIN_SLOPE`, ``x = (1 - m) logit(.) + m y``, so that
    the slope is at least ``m`` where the sigmoids leave a plateau. The explicit
    map is the data-to-latent direction (density: one pass, in log space); sampling inverts
    it numerically (:class:`~kflows.bijectors.monotonic.Monotonic`).

    Args:
        hidden: ``K``, the number of sigmoids per feature (the DSF's hidden units).

    Example:
        >>> layer = kflows.MaskedAutoregressive(transform={"name": "sigmoidal", "hidden": 4})
        >>> layer.transform.num_params
        12

    References:
        Huang, Krueger, Lacoste, Courville. Neural Autoregressive Flows. ICML 2018.
    """

    def __init__(self, hidden: int = 8):
        self.hidden = integer(hidden, "hidden", 1)

    @property
    def num_params(self) -> int:
        return 3 * self.hidden

    def bijector(self, params):
        raw_scale, b, raw_weights = tf.split(params, 3, axis=-1)
        # softplus(raw + offset) = 1 - 1e-3 at zero: a = 1 exactly there (a floor of 1e-3
        # keeps every sigmoid strictly increasing).
        offset = math.log(math.expm1(1.0 - 1e-3))
        log_a = tf.math.log(1e-3 + tf.math.softplus(raw_scale + offset))
        log_w = tf.math.log_softmax(raw_weights)
        explicit = functools.partial(monotonic.deep_sigmoid, min_slope=DSF_MIN_SLOPE)
        return monotonic.Monotonic(explicit, (log_a, b, log_w), name="sigmoidal")

    def get_config(self):
        return {"hidden": self.hidden}


@_register("umnn")
class MonotonicNetwork(Transform):
    """UMNN: ``x = b + int_0^y g(t) dt``, ``g > 0`` a one-hidden-layer network.

    A transform owns no weights, so ``g``'s weights for each feature are the
    conditioner's outputs: ``g(t) = softplus(log(e - 1) + 6 tanh(z(t) / 6))``,
    ``z(t) = d + sum_j v_j tanh(w_j t + c_j)``, with ``w_j = 2 tanh((1 + .) / 2)``,
    ``v_j = tanh(.)`` and ``c_j = . + linspace(-2, 2, hidden)_j`` (fixed offsets, so the
    hidden units differ and get gradients from the start). The bounds on ``w`` and ``v``
    keep ``g`` smooth enough that the quadrature's slope stays within ``7e-4`` of ``g``
    (the log-det) on ``[-4, 4]``; outside, the map is linear. The soft clamp keeps slopes
    within ``[0.004, 6.5]`` (like the affine transform's log-scale bound); zero parameters
    give ``g == 1`` and ``b = 0``, the identity. ``3 * hidden + 2`` parameters per feature.
    The integral is a Clenshaw-Curtis quadrature with ``nodes`` nodes; the log-det is
    ``log g(y)`` exactly (see :func:`~kflows.bijectors.monotonic.monotonic_integral`).

    Args:
        hidden: hidden units of ``g``.
        nodes: Clenshaw-Curtis nodes of the integral (cost grows linearly with it).

    Example:
        >>> transform = kflows.transforms.get({"name": "umnn", "hidden": 4, "nodes": 17})
        >>> transform.num_params
        14

    References:
        Wehenkel, Louppe. Unconstrained Monotonic Neural Networks. NeurIPS 2019.
    """

    def __init__(self, hidden: int = 8, nodes: int = 33):
        self.hidden = integer(hidden, "hidden", 1)
        self.nodes = integer(nodes, "nodes", 2)

    @property
    def num_params(self) -> int:
        return 3 * self.hidden + 2

    def bijector(self, params):
        h = self.hidden
        raw_w, raw_c, outputs, raw_d, shift = tf.split(params, [h, h, h, 1, 1], axis=-1)
        spread = tf.linspace(-2.0, 2.0, h) if h > 1 else tf.zeros([1])
        # Bounded hidden weights |w| < 2 and output weights |v| < 1 keep g smooth enough
        # over [-4, 4] for the quadrature: its slope is within 7e-4 of g at worst.
        weights = 2.0 * tf.math.tanh((1.0 + raw_w) / 2.0)
        outputs = tf.math.tanh(outputs)
        biases = raw_c + tf.cast(spread, params.dtype)
        map_fn = functools.partial(monotonic.monotonic_integral, nodes=self.nodes)
        parts = (weights, biases, outputs, raw_d[..., 0], shift[..., 0])
        return monotonic.Monotonic(map_fn, parts, name="umnn")

    def get_config(self):
        return {"hidden": self.hidden, "nodes": self.nodes}


#: The least slope of the SOS map (a sum of squares alone can vanish).
SOS_MIN_SLOPE = 1e-3


@_register("sos")
class SumOfSquares(Transform):
    """The SOS polynomial flow: ``x = c + int_0^y sum_k (sum_l a_kl (t / B)^l)^2 dt``.

    Closed form on ``[-bound, bound]`` (degree ``2 * degree + 1``), linear tails outside
    (value and slope continuous), see
    :func:`~kflows.bijectors.monotonic.sum_of_squares`. ``polynomials * (degree + 1) + 1``
    parameters per feature. The slope is the sum of squares plus ``1e-3``
    (:data:`SOS_MIN_SLOPE`), so it never vanishes; ``a_k0`` is offset by
    ``sqrt((1 - 1e-3) / polynomials)``, so zero parameters give a unit slope and ``c = 0``:
    the identity.

    Args:
        polynomials: ``K``, the number of squared polynomials.
        degree: ``r``, the degree of each.
        bound: the polynomial acts on ``[-bound, bound]``.

    Example:
        >>> kflows.transforms.get({"name": "sos", "polynomials": 2, "degree": 3}).num_params
        9

    References:
        Jaini, Selby, Yu. Sum-of-Squares Polynomial Flow. ICML 2019.
    """

    def __init__(self, polynomials: int = 4, degree: int = 3, bound: float = 4.0):
        self.polynomials = integer(polynomials, "polynomials", 1)
        self.degree = integer(degree, "degree", 0)
        self.bound = _positive(bound, "bound")

    @property
    def num_params(self) -> int:
        return self.polynomials * (self.degree + 1) + 1

    def bijector(self, params):
        shift, raw = params[..., 0], params[..., 1:]
        shape = [-1 if d is None else d for d in raw.shape[:-1]]
        if sum(d == -1 for d in shape) > 1:
            shape = tf.shape(raw)[:-1]
        raw = tf.reshape(raw, tf.concat([shape, [self.polynomials, self.degree + 1]], axis=0))
        unit = np.zeros(self.degree + 1)
        # q = 1 - min_slope at zero parameters: with the floor, a unit slope (the identity).
        unit[0] = math.sqrt((1.0 - SOS_MIN_SLOPE) / self.polynomials)
        coefficients = raw + tf.constant(unit, params.dtype)
        map_fn = functools.partial(
            monotonic.sum_of_squares, bound=self.bound, min_slope=SOS_MIN_SLOPE
        )
        return monotonic.Monotonic(map_fn, (coefficients, shift), name="sos")

    def get_config(self):
        return {"polynomials": self.polynomials, "degree": self.degree, "bound": self.bound}


@_register("bernstein")
class Bernstein(Transform):
    """A Bernstein polynomial of degree ``degree`` on ``[-bound, bound]``, linear tails.

    Coefficients ``theta_0 = -bound + .`` and ``theta_i = theta_0 + sum_{j<i} delta_j``
    with ``delta_j = 1e-3 * step + softplus(.)`` (``step = 2 * bound / degree`` at zero, and
    never under ``1e-3 * step``, so the slope never vanishes): increasing, and evenly
    spaced at zero parameters, which is the identity. ``degree + 1`` parameters per
    feature. Outside ``[-bound, bound]`` the map continues linearly with the end slopes
    (see :func:`~kflows.bijectors.monotonic.bernstein`).

    Args:
        degree: degree ``n`` of the polynomial.
        bound: the polynomial acts on ``[-bound, bound]``.

    Example:
        >>> kflows.transforms.get({"name": "bernstein", "degree": 8}).num_params
        9

    References:
        Ramasinghe, Fernando, Seneviratne, Lucey. Robust Normalizing Flows using
        Bernstein-type Polynomials. BMVC 2022 (arXiv 2102.03509); zuko's
        ``BernsteinTransform``.
    """

    def __init__(self, degree: int = 16, bound: float = 4.0):
        self.degree = integer(degree, "degree", 1)
        self.bound = _positive(bound, "bound")

    @property
    def num_params(self) -> int:
        return self.degree + 1

    def bijector(self, params):
        start = params[..., 0] - self.bound
        # Increments of at least 1e-3 of the even spacing keep the slope above 1e-3 (a
        # softplus alone underflows to a flat piece); even spacing at zero parameters.
        step = 2.0 * self.bound / self.degree
        gap = math.log(math.expm1(step * (1.0 - 1e-3)))
        increments = 1e-3 * step + tf.math.softplus(params[..., 1:] + gap)
        map_fn = functools.partial(monotonic.bernstein, bound=self.bound)
        return monotonic.Monotonic(map_fn, (start, increments), name="bernstein")

    def get_config(self):
        return {"degree": self.degree, "bound": self.bound}


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
