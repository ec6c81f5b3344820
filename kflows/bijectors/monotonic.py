"""Explicit increasing scalar maps with a numerical inverse (NAF, UMNN, SOS, Bernstein).

Each map here is written one way only, from the data side to the latent side, with its
exact log-derivative: ``explicit(y, *params) -> (x, log f'(y))``. :class:`Monotonic` turns
such a map into an element-wise bijector: its **inverse** (data -> base, the density
direction of an autoregressive or coupling structure) is the explicit map, one pass; its
**forward** (sampling) is the numerical inverse of
:func:`kflows.bijectors.root.invert_increasing` (a fixed-step bracket and bisection, then
one Newton step that carries the implicit-function gradient).

The four maps:

- :func:`deep_sigmoid`: NAF's deep sigmoidal flow,
  ``logit(sum_k w_k sigmoid(a_k y + b_k))``, in log space;
- :func:`monotonic_integral`: UMNN, ``b + int_0^y g(t) dt`` for a small positive network
  ``g``, by Clenshaw-Curtis quadrature;
- :func:`sum_of_squares`: the SOS polynomial flow, the closed-form integral of a sum of
  squared polynomials, with linear tails;
- :func:`bernstein`: a Bernstein polynomial with increasing coefficients, with linear tails.

Parameters broadcast against ``y`` along its leading axes, with one trailing axis of
components per map (``[..., K]`` for ``y`` of shape ``[...]``).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import tensorflow as tf

from kflows._validate import integer, is_integer
from kflows.bijectors.elementwise import ElementwiseParams
from kflows.bijectors.one_pass import OnePassBijector
from kflows.bijectors.root import invert_increasing
from kflows.bijectors.spline import _float_dtype

#: Where the log-derivative of an infinite input is taken: every map here has a tail that
#: is linear (or tends to linear) long before, so this is the tail's slope.
FAR = 1e4


class Monotonic(ElementwiseParams, OnePassBijector):
    """An element-wise increasing bijector from an explicit map of the data side.

    ``inverse(y) = explicit(y)`` in one pass, with the log-det the map returns;
    ``forward(x)`` solves ``explicit(y) = x`` with
    :func:`~kflows.bijectors.root.invert_increasing` (fixed step counts: graph mode and
    XLA work), and its log-det is minus the map's log-derivative at the solution. The
    gradients of the forward direction come from the root search's final Newton step (the
    implicit function theorem), so they reach the parameters.

    Non-finite inputs: NaN gives NaN (value and log-det); ``+-inf`` gives ``+-inf``, with
    the log-det of the tail (taken at ``+-FAR``), so ``log_prob`` of an infinite point is
    ``-inf`` through the base density, never NaN.

    Args:
        explicit: ``explicit(y, *params) -> (x, log_derivative)``, strictly increasing in
            ``y`` and onto the real line, element-wise; a module-level function (or a
            ``functools.partial`` of one) so that the bijector pickles.
        params: the tensors ``explicit`` reads; they broadcast to the inputs' shape (one
            map per element) with one trailing axis of components.
        steps: bisection steps of the forward direction (default: per dtype, see
            :data:`kflows.bijectors.root.DEFAULT_STEPS`).
        name: the bijector's name.

    Example:
        >>> # Two sigmoids per feature: x = logit(0.5 sigmoid(y) + 0.5 sigmoid(2 y - 1)).
        >>> log_a = tf.math.log([[1.0, 2.0]])
        >>> bijector = Monotonic(deep_sigmoid, (log_a, [[0.0, -1.0]], tf.math.log([[0.5, 0.5]])))
        >>> x = bijector.inverse(tf.constant([0.7]))
        >>> round(float(bijector.forward(tf.identity(x))[0]), 5)
        0.7
    """

    def __init__(self, explicit, params, steps: int | None = None, name: str = "monotonic"):
        parameters = dict(locals())
        if not callable(explicit):
            raise TypeError(f"Expected a callable explicit map; got {explicit!r}.")
        if steps is not None and not (is_integer(steps) and steps >= 1):
            raise ValueError(f"Expected steps as an integer >= 1 or None; got {steps!r}.")
        self._explicit_map = explicit
        self._params = tuple(params)
        self._steps = steps
        super().__init__(parameters, name, _float_dtype(self._params))

    @classmethod
    def _is_increasing(cls):
        return True

    @property
    def params(self) -> tuple:
        """The tensors the explicit map reads."""
        return self._params

    def _tensors(self):
        return tuple(tf.convert_to_tensor(p, self.dtype) for p in self._params)

    def _inverse_and_log_det(self, y):
        return _explicit(self._explicit_map, self._tensors(), y)

    def _forward_and_log_det(self, x):
        func, keywords = _signature(self._explicit_map)
        sample = _sample_in_a_graph if tf.executing_eagerly() else _sample
        return sample(func, keywords, self._tensors(), x, self._steps)


def _explicit(explicit_map, params, y):
    """``(explicit(y), log-derivative)`` with infinite inputs sent to their tails."""
    infinite = tf.math.is_inf(y)
    far = tf.where(y > 0, tf.constant(FAR, y.dtype), tf.constant(-FAR, y.dtype))
    value, log_derivative = explicit_map(tf.where(infinite, far, y), *params)
    value = tf.where(infinite, y, value)
    nan = tf.math.is_nan(y)
    return tf.where(nan, y, value), tf.where(nan, y, log_derivative)


def _signature(explicit_map):
    """``explicit_map`` as a function and its keywords, hashable by value: two bijectors
    of one transform (each with its own ``functools.partial``) share one traced search."""
    if isinstance(explicit_map, functools.partial) and not explicit_map.args:
        return explicit_map.func, tuple(sorted(explicit_map.keywords.items()))
    return explicit_map, ()


def _sample(func, keywords, params, x, steps):
    """The forward direction: ``y`` with ``explicit(y) = x``, and the forward log-det."""
    explicit_map = functools.partial(func, **dict(keywords))
    y = invert_increasing(
        lambda t: _explicit(explicit_map, params, t)[0],
        x,
        derivative=lambda t: tf.exp(_explicit(explicit_map, params, t)[1]),
        steps=steps,
    )
    return y, -_explicit(explicit_map, params, y)[1]


# Called eagerly (a bijector used outside a tf.function), the search's fixed loops would run
# op by op in Python (about 20 times slower) and a tape would record each op: one graph per
# map and exact signature instead. (Relaxed shapes would hide the parameters' static
# component counts, which the maps read.) Inside a tf.function or XLA, _sample is inlined.
_sample_in_a_graph = tf.function(_sample, autograph=False)


def _tensors(y, *params):
    """``y`` and ``params`` as tensors of ``y``'s (floating) dtype."""
    y = tf.convert_to_tensor(y, None if hasattr(y, "dtype") else tf.float32)
    return (y, *(tf.convert_to_tensor(p, y.dtype) for p in params))


def _reduce_logsumexp(t):
    return tf.reduce_logsumexp(t, axis=-1)


def deep_sigmoid(y, log_a, b, log_w, min_slope: float = 0.0):
    """NAF's deep sigmoidal map ``logit(sum_k w_k sigmoid(a_k y + b_k))`` and its log-slope.

    Computed in log space, ``log s - log(1 - s)`` with both terms a ``logsumexp`` of
    ``log_sigmoid``'s, so it saturates nowhere in float32: its tails are linear, of slope
    ``min_k a_k`` (``a_k > 0``, ``w`` on the simplex). ``a_k = 1``, ``b_k = 0`` is the
    identity, whatever ``w``.

    Far from its tails the map can be flat beyond any precision: a sigmoid that saturates
    while the one that takes over carries a weight of ``1e-8`` leaves a plateau of slope
    ``e^-68`` (hypothesis found one, from weights drawn at scale 0.86), which no root
    search can invert, in float64 either. ``min_slope = m > 0`` mixes in the identity,
    ``(1 - m) logit(s) + m y``: the slope is at least ``m`` everywhere, so the inverse is
    never worse conditioned than ``1 / m``, and the identity parameters still give the
    identity.

    Args:
        y: ``[...]`` points.
        log_a: ``[..., K]`` log-scales of the sigmoids.
        b: ``[..., K]`` their shifts.
        log_w: ``[..., K]`` log-weights (a ``log_softmax``: they sum to one).
        min_slope: ``m`` in ``[0, 1)``, the weight of the identity mixed in.

    Returns:
        ``(x, log dx/dy)``, both of shape ``[...]``.

    Example:
        >>> x, log_slope = deep_sigmoid(tf.constant([0.5]), [[0.0]], [[0.0]], [[0.0]])
        >>> float(x[0]), float(log_slope[0])
        (0.5, 0.0)

    References:
        Huang, Krueger, Lacoste, Courville. Neural Autoregressive Flows. ICML 2018.
    """
    if not 0.0 <= min_slope < 1.0:
        raise ValueError(f"Expected min_slope in [0, 1); got {min_slope!r}.")
    y, log_a, b, log_w = _tensors(y, log_a, b, log_w)
    z = tf.exp(log_a) * y[..., tf.newaxis] + b
    above, below = tf.math.log_sigmoid(z), tf.math.log_sigmoid(-z)
    log_s = _reduce_logsumexp(log_w + above)
    log_one_minus_s = _reduce_logsumexp(log_w + below)
    # ds/dy = sum_k w_k a_k sigmoid(z_k) sigmoid(-z_k); d logit(s) = ds / (s (1 - s)).
    log_ds = _reduce_logsumexp(log_w + log_a + above + below)
    x, log_slope = log_s - log_one_minus_s, log_ds - log_s - log_one_minus_s
    if min_slope == 0.0:
        return x, log_slope
    # log((1 - m) e^log_slope + m), without overflow for steep sigmoids.
    floor = tf.fill(tf.shape(x), tf.constant(math.log(min_slope), x.dtype))
    mixed = tf.stack([log_slope + math.log1p(-min_slope), floor], axis=-1)
    return (1.0 - min_slope) * x + min_slope * y, tf.reduce_logsumexp(mixed, axis=-1)


@functools.lru_cache(maxsize=16)
def clenshaw_curtis(nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights of the ``nodes``-point Clenshaw-Curtis rule on ``[0, 1]``.

    The nodes are the Chebyshev extreme points ``(1 - cos(pi k / n)) / 2``; the rule
    integrates polynomials of degree ``n = nodes - 1`` exactly and converges
    geometrically for analytic integrands. Weights by Trefethen's ``clencurt``.

    Example:
        >>> points, weights = clenshaw_curtis(5)
        >>> float(np.sum(weights * points**3))  # int_0^1 t^3 dt
        0.25

    References:
        Clenshaw, Curtis. A method for numerical integration on an automatic computer.
        Numerische Mathematik 2, 1960. Trefethen. Spectral Methods in MATLAB (``clencurt``),
        SIAM 2000; Is Gauss quadrature better than Clenshaw-Curtis? SIAM Review 2008.
    """
    n = integer(nodes, "nodes", minimum=2) - 1
    theta = np.pi * np.arange(n + 1) / n
    weights = np.zeros(n + 1)
    inner = theta[1:-1]
    v = np.ones(n - 1)
    if n % 2 == 0:
        weights[0] = weights[n] = 1.0 / (n * n - 1)
        for k in range(1, n // 2):
            v -= 2.0 * np.cos(2 * k * inner) / (4 * k * k - 1)
        v -= np.cos(n * inner) / (n * n - 1)
    else:
        weights[0] = weights[n] = 1.0 / (n * n)
        for k in range(1, (n - 1) // 2 + 1):
            v -= 2.0 * np.cos(2 * k * inner) / (4 * k * k - 1)
    weights[1:-1] = 2.0 * v / n
    # From [-1, 1] to [0, 1]: t = (1 - cos theta) / 2, weights halved.
    return (1.0 - np.cos(theta)) / 2.0, weights / 2.0


#: ``softplus(UNIT) = 1``.
UNIT = float(np.log(np.expm1(1.0)))


def _integrand_logit(t, weights, biases, outputs, offset, bound):
    """The pre-softplus value of UMNN's one-hidden-layer network at ``t``, soft-clamped.

    ``t`` is ``[..., M]`` (``M`` points per element); the parameters are ``[..., H]``
    (``offset`` ``[...]``). A loop over the ``H`` hidden units keeps memory at ``[..., M]``
    (a ``[..., M, H]`` tensor of a large batch's quadrature would not fit).
    """
    total = offset[..., tf.newaxis]
    for j in range(weights.shape[-1]):
        unit = tf.math.tanh(weights[..., j : j + 1] * t + biases[..., j : j + 1])
        total = total + outputs[..., j : j + 1] * unit
    return UNIT + bound * tf.math.tanh(total / bound)


def monotonic_integral(
    y,
    weights,
    biases,
    outputs,
    offset,
    shift,
    nodes: int = 33,
    logit_bound: float = 6.0,
    bound: float = 4.0,
):
    """UMNN's map ``shift + int_0^y g(t) dt`` with ``g > 0``, and its exact log-slope.

    ``g(t) = softplus(log(e - 1) + B tanh(z(t) / B))`` with
    ``z(t) = offset + sum_j outputs_j tanh(weights_j t + biases_j)``: a network with one
    hidden layer whose weights are the parameters (in a flow, the conditioner's outputs for
    one feature), its output soft-clamped to ``B = logit_bound`` so that slopes stay within
    ``[softplus(log(e - 1) - B), softplus(log(e - 1) + B)]`` (``[0.004, 6.5]`` for the default
    6; like the affine transform's log-scale bound), and ``g == 1`` where ``z == 0``.
    The integral is ``y * sum_i c_i g(y t_i)`` with the ``nodes``-point Clenshaw-Curtis
    rule (:func:`clenshaw_curtis`); the log-derivative is ``log g(y)`` exactly, as in
    UMNN, so it differs from the derivative of the quadrature by the quadrature's error
    (small while ``g`` varies slowly over ``[0, y]``: :class:`~kflows.transforms.
    MonotonicNetwork` bounds the hidden and output weights so that it does, within
    ``7e-4`` of the slope at worst on ``[-4, 4]`` with 33 nodes). Outside
    ``[-bound, bound]`` the map continues as its tangent line (value and slope
    continuous), so far points cost no quadrature error and the map is onto the real line.

    Args:
        y: ``[...]`` points.
        weights, biases, outputs: ``[..., H]`` the network's hidden weights, hidden
            biases and output weights.
        offset: ``[...]`` the output bias (zero with zero outputs: ``g == 1``).
        shift: ``[...]`` the value at zero.
        nodes: quadrature nodes.
        logit_bound: the soft clamp of ``z``.
        bound: the quadrature acts on ``[-bound, bound]``; linear tails outside.

    Returns:
        ``(x, log dx/dy)``, both of shape ``[...]``.

    Example:
        >>> zero = tf.zeros([1, 2])
        >>> x, log_slope = monotonic_integral(
        ...     tf.constant([1.5]), zero, zero, zero, [0.0], [0.0]
        ... )
        >>> round(float(x[0]), 5), round(float(log_slope[0]), 5)
        (1.5, 0.0)

    References:
        Wehenkel, Louppe. Unconstrained Monotonic Neural Networks. NeurIPS 2019.
        Clenshaw, Curtis. A method for numerical integration on an automatic computer.
        Numerische Mathematik 2, 1960.
    """
    y, weights, biases, outputs, offset, shift = _tensors(
        y, weights, biases, outputs, offset, shift
    )
    points, coefficients = clenshaw_curtis(nodes)
    points = tf.constant(points, y.dtype)
    coefficients = tf.constant(coefficients, y.dtype)
    network = (weights, biases, outputs, offset, logit_bound)

    def inside(clipped):
        # Along [0, y]: [..., nodes] evaluations of g.
        along = tf.math.softplus(_integrand_logit(clipped[..., tf.newaxis] * points, *network))
        value = shift + clipped * tf.reduce_sum(coefficients * along, axis=-1)
        return value, tf.math.softplus(_integrand_logit(clipped[..., tf.newaxis], *network)[..., 0])

    return _with_linear_tails(y, bound, inside)


def _with_linear_tails(y, bound: float, inside):
    """``inside`` on ``[-bound, bound]``, continued linearly (value and slope) outside.

    ``inside(y) -> (value, slope)`` is evaluated at ``y`` clipped to the interval only, so
    a polynomial never sees a far point (no overflow; finite gradients). Returns ``(value,
    log slope)``; NaN stays NaN (the comparisons are false for it).
    """
    limit = tf.constant(bound, y.dtype)
    clipped = tf.where(y > limit, limit, tf.where(y < -limit, -limit, y))
    value, slope = inside(clipped)
    return value + slope * (y - clipped), tf.math.log(slope)


def _horner(coefficients, s):
    """``sum_m coefficients[..., m] s^m`` by Horner's rule (``s`` of shape ``[...]``)."""
    result = coefficients[..., -1]
    for m in range(coefficients.shape[-1] - 2, -1, -1):
        result = result * s + coefficients[..., m]
    return result


@functools.lru_cache(maxsize=16)
def _square_matrix(degree: int) -> np.ndarray:
    """``[(r + 1)^2, 2r + 1]``: coefficients of ``p(s)^2`` from the outer product of
    ``p``'s coefficients with themselves (the ``l + l' = m`` anti-diagonals)."""
    size = degree + 1
    matrix = np.zeros((size, size, 2 * degree + 1))
    for i in range(size):
        for j in range(size):
            matrix[i, j, i + j] = 1.0
    return matrix.reshape(size * size, 2 * degree + 1)


def sum_of_squares(y, coefficients, shift, bound: float = 4.0, min_slope: float = 1e-3):
    """The SOS polynomial flow's map, closed form, with linear tails outside ``+-bound``.

    With ``s = y / bound``, ``x = shift + bound * int_0^s q(u) du`` and
    ``q(u) = sum_k (sum_l a_kl u^l)^2 >= 0``: the square and the integral are exact
    polynomial coefficient arithmetic (``2r + 2`` coefficients), evaluated by Horner's rule.
    The slope is ``q(s) + min_slope``: a sum of squares can vanish (at a common root, or
    everywhere for zero coefficients), and a zero slope would make the map flat there,
    neither invertible nor onto. Polynomials grow like ``y^(2r+1)``, so outside
    ``[-bound, bound]`` the map continues as the line tangent at the end (value and
    slope continuous): onto the real line, finite for every finite input. Writing the
    polynomials in ``y / bound`` keeps every coefficient's effect of one size.

    Args:
        y: ``[...]`` points.
        coefficients: ``[..., K, r + 1]`` the ``a_kl`` (``a_k0 = 1 / sqrt(K)``, the rest
            zero: the identity).
        shift: ``[...]`` the value at zero.
        bound: the polynomial acts on ``[-bound, bound]``.
        min_slope: added to ``q``, the least slope of the map.

    Returns:
        ``(x, log dx/dy)``, both of shape ``[...]``.

    Example:
        >>> # q = (1 + u)^2: x = 2 ((1 + s)^3 - 1) / 3 with s = y / 2, inside [-2, 2].
        >>> y = tf.constant([1.0])
        >>> x, _ = sum_of_squares(y, [[[1.0, 1.0]]], [0.0], bound=2.0, min_slope=0.0)
        >>> round(float(x[0]), 5)  # 2 * (3.375 - 1) / 3
        1.58333

    References:
        Jaini, Selby, Yu. Sum-of-Squares Polynomial Flow. ICML 2019.
    """
    y, coefficients, shift = _tensors(y, coefficients, shift)
    degree = coefficients.shape[-1] - 1
    outer = coefficients[..., :, tf.newaxis] * coefficients[..., tf.newaxis, :]
    flat = tf.reduce_sum(outer, axis=-3)  # [..., r + 1, r + 1]: summed over the K squares
    flat = tf.reshape(flat, tf.concat([tf.shape(flat)[:-2], [(degree + 1) ** 2]], axis=0))
    square = tf.tensordot(flat, tf.constant(_square_matrix(degree), y.dtype), axes=1)
    # int_0^s u^m du = s^(m + 1) / (m + 1), times bound (dy = bound ds).
    scale = tf.constant(bound / np.arange(1, 2 * degree + 2), y.dtype)
    integral = tf.pad(square * scale, [[0, 0]] * (square.shape.rank - 1) + [[1, 0]])

    def inside(clipped):
        s = clipped / bound
        value = shift + _horner(integral, s) + min_slope * clipped
        return value, _horner(square, s) + min_slope

    return _with_linear_tails(y, bound, inside)


def _de_casteljau(coefficients, s):
    """``sum_i coefficients_i C(n, i) s^i (1 - s)^(n - i)`` by de Casteljau's algorithm:
    stable for ``s`` in ``[0, 1]``, and only sums and products (no ``0^0`` gradients)."""
    s = s[..., tf.newaxis]
    while coefficients.shape[-1] > 1:
        left, right = coefficients[..., :-1], coefficients[..., 1:]
        coefficients = left + s * (right - left)
    return coefficients[..., 0]


def bernstein(y, start, increments, bound: float = 4.0):
    """A Bernstein polynomial with increasing coefficients, with linear tails.

    On ``[-bound, bound]``, ``x = sum_i theta_i b_{i,n}(s)`` with ``s = (y + bound) /
    (2 bound)``, the Bernstein basis ``b_{i,n}`` and ``theta_i = start + sum_{j<i}
    increments_j``; positive increments make it increasing. Its slope is
    ``n / (2 bound) sum_i increments_i b_{i,n-1}(s)``, computed from the increments
    themselves (no cancellation). Outside, the tangent line at the end (value and slope
    continuous). Evenly spaced coefficients (``start = -bound``, increments
    ``2 bound / n``) give the identity.

    Args:
        y: ``[...]`` points.
        start: ``[...]`` the first coefficient ``theta_0`` (the value at ``-bound``).
        increments: ``[..., n]`` positive gaps between consecutive coefficients.
        bound: the polynomial acts on ``[-bound, bound]``.

    Returns:
        ``(x, log dx/dy)``, both of shape ``[...]``.

    Example:
        >>> x, log_slope = bernstein(tf.constant([0.5, 9.0]), [-2.0, -2.0], [[1.0] * 4] * 2,
        ...                          bound=2.0)
        >>> x.numpy(), log_slope.numpy()
        (array([0.5, 9. ], dtype=float32), array([0., 0.], dtype=float32))

    References:
        Ramasinghe, Fernando, Seneviratne, Lucey. Robust Normalizing Flows using Bernstein-type
        Polynomials. BMVC 2022 (arXiv 2102.03509), as implemented by zuko's
        ``BernsteinTransform`` (Rozet et al., https://github.com/probabilists/zuko).
    """
    y, start, increments = _tensors(y, start, increments)
    degree = increments.shape[-1]
    cumulative = tf.cumsum(increments, axis=-1)
    theta = tf.concat([tf.zeros_like(cumulative[..., :1]), cumulative], axis=-1)
    theta = start[..., tf.newaxis] + theta

    def inside(clipped):
        s = (clipped + bound) / (2.0 * bound)
        slope = degree / (2.0 * bound) * _de_casteljau(increments, s)
        return _de_casteljau(theta, s), slope

    return _with_linear_tails(y, bound, inside)


__all__ = [
    "FAR",
    "UNIT",
    "Monotonic",
    "bernstein",
    "clenshaw_curtis",
    "deep_sigmoid",
    "monotonic_integral",
    "sum_of_squares",
]
