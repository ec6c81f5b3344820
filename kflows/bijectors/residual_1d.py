"""Flows for variational inference: explicit from the base side, inverted by 1-D root searches.

Planar, radial and Sylvester flows add a bounded, low-rank residual to their input:
``y = x + g(x)``. Forward (base side ``x`` to data side ``y``, sampling) is explicit, and so
is its log-det, from the matrix determinant lemma (or a triangular Jacobian). They were
designed for variational inference, where the flow scores its own samples:
``sample_and_log_prob`` costs one pass and no root search (:class:`OnePassBijector`
remembers the forward log-det).

The inverse (``log_prob`` of arbitrary points) has no closed form, but each family reduces
it to 1-D increasing equations, solved by :func:`kflows.bijectors.root.invert_increasing` in
a fixed number of steps (graph mode and XLA compatible, implicit gradients):

- planar: one equation in ``a = w.x + b``;
- radial: one equation in ``r = |x - x0|`` (extended to an odd map of the real line);
- Sylvester: in the rotated coordinates ``v = Q^T x`` the system is triangular, solved from
  the last coordinate up, one equation per coordinate.

Each equation reads ``s + shift(s) = target`` with a bounded ``shift``; it is solved for
``s / max(1, |target|)`` (:func:`invert_residual`), whose bracket is as wide as the shift,
not as the target: large inputs cost no more steps and lose no accuracy.

The parameters come from a callable ``params()`` returning a dict of *unconstrained* tensors
(a Keras layer's weights plus, for amortised inference, a hypernetwork's output); the
constraints that keep each map invertible are applied here.

References:
    Rezende, Mohamed. Variational Inference with Normalizing Flows. ICML 2015.
    van den Berg, Hasenclever, Tomczak, Welling. Sylvester Normalizing Flows for Variational
    Inference. UAI 2018.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from kflows.bijectors.root import invert_increasing
from kflows.bijectors.variables import LayerBijector

tfb = tfp.bijectors

#: The smallest normal float32: a floor for squared norms (float32 is the narrowest maths dtype).
_TINY = float(np.finfo(np.float32).tiny)
#: ``softplus(raw + _ONE_AT_ZERO) = 1`` at ``raw = 0``: log(e - 1).
_ONE_AT_ZERO = math.log(math.e - 1.0)


def positive_one_at_zero(raw):
    """``softplus(raw + log(e - 1))``: positive, 1 at ``raw = 0``, ``~raw`` for large ``raw``."""
    return tf.math.softplus(raw + tf.constant(_ONE_AT_ZERO, raw.dtype))


def tanh_slope(t, p):
    """``1 + (p - 1) tanh'(z)`` from ``t = tanh(z)``, written ``t^2 + p (1 - t^2)``.

    The derivative of ``s + m tanh(s + c)`` (``m = p - 1``): positive for every ``p > 0``,
    and accurate when ``m`` is near ``-1`` (where ``1 + m (1 - t^2)`` would cancel).
    """
    t2 = tf.square(t)
    return t2 + p * (1.0 - t2)


def _log_cosh(x):
    x = tf.abs(x)
    return x + tf.math.softplus(-2.0 * x) - tf.constant(math.log(2.0), x.dtype)


def _norm(z):
    """``|z|`` over the last axis, with a zero (not NaN) gradient at ``z = 0``."""
    squared = tf.reduce_sum(tf.square(z), axis=-1)
    positive = squared > 0
    safe = tf.where(positive, squared, tf.ones_like(squared))
    return tf.where(positive, tf.sqrt(safe), squared)  # 0 stays 0, NaN stays NaN


def _dot(a, b):
    return tf.reduce_sum(a * b, axis=-1)


def _matvec(matrix, vector):
    """``matrix @ vector`` over the last axes, batch dimensions broadcast."""
    return tf.reduce_sum(matrix * vector[..., tf.newaxis, :], axis=-1)


def invert_residual(shift, slope, target):
    """``s`` with ``s + shift(s) = target``, element-wise, for a bounded ``shift``.

    ``slope(s) = 1 + shift'(s)`` must be positive. The root search
    (:func:`~kflows.bijectors.root.invert_increasing`, implicit gradients) runs on
    ``s / scale`` with ``scale = max(1, |target|)``, whose root lies within ``1 +
    |shift| / scale`` of zero: the bracket does not grow with ``target``, and ``s`` keeps
    its relative precision (an offset ``s - target`` would round at the ulp of ``target``).
    """
    scale = tf.stop_gradient(tf.maximum(tf.abs(target), tf.ones_like(target)))
    scaled = invert_increasing(
        lambda z: z + shift(scale * z) / scale,
        target / scale,
        derivative=lambda z: slope(scale * z),
    )
    return tf.where(tf.math.is_inf(target), target, scale * scaled)


def _like(target, *params):
    """``params`` broadcast to ``target``'s shape, which is the broadcast one: the search's
    loop variables then keep a known shape in a graph traced with relaxed shapes."""
    shape = tf.shape(target)
    return [tf.broadcast_to(tf.cast(v, target.dtype), shape) for v in params]


# One graph per signature: called eagerly (a bijector used outside a tf.function), the
# search's loops would otherwise run op by op in Python, and a tape would record them all.
@tf.function(reduce_retracing=True, autograph=False)
def invert_tanh_unit(scale, gain, offset, p, target):
    """``s`` with ``s + scale tanh(gain s + offset) = target``; ``p = 1 + scale gain > 0``.

    The 1-D equation of a planar layer (``gain = 1``) and of each coordinate of a Sylvester
    layer; ``p`` is passed rather than computed so that it keeps its accuracy near 0.
    """
    scale, gain, offset, p = _like(target, scale, gain, offset, p)
    return invert_residual(
        lambda s: scale * tf.tanh(gain * s + offset),
        lambda s: tanh_slope(tf.tanh(gain * s + offset), p),
        target,
    )


@tf.function(reduce_retracing=True, autograph=False)
def _invert_radius(alpha, q, target):
    """``r`` with ``r + beta r / (alpha + |r|) = target``, ``beta = q - alpha > -alpha``."""
    alpha, q = _like(target, alpha, q)

    def slope(r):
        r = tf.abs(r)
        return (r * (r + 2.0 * alpha) + q * alpha) / tf.square(alpha + r)

    return invert_residual(lambda r: (q - alpha) * r / (alpha + tf.abs(r)), slope, target)


class _ExplicitForward(LayerBijector):
    """Shared by the three families: parameters from a callable, log-dets over one event."""

    def __init__(self, params, variables=(), validate_args=False, name="residual_1d"):
        parameters = dict(locals())
        if not callable(params):
            raise TypeError(f"Expected a callable params() returning a dict; got {params!r}.")
        self._params_fn = params
        super().__init__(parameters, variables, validate_args, name)

    def params(self, dtype=None) -> dict:
        """The unconstrained parameters, as tensors (of ``dtype`` when given)."""
        raw = self._params_fn()
        return {
            k: tf.convert_to_tensor(v) if dtype is None else tf.cast(v, dtype)
            for k, v in raw.items()
        }


class Planar(_ExplicitForward):
    """``y = x + u_hat tanh(w.x + b)``: the planar flow, invertible for every parameter.

    ``params()`` returns ``{"u": [..., D], "w": [..., D], "b": [...]}``. ``u_hat = u +
    (m(w.u) - w.u) w / |w|^2`` with ``m(s) = softplus(s + log(e - 1)) - 1`` (Rezende and
    Mohamed's reparametrisation, shifted so that ``u = 0`` gives ``u_hat = 0``, the
    identity): ``w.u_hat = m(w.u) > -1``, so the map is increasing along ``w``.

    - Forward (sampling): explicit; log-det ``log |1 + (w.u_hat) tanh'(w.x + b)|`` (matrix
      determinant lemma), computed with the value.
    - Inverse (density): ``a = w.x + b`` solves ``a + (w.u_hat) tanh(a) = w.y + b`` (one
      1-D root search), then ``x = y - u_hat tanh(a)``.

    Example:
        >>> params = lambda: {"u": tf.constant([1.0, 0.0]), "w": tf.constant([0.0, 2.0]),
        ...                   "b": tf.constant(0.0)}
        >>> bijector = Planar(params)
        >>> y = bijector.forward(tf.constant([[0.0, 0.5]]))
        >>> bijector.inverse(tf.identity(y)).numpy().round(6)
        array([[0. , 0.5]], dtype=float32)

    References:
        Rezende, Mohamed. Variational Inference with Normalizing Flows. ICML 2015.
    """

    def __init__(self, params, variables=(), validate_args=False, name="planar"):
        super().__init__(params, variables, validate_args, name)

    def constrained(self, dtype):
        """``u_hat``, ``w``, ``b`` and ``p = 1 + w.u_hat > 0``."""
        raw = self.params(dtype)
        u, w, b = raw["u"], raw["w"], raw["b"]
        wu = _dot(w, u)
        p = positive_one_at_zero(wu)
        # m(w.u) - w.u, exactly 0 at u = 0 (p - 1 is only 0 to rounding there).
        correction = p - positive_one_at_zero(tf.zeros_like(wu)) - wu
        # At w = 0 the correction is 0 / 0 with a zero numerator: keep it 0.
        w_squared = tf.maximum(_dot(w, w), tf.constant(_TINY, dtype))
        u_hat = u + (correction / w_squared)[..., tf.newaxis] * w
        return u_hat, w, b, p

    def _forward_and_log_det(self, x):
        u_hat, w, b, p = self.constrained(x.dtype)
        t = tf.tanh(_dot(w, x) + b)
        return x + u_hat * t[..., tf.newaxis], tf.math.log(tanh_slope(t, p))

    def _inverse_and_log_det(self, y):
        u_hat, w, b, p = self.constrained(y.dtype)
        a = invert_tanh_unit(p - 1.0, 1.0, 0.0, p, _dot(w, y) + b)
        t = tf.tanh(a)
        return y - u_hat * t[..., tf.newaxis], -tf.math.log(tanh_slope(t, p))


class Radial(_ExplicitForward):
    """``y = x + beta (x - x0) / (alpha + |x - x0|)``: the radial flow.

    ``params()`` returns ``{"center": [..., D], "alpha": [...], "beta": [...]}`` (raw):
    ``alpha = softplus(alpha_raw) > 0`` and ``beta = softplus(alpha_raw + beta_raw) -
    alpha > -alpha``, Rezende and Mohamed's invertibility condition; ``beta_raw = 0`` gives
    ``beta = 0``, the identity.

    - Forward (sampling): explicit, with log-det ``(D - 1) log(1 + beta h) + log(1 + beta h
      + beta h' r)``, ``h = 1 / (alpha + r)``, ``r = |x - x0|``.
    - Inverse (density): ``y - x0`` points the same way as ``x - x0``; its length ``s``
      gives ``r`` by one 1-D root search of ``r + beta r / (alpha + |r|) = s`` (odd and
      increasing on the real line).

    Example:
        >>> params = lambda: {"center": tf.constant([0.0, 0.0]), "alpha": tf.constant(0.0),
        ...                   "beta": tf.constant(1.0)}
        >>> bijector = Radial(params)
        >>> y = bijector.forward(tf.constant([[1.0, -2.0]]))
        >>> bijector.inverse(tf.identity(y)).numpy().round(6)
        array([[ 1., -2.]], dtype=float32)

    References:
        Rezende, Mohamed. Variational Inference with Normalizing Flows. ICML 2015.
    """

    def __init__(self, params, variables=(), validate_args=False, name="radial"):
        super().__init__(params, variables, validate_args, name)

    def constrained(self, dtype):
        """``x0``, ``alpha > 0`` and ``q = alpha + beta > 0``."""
        raw = self.params(dtype)
        # Floors: a softplus underflowing to 0 would give 0 * inf = NaN at the centre.
        floor = tf.constant(1e-6, raw["alpha"].dtype)
        alpha = floor + tf.math.softplus(raw["alpha"])
        q = floor + tf.math.softplus(raw["alpha"] + raw["beta"])
        return raw["center"], alpha, q

    @staticmethod
    def _log_det(r, alpha, q, dim):
        # 1 + beta h = (r + q) / (alpha + r); 1 + beta h + beta h' r =
        # (r^2 + 2 alpha r + q alpha) / (alpha + r)^2: both positive for q > 0.
        log_scale = tf.math.log(r + q) - tf.math.log(alpha + r)
        radial = tf.math.log(r * (r + 2.0 * alpha) + q * alpha) - 2.0 * tf.math.log(alpha + r)
        return (dim - 1.0) * log_scale + radial

    def _forward_and_log_det(self, x):
        center, alpha, q = self.constrained(x.dtype)
        offset = x - center
        r = _norm(offset)
        beta = q - alpha  # exactly 0 at beta_raw = 0: the identity, bit for bit
        y = x + offset * (beta / (alpha + r))[..., tf.newaxis]
        dim = tf.cast(tf.shape(x)[-1], x.dtype)
        return y, self._log_det(r, alpha, q, dim)

    def _inverse_and_log_det(self, y):
        center, alpha, q = self.constrained(y.dtype)
        offset = y - center

        r = tf.abs(_invert_radius(alpha, q, _norm(offset)))
        # x - x0 = (y - x0) / (1 + beta h); r + q = 0 only at y = x0 (with q underflowed).
        scale = tf.math.divide_no_nan(alpha + r, r + q)
        dim = tf.cast(tf.shape(y)[-1], y.dtype)
        return center + offset * scale[..., tf.newaxis], -self._log_det(r, alpha, q, dim)


class Sylvester(_ExplicitForward):
    """``y = x + Q R tanh(R~ Q^T x + b)``: the Householder Sylvester flow.

    ``params()`` returns ``{"reflections": [..., K, D], "r": [..., M(M+1)/2], "r_tilde":
    [..., M(M+1)/2], "bias": [..., M]}``. ``Q`` is the first ``M`` columns of the product
    of ``K`` Householder reflections ``H_k = I - 2 v_k v_k^T / |v_k|^2`` (no
    ``"reflections"``: the identity, the triangular variant); ``R`` and ``R~`` are upper
    triangular, filled row by row from ``r`` and ``r_tilde``, their diagonals squashed by
    ``tanh`` as in the paper's code, so ``R_ii R~_ii > -1 = -1 / sup tanh'``: the map is
    invertible. ``r = 0`` gives ``R = 0``, the identity.

    - Forward (sampling): explicit; log-det ``sum_i log(1 + R_ii R~_ii tanh'(z_i))``,
      ``z = R~ Q^T x + b`` (Sylvester's determinant identity, triangular).
    - Inverse (density): ``v = Q^T x`` solves ``v + R tanh(R~ v + b) = Q^T y``, triangular:
      ``M`` 1-D root searches, from the last coordinate up; the ``D - M`` coordinates
      orthogonal to ``Q`` pass through.

    Example:
        >>> params = lambda: {"reflections": tf.constant([[1.0, 1.0]]),
        ...                   "r": tf.constant([0.5, 1.0, -0.3]),
        ...                   "r_tilde": tf.constant([1.0, 0.2, 2.0]),
        ...                   "bias": tf.constant([0.1, 0.0])}
        >>> bijector = Sylvester(params)
        >>> y = bijector.forward(tf.constant([[0.3, -1.0]]))
        >>> bijector.inverse(tf.identity(y)).numpy().round(5)
        array([[ 0.3, -1. ]], dtype=float32)

    References:
        van den Berg, Hasenclever, Tomczak, Welling. Sylvester Normalizing Flows for
        Variational Inference. UAI 2018.
    """

    def __init__(self, params, variables=(), validate_args=False, name="sylvester"):
        super().__init__(params, variables, validate_args, name)

    @staticmethod
    def _triangular(packed):
        """Upper triangular ``[..., M, M]`` with ``tanh`` of the diagonal, and the raw diagonal."""
        matrix = tfp.math.fill_triangular(packed, upper=True)
        raw_diag = tf.linalg.diag_part(matrix)
        return tf.linalg.set_diag(matrix, tf.tanh(raw_diag)), raw_diag

    def constrained(self, dtype):
        """The reflections, ``R``, ``R~``, ``b`` and ``p = 1 + diag(R) diag(R~) > 0``."""
        raw = self.params(dtype)
        r, r_diag = self._triangular(raw["r"])
        r_tilde, r_tilde_diag = self._triangular(raw["r_tilde"])
        # 1 + tanh(a) tanh(b) = cosh(a + b) / (cosh(a) cosh(b)), without cancellation.
        p = tf.exp(_log_cosh(r_diag + r_tilde_diag) - _log_cosh(r_diag) - _log_cosh(r_tilde_diag))
        return raw.get("reflections"), r, r_tilde, raw["bias"], p

    @staticmethod
    def _reflect(reflections, z, transpose):
        """``Q^T z`` (``transpose``) or ``Q z``, ``Q = H_1 ... H_K`` (None: ``Q = I``)."""
        if reflections is None:
            return z
        count = reflections.shape[-2]
        if count is None:
            raise ValueError(f"Expected a static number of reflections; got {reflections.shape}.")
        order = range(count) if transpose else reversed(range(count))
        for k in order:
            v = reflections[..., k, :]
            norm = tf.maximum(_dot(v, v), tf.constant(_TINY, v.dtype))
            z = z - (2.0 * _dot(v, z) / norm)[..., tf.newaxis] * v
        return z

    def _residual(self, reflections, r, t, dim):
        """``Q R t``, ``R t`` padded with zeros to ``D`` coordinates."""
        rt = _matvec(r, t)
        padding = [[0, 0]] * (len(rt.shape) - 1) + [[0, dim - rt.shape[-1]]]
        return self._reflect(reflections, tf.pad(rt, padding), transpose=False)

    def _rank(self, bias, dim):
        rank = bias.shape[-1]
        if rank is None or dim is None or rank > dim:
            raise ValueError(f"Expected a static rank M <= D = {dim}; got bias shape {bias.shape}.")
        return rank

    def _forward_and_log_det(self, x):
        reflections, r, r_tilde, bias, p = self.constrained(x.dtype)
        rank = self._rank(bias, x.shape[-1])
        v = self._reflect(reflections, x, transpose=True)[..., :rank]
        t = tf.tanh(_matvec(r_tilde, v) + bias)
        y = x + self._residual(reflections, r, t, x.shape[-1])
        return y, tf.reduce_sum(tf.math.log(tanh_slope(t, p)), axis=-1)

    def _inverse_and_log_det(self, y):
        reflections, r, r_tilde, bias, p = self.constrained(y.dtype)
        rank = self._rank(bias, y.shape[-1])
        target = self._reflect(reflections, y, transpose=True)[..., :rank]
        # v and t = tanh(R~ v + b) fill in from the last coordinate; unknown entries are 0,
        # so a full row product sums over the known ones only.
        v = tf.zeros_like(target + bias + p)
        t = tf.zeros_like(v)
        for i in reversed(range(rank)):
            known = _dot(r_tilde[..., i, :], v) + bias[..., i]
            rest = _dot(r[..., i, :], t)
            gain = r_tilde[..., i, i]
            v_i = invert_tanh_unit(r[..., i, i], gain, known, p[..., i], target[..., i] - rest)
            here = tf.one_hot(i, rank, on_value=True, off_value=False)
            v = tf.where(here, v_i[..., tf.newaxis], v)
            t = tf.where(here, tf.tanh(gain * v_i + known)[..., tf.newaxis], t)
        x = y - self._residual(reflections, r, t, y.shape[-1])
        return x, -tf.reduce_sum(tf.math.log(tanh_slope(t, p)), axis=-1)
