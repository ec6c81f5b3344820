"""Circular spline flows on tori (the circular_spline transform, CircularShift, kflows.ncsf)."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import perturb

import kflows
from kflows.bijectors import CircularShift, RationalQuadraticSpline
from kflows.transforms import CircularSpline


def _rqs_reference(x, widths, heights, slopes):
    """Durkan et al.'s rational-quadratic spline (eq. 4), on knots from -bound, in numpy."""
    bound = widths.sum() / 2
    xk = np.concatenate([[-bound], -bound + np.cumsum(widths)])
    yk = np.concatenate([[-bound], -bound + np.cumsum(heights)])
    k = np.clip(np.searchsorted(xk, x, side="right") - 1, 0, len(widths) - 1)
    s = heights[k] / widths[k]
    xi = (x - xk[k]) / widths[k]
    d0, d1 = slopes[k], slopes[k + 1]
    num = heights[k] * (s * xi**2 + d0 * xi * (1 - xi))
    den = s + (d0 + d1 - 2 * s) * xi * (1 - xi)
    dy = s**2 * (d1 * xi**2 + 2 * s * xi * (1 - xi) + d0 * (1 - xi) ** 2) / den**2
    return yk[k] + num / den, np.log(dy)


def test_spline_boundary_slope_matches_the_reference_formula():
    rng = np.random.default_rng(0)
    widths = rng.uniform(0.5, 1.5, 5)
    widths *= 2 * np.pi / widths.sum()
    heights = rng.uniform(0.5, 1.5, 5)
    heights *= 2 * np.pi / heights.sum()
    interior, boundary = rng.uniform(0.3, 3.0, 4), 0.4
    spline = RationalQuadraticSpline(widths, heights, interior, np.pi, boundary_slope=boundary)
    x = rng.uniform(-np.pi, np.pi, 200)
    expected, log_det = _rqs_reference(x, widths, heights, np.r_[boundary, interior, boundary])
    np.testing.assert_allclose(spline.forward(x), expected, atol=1e-12)
    np.testing.assert_allclose(spline.forward_log_det_jacobian(x, event_ndims=0), log_det, 1e-9)
    # The end derivatives are the shared slope, so the map is C1 across -pi ~ pi.
    ends = np.array([-np.pi + 1e-9, np.pi - 1e-9])
    ends_log_det = spline.forward_log_det_jacobian(ends, event_ndims=0).numpy()
    np.testing.assert_allclose(ends_log_det, np.log(boundary), atol=1e-6)
    with pytest.raises(ValueError, match="boundary_slope"):
        RationalQuadraticSpline(widths, heights, interior, np.pi, boundary_slope=[0.4, 0.5])


def test_circular_shift_is_a_rotation_and_scores_off_circle_points_minus_inf():
    shift = CircularShift(tf.constant(2.5, tf.float64))
    x = np.array([-3.0, 0.0, 1.0, 3.1])
    expected = np.mod(x + 2.5 + np.pi, 2 * np.pi) - np.pi
    np.testing.assert_allclose(shift.forward(x), expected, atol=1e-12)
    np.testing.assert_allclose(shift.inverse(tf.constant(expected)), x, atol=1e-12)
    y = tf.constant([0.5, 3.5, -4.0, np.nan, np.pi, -np.pi], tf.float64)
    ildj = shift.inverse_log_det_jacobian(y, event_ndims=0).numpy()
    np.testing.assert_array_equal(ildj[[0, 4, 5]], 0.0)
    np.testing.assert_array_equal(ildj[[1, 2]], -np.inf)
    assert np.isnan(ildj[3]) and np.isnan(shift.inverse(y).numpy()[3])
    # Wrapping never leaves [-pi, pi), whatever the rounding, in float32 too.
    big = CircularShift(tf.constant(np.pi, tf.float32))
    out = big.forward(tf.constant(np.linspace(-np.pi, np.pi, 10001), tf.float32)).numpy()
    assert np.all(out >= np.float32(-np.pi)) and np.all(out < np.float32(np.pi))


def test_circular_spline_transform_is_identity_at_zero_and_round_trips():
    transform = CircularSpline(bins=6)
    assert transform.num_params == 19
    zero = transform.bijector(tf.zeros([50, 19], tf.float64))
    x = tf.constant(np.linspace(-np.pi, np.pi, 50, endpoint=False), tf.float64)
    np.testing.assert_allclose(zero.forward(x), x, atol=1e-12)
    params = tf.constant(np.random.default_rng(1).standard_normal((50, 19)), tf.float64)
    bij = transform.bijector(params)
    y = bij.forward(x)
    assert np.all(np.abs(y) <= np.pi)
    np.testing.assert_allclose(bij.inverse(tf.identity(y)), x, atol=1e-10)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = bij.forward(tf.identity(x))
    np.testing.assert_allclose(
        np.log(tape.gradient(y, x)), bij.forward_log_det_jacobian(x, event_ndims=0), atol=1e-9
    )
    assert CircularSpline.from_config(transform.get_config()) == transform
    with pytest.raises(ValueError, match="bins"):
        CircularSpline(bins=1)


def _torus_flow(dtype="float64"):
    keras.utils.set_random_seed(0)
    flow = kflows.ncsf(num_layers=2, hidden_units=(8,), bins=4, event_dim=2, dtype=dtype)
    perturb(flow, scale=0.3)
    return flow


def test_ncsf_density_is_zero_off_the_torus_never_nan():
    flow = _torus_flow("float32")
    x = tf.constant([[0.5, -1.0], [3.5, 0.0], [0.0, -3.2], [1e20, 1e20], [-3.1, 3.1]], tf.float32)
    with tf.GradientTape() as tape:
        log_prob = flow.log_prob(x)
        total = tf.reduce_sum(tf.where(tf.math.is_finite(log_prob), log_prob, 0.0))
    lp = log_prob.numpy()
    assert np.all(np.isfinite(lp[[0, 4]]))
    np.testing.assert_array_equal(lp[1:4], -np.inf)
    for grad in tape.gradient(total, flow.trainable_variables):
        assert np.all(np.isfinite(tf.convert_to_tensor(grad).numpy()))
    nan = flow.log_prob(tf.constant([[np.nan, 0.0], [0.0, np.nan]], tf.float32)).numpy()
    assert np.all(np.isnan(nan))
    samples = flow.sample(500, seed=0).numpy()
    assert np.all(np.abs(samples) <= np.float32(np.pi))
    assert np.all(np.isfinite(flow.log_prob(samples).numpy()))


def test_ncsf_density_integrates_to_one_on_the_torus():
    flow = _torus_flow()
    n = 400  # midpoint rule: the density is smooth and periodic in each angle
    grid = -np.pi + (np.arange(n) + 0.5) * 2 * np.pi / n
    points = np.stack(np.meshgrid(grid, grid), -1).reshape(-1, 2)
    density = np.exp(flow.log_prob(points).numpy())
    assert abs(density.sum() * (2 * np.pi / n) ** 2 - 1.0) < 2e-3


@pytest.mark.slow
def test_ncsf_fits_a_von_mises_mixture():
    rng = np.random.default_rng(0)
    centre = np.where(rng.random((1024, 1)) < 0.5, [[2.8, -1.0]], [[-1.0, 2.0]])
    x = np.mod(centre + rng.vonmises(0.0, 4.0, (1024, 2)) + np.pi, 2 * np.pi) - np.pi
    x = x.astype(np.float32)
    flow = kflows.ncsf(num_layers=2, hidden_units=(16, 16), bins=6, event_dim=2)
    uniform_nll = np.log(4 * np.pi**2)
    assert abs(-flow.log_prob(x).numpy().mean() - uniform_nll) < 1e-4  # identity at init
    flow.compile(optimizer="adam")
    flow.fit(x, epochs=15, batch_size=128, verbose=0)
    nll = -flow.log_prob(x).numpy().mean()
    assert np.isfinite(nll) and nll < uniform_nll - 0.8
