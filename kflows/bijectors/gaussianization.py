"""Kernel-density Gaussianization: each feature through its mixture CDF, then ``Phi^-1``."""

from __future__ import annotations

import math

import tensorflow as tf
import tensorflow_probability as tfp

from kflows.bijectors.elementwise import ElementwiseParams, dtype_of
from kflows.bijectors.one_pass import OnePassBijector
from kflows.bijectors.root import invert_increasing

tfb = tfp.bijectors

#: The map is computed exactly within this many bandwidths of the outermost kernels, and
#: continues linearly beyond (see :class:`KernelGaussianization`).
TAIL_BANDWIDTHS = 10.0


def log_ndtr(x):
    """``log Phi(x)``, accurate in both tails (from ``tfp.math.logerfc``)."""
    return tfp.math.logerfc(-x * (1.0 / math.sqrt(2.0))) - math.log(2.0)


class KernelGaussianization(ElementwiseParams, OnePassBijector):
    """``z = Phi^-1((1/K) sum_k Phi((x - loc_k) / bandwidth_k))``, element-wise.

    The Gaussianization flow layer (Meng et al., 2020): each feature goes through the CDF
    of a mixture of ``K`` Gaussian kernels (a kernel density estimate with learned anchors
    ``loc_k`` and bandwidths), which makes it uniform, then through the standard normal
    quantile ``Phi^-1``, which makes it Gaussian. The bijector's **inverse** is this map
    (data ``x`` to latent ``z``, the density direction, explicit); its **forward**
    (sampling) is a numerical root search
    (:func:`kflows.bijectors.root.invert_increasing`, a fixed number of steps).

    Numerics: the mixture's CDF and survival function are sums in log space
    (``logsumexp`` of ``log Phi``), and ``Phi^-1`` is taken on the smaller of the two
    (``Phi^-1(F)`` below the median, ``-Phi^-1(1 - F)`` above), so neither tail rounds to
    0 or 1. Beyond :data:`TAIL_BANDWIDTHS` bandwidths outside the outermost kernels (where
    ``F`` would eventually underflow, at about 13 standard deviations in float32) the map
    continues linearly with the slope it has there: strictly increasing, C1 and finite for
    every finite ``x`` whose image fits the dtype, in float32 as in float64. (The exact
    map is asymptotically linear there too, with the slope of the widest kernel.) NaN in
    gives NaN out, log-det included.

    The log-det (inverse) is ``log p(x) - log phi(z)``, ``p`` the mixture's density.

    Args:
        loc: ``[D, K]`` kernel anchors per feature (or any shape ``[..., K]`` broadcasting
            against the input with a trailing kernel axis).
        log_bandwidth: log bandwidths, the shape of ``loc``.
        name: the bijector's name.

    Example:
        >>> # One kernel at 0 of bandwidth 1: Phi^-1(Phi(x)) = x, the identity.
        >>> bijector = KernelGaussianization(tf.zeros([1, 1]), tf.zeros([1, 1]))
        >>> np.round(bijector.inverse(tf.constant([[-2.0], [0.5]])).numpy(), 4)
        array([[-2. ],
               [ 0.5]], dtype=float32)

    References:
        Meng, Song, Song, Ermon. Gaussianization Flows. AISTATS 2020.
    """

    def __init__(self, loc, log_bandwidth, name: str = "kernel_gaussianization"):
        parameters = dict(locals())
        self._loc = loc
        self._log_bandwidth = log_bandwidth
        super().__init__(parameters, name, dtype_of(loc))

    @classmethod
    def _is_increasing(cls):
        return True

    @property
    def loc(self):
        return self._loc

    @property
    def log_bandwidth(self):
        return self._log_bandwidth

    def _kernels(self, dtype):
        return (
            tf.convert_to_tensor(self._loc, dtype),
            tf.convert_to_tensor(self._log_bandwidth, dtype),
        )

    def _inverse_and_log_det(self, y):
        return _latent(y, _tails(*self._kernels(y.dtype)))

    def _forward_and_log_det(self, x):
        return _data_and_log_det(x, *self._kernels(x.dtype))


def _core(x, loc, log_bandwidth, log_det: bool = True):
    """``(z, log dz/dx)`` by the exact formula (no tails), for ``x [...]`` against parameters
    ``[..., K]``; ``(z, None)`` without ``log_det``."""
    # (From the dynamic shape: the search's graph may generalise the static one away.)
    log_kernels = tf.math.log(tf.cast(tf.shape(loc)[-1], x.dtype))
    a = (x[..., tf.newaxis] - loc) * tf.math.exp(-log_bandwidth)
    log_cdf = tf.reduce_logsumexp(log_ndtr(a), axis=-1) - log_kernels
    log_sf = tf.reduce_logsumexp(log_ndtr(-a), axis=-1) - log_kernels
    # Phi^-1 of the smaller tail probability; each argument capped at 1/2 so that the
    # branch tf.where drops stays finite (and so do its gradients).
    half = tf.constant(math.log(0.5), x.dtype)
    z_low = tf.math.ndtri(tf.math.exp(tf.minimum(log_cdf, half)))
    z_high = -tf.math.ndtri(tf.math.exp(tf.minimum(log_sf, half)))
    z = tf.where(log_cdf < half, z_low, z_high)
    if not log_det:
        return z, None
    # log p(x) - log phi(z): both normal densities' -log(2 pi) / 2 cancel.
    log_density = tf.reduce_logsumexp(-0.5 * a * a - log_bandwidth, axis=-1) - log_kernels
    return z, log_density + 0.5 * z * z


def _tails(loc, log_bandwidth):
    """The kernels and, per feature, the tail points ``[2, ...]`` (low, high) with the map
    and its log-slope there."""
    reach = TAIL_BANDWIDTHS * tf.math.exp(log_bandwidth)
    ends = tf.stack([tf.reduce_min(loc - reach, -1), tf.reduce_max(loc + reach, -1)])
    return (loc, log_bandwidth, ends, *_core(ends, loc, log_bandwidth))


def _latent(x, tails, log_det: bool = True):
    """``(z, log dz/dx)`` at ``x``: the exact map between the tail points, linear beyond
    (``(z, None)`` without ``log_det``)."""
    loc, log_bandwidth, ends, z_ends, log_slope_ends = tails
    low, high = ends[0], ends[1]
    z_in, log_det_in = _core(tf.clip_by_value(x, low, high), loc, log_bandwidth, log_det)
    below, above = x < low, x > high
    nan = tf.math.is_nan(x)  # clip_by_value may not keep a NaN
    z = tf.where(below, z_ends[0] + tf.math.exp(log_slope_ends[0]) * (x - low), z_in)
    z = tf.where(above, z_ends[1] + tf.math.exp(log_slope_ends[1]) * (x - high), z)
    if not log_det:
        return tf.where(nan, x, z), None
    log_det = tf.where(below, log_slope_ends[0], log_det_in)
    log_det = tf.where(above, log_slope_ends[1], log_det)
    return tf.where(nan, x, z), tf.where(nan, x, log_det)


# A graph even when called eagerly: the search's fixed loop would otherwise run op by op
# (tens of seconds for a float64 batch). Shapes are generalised after the first retrace.
@tf.function(reduce_retracing=True, autograph=False)
def _data_and_log_det(z, loc, log_bandwidth):
    """The sampling direction: ``x`` with ``latent(x) = z`` and the forward log-det."""
    tails = _tails(loc, log_bandwidth)
    x = invert_increasing(
        lambda t: _latent(t, tails, log_det=False)[0],
        z,
        derivative=lambda t: tf.math.exp(_latent(t, tails)[1]),
    )
    return x, -_latent(x, tails)[1]
