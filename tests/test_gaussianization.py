"""Gaussianization flows: the kernel Gaussianization bijector, its layer and kflows.gf."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from scipy import stats

import kflows
from kflows.bijectors import KernelGaussianization
from kflows.bijectors.gaussianization import TAIL_BANDWIDTHS

RNG = np.random.default_rng(0)
LOC = RNG.standard_normal((2, 3))
LOG_BANDWIDTH = 0.3 * RNG.standard_normal((2, 3))


def _bijector(dtype):
    return KernelGaussianization(tf.constant(LOC, dtype), tf.constant(LOG_BANDWIDTH, dtype))


def _reference(x):
    """``Phi^-1`` of the mixture CDF and the log-derivative, by scipy, per feature."""
    a = (x[..., None] - LOC) / np.exp(LOG_BANDWIDTH)
    log_cdf = np.logaddexp.reduce(stats.norm.logcdf(a), axis=-1) - np.log(3)
    log_sf = np.logaddexp.reduce(stats.norm.logsf(a), axis=-1) - np.log(3)
    z = np.where(
        log_cdf < np.log(0.5), stats.norm.ppf(np.exp(log_cdf)), -stats.norm.ppf(np.exp(log_sf))
    )
    log_density = np.logaddexp.reduce(stats.norm.logpdf(a) - LOG_BANDWIDTH, -1) - np.log(3)
    return z, log_density - stats.norm.logpdf(z)


def test_matches_scipy_and_round_trips_in_float64():
    x = np.stack([np.linspace(-6.0, 6.0, 41)] * 2, axis=1)
    bij = _bijector(tf.float64)
    z = bij.inverse(tf.constant(x))
    expected, log_det = _reference(x)
    np.testing.assert_allclose(z, expected, atol=1e-9)
    ildj = bij.inverse_log_det_jacobian(tf.constant(x), event_ndims=0)
    np.testing.assert_allclose(ildj, log_det, atol=1e-9)
    back = _bijector(tf.float64).forward(tf.identity(z))
    np.testing.assert_allclose(back, x, atol=1e-10)
    fldj = _bijector(tf.float64).forward_log_det_jacobian(tf.identity(z), event_ndims=0)
    np.testing.assert_allclose(fldj, -log_det, atol=1e-9)


def test_float32_agrees_with_float64_and_stays_finite_and_increasing_in_the_tails():
    x = np.concatenate([-np.logspace(-3, 20, 200)[::-1], np.logspace(-3, 20, 200)])
    x = np.stack([x, x], axis=1)
    z32 = _bijector(tf.float32).inverse(tf.constant(x, tf.float32)).numpy()
    ld32 = _bijector(tf.float32).inverse_log_det_jacobian(tf.constant(x, tf.float32), 0).numpy()
    z64 = _bijector(tf.float64).inverse(tf.constant(x)).numpy()
    assert np.all(np.isfinite(z32)) and np.all(np.isfinite(ld32))
    assert np.all(np.diff(z64, axis=0) > 0)
    assert np.all(np.diff(z32, axis=0) >= 0)  # float32 rounds steps below its resolution
    # The tails' slope comes from a difference of two terms of ~z^2 / 2: ~1e-5 relative.
    np.testing.assert_allclose(z32, z64, rtol=5e-5, atol=1e-4)
    # Exactly the formula up to the tail points, TAIL_BANDWIDTHS beyond the outer kernels.
    reach = TAIL_BANDWIDTHS * np.exp(LOG_BANDWIDTH)
    inside = ((LOC - reach).min(1) <= x) & (x <= (LOC + reach).max(1))
    np.testing.assert_allclose(z64[inside], _reference(x)[0][inside], atol=1e-8)


def test_tails_are_continuous_and_linear():
    bij = _bijector(tf.float64)
    low = (LOC - TAIL_BANDWIDTHS * np.exp(LOG_BANDWIDTH)).min(1)
    x = np.stack([low + d for d in (-1e-9, 0.0, 1e-9, -1.0, -2.0)])
    z = bij.inverse(tf.constant(x)).numpy()
    np.testing.assert_allclose(z[0], z[2], atol=1e-8)
    np.testing.assert_allclose(z[3] - z[4], z[1] - z[3], rtol=1e-9)  # a straight line
    assert np.all(z[1] < -10.0)


def test_nan_in_gives_nan_out_both_ways():
    x = tf.constant([[np.nan, 0.5]], tf.float32)
    for fn in (_bijector(tf.float32).inverse, _bijector(tf.float32).forward):
        out = fn(x).numpy()
        assert np.isnan(out[0, 0]) and np.isfinite(out[0, 1])
    ildj = _bijector(tf.float32).inverse_log_det_jacobian(x, event_ndims=0).numpy()
    assert np.isnan(ildj[0, 0]) and np.isfinite(ildj[0, 1])


def test_float32_round_trip():
    z = tf.constant(np.random.default_rng(1).standard_normal((64, 2)) * 3.0, tf.float32)
    x = _bijector(tf.float32).forward(z)
    np.testing.assert_allclose(_bijector(tf.float32).inverse(tf.identity(x)), z, atol=2e-5)


def test_layer_is_the_identity_until_initialised_from_data_quantiles():
    x = kflows.data.two_moons(1000)
    layer = kflows.Gaussianization(num_kernels=4)
    flow = kflows.Flow([layer], event_dim=2)
    assert flow.needs_data_init
    np.testing.assert_allclose(layer.bijector().inverse(x[:5]), x[:5], atol=1e-6)
    flow.initialize(x)
    assert not flow.needs_data_init
    expected = np.quantile(x.astype(np.float64), [0.125, 0.375, 0.625, 0.875], axis=0).T
    np.testing.assert_allclose(layer.loc.numpy(), expected, rtol=1e-6)
    bandwidth = 1.06 * x.std(0) * 4**-0.2
    np.testing.assert_allclose(
        np.exp(layer.log_bandwidth.numpy()), bandwidth[:, None] + 0 * expected, rtol=1e-5
    )
    # The initialised marginals are roughly standard normal (the kernels smooth them).
    z = layer.bijector().inverse(x).numpy()
    assert np.all(np.abs(z.mean(0)) < 0.1) and np.all(np.abs(z.std(0) - 0.85) < 0.2)


def test_initialisation_refuses_non_finite_data():
    layer = kflows.Gaussianization()
    kflows.Flow([layer], event_dim=2)
    before = layer.get_weights()
    with pytest.raises(ValueError, match="initialised"):
        layer.initialize(np.array([[0.0, np.nan], [1.0, 2.0]], np.float32))
    for a, b in zip(before, layer.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="num_kernels"):
        kflows.Gaussianization(num_kernels=2.0)


@pytest.mark.slow
def test_gf_trains_and_samples():
    keras.utils.set_random_seed(0)
    x = kflows.data.two_moons(1024)
    flow = kflows.gf(num_layers=2, num_kernels=6, event_dim=2)
    assert [layer.fast_direction for layer in flow.flow_layers[::2]] == ["density"] * 2
    flow.compile(optimizer=keras.optimizers.Adam(0.01))
    history = flow.fit(x, epochs=3, batch_size=256, verbose=0).history
    assert not flow.needs_data_init
    assert np.all(np.isfinite(history["loss"])) and history["loss"][-1] < history["loss"][0]
    samples, log_prob = flow.sample_and_log_prob(64, seed=0)
    np.testing.assert_allclose(log_prob, flow.log_prob(samples), rtol=1e-4, atol=1e-4)
