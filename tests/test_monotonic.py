"""The monotonic element-wise transforms (kflows/bijectors/monotonic.py) against references.

Each explicit map is checked against a reference computed independently with numpy (direct
formulas; ``numpy.polynomial`` for the sum of squares; a fine composite Simpson rule for
UMNN's integral), and each transform for the identity at zero parameters, monotonicity
with continuous linear tails, round trips in float32 and float64, non-finite inputs and its
config. The generic layer checks run on the registry entries ``maf_sigmoidal``,
``maf_umnn``, ``maf_sos``, ``maf_bernstein`` and ``coupling_sigmoidal``.
"""

import functools
import math

import numpy as np
import pytest
import tensorflow as tf

import kflows
from kflows import transforms
from kflows.bijectors import monotonic

SPECS = {
    "sigmoidal": {"name": "sigmoidal", "hidden": 3},
    "umnn": {"name": "umnn", "hidden": 3, "nodes": 33},
    "sos": {"name": "sos", "polynomials": 2, "degree": 3, "bound": 3.0},
    "bernstein": {"name": "bernstein", "degree": 7, "bound": 3.0},
}


def _forward(bijector, x):
    """``bijector.forward`` in a graph: eager root searches run op by op (slow)."""
    return tf.function(bijector.forward)(tf.identity(x))


def _fldj(bijector, x):
    return tf.function(lambda t: bijector.forward_log_det_jacobian(t, event_ndims=0))(
        tf.identity(x)
    )


def _params(transform, shape, scale=0.5, seed=0, dtype=tf.float64):
    rng = np.random.default_rng(seed)
    return tf.constant(scale * rng.standard_normal((*shape, transform.num_params)), dtype)


def _simpson(fn, upper, n=4000):
    """``int_0^upper fn(t) dt`` by the composite Simpson rule on ``n`` (even) intervals."""
    t = np.linspace(0.0, upper, n + 1)
    w = np.ones(n + 1)
    w[1:-1:2], w[2:-1:2] = 4.0, 2.0
    return (upper / n / 3.0) * np.sum(w * fn(t))


def _softplus(z):
    return np.logaddexp(0.0, z)


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def test_deep_sigmoid_matches_the_formula():
    rng = np.random.default_rng(1)
    log_a, b, raw_w = rng.normal(size=(3, 5, 4))
    log_w = raw_w - np.log(np.sum(np.exp(raw_w), axis=-1, keepdims=True))
    y = rng.uniform(-4.0, 4.0, 5)
    x, log_slope = monotonic.deep_sigmoid(y, log_a, b, log_w)
    a, w = np.exp(log_a), np.exp(log_w)
    sig = _sigmoid(a * y[:, None] + b)
    s = np.sum(w * sig, axis=-1)
    np.testing.assert_allclose(x, np.log(s / (1.0 - s)), rtol=1e-12, atol=1e-12)
    slope = np.sum(w * a * sig * (1.0 - sig), axis=-1) / (s * (1.0 - s))
    np.testing.assert_allclose(log_slope, np.log(slope), rtol=1e-12, atol=1e-12)


def test_deep_sigmoid_does_not_saturate_in_float32():
    # sigmoid(40) is 1 in float32: a naive logit would give inf; the log-space map is linear.
    y = tf.constant([-60.0, -40.0, 40.0, 60.0])
    x, log_slope = monotonic.deep_sigmoid(
        y, [[0.0, 0.3]] * 4, [[0.0, 1.0]] * 4, [[np.log(0.5)] * 2] * 4
    )
    assert np.all(np.isfinite(x)) and np.all(np.isfinite(log_slope))
    assert np.all(np.diff(x.numpy()) > 0)
    np.testing.assert_allclose(log_slope, 0.0, atol=1e-4)  # slope min_k a_k = 1 in the tails


#: The plateau hypothesis found in maf_sigmoidal (dim 5, seed 720, scale 0.86): the third
#: sigmoid saturates at y ~ 1.5 and the one that takes over weighs 3e-8, so the map sits
#: at 17.2826 with a slope of e^-68 for y in [2.5, 10] and beyond.
PLATEAU = {
    "log_a": np.log([[30.09025, 1e-3, 24.658556]]),
    "b": [[2.119827, -61.54069, -25.97699]],
    "log_w": np.log([[1.0921067e-29, 3.1206408e-08, 1.0]]),
}


def test_deep_sigmoid_min_slope_mixes_in_the_identity():
    rng = np.random.default_rng(3)
    log_a, b, raw_w = rng.normal(size=(3, 5, 4))
    log_w = raw_w - np.log(np.sum(np.exp(raw_w), axis=-1, keepdims=True))
    y = rng.uniform(-4.0, 4.0, 5)
    x, log_slope = monotonic.deep_sigmoid(y, log_a, b, log_w)
    mixed, log_mixed = monotonic.deep_sigmoid(y, log_a, b, log_w, min_slope=0.01)
    np.testing.assert_allclose(mixed, 0.99 * x + 0.01 * y, rtol=1e-12)
    np.testing.assert_allclose(np.exp(log_mixed), 0.99 * np.exp(log_slope) + 0.01, rtol=1e-12)
    # The identity parameters stay the identity.
    ident, log_ident = monotonic.deep_sigmoid(
        y, np.zeros((5, 2)), np.zeros((5, 2)), np.log(np.full((5, 2), 0.5)), min_slope=0.01
    )
    np.testing.assert_allclose(ident, y, rtol=1e-12)
    np.testing.assert_allclose(log_ident, 0.0, atol=1e-12)
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError, match=r"min_slope in \[0, 1\)"):
            monotonic.deep_sigmoid(y, log_a, b, log_w, min_slope=bad)


@pytest.mark.parametrize("dtype", [tf.float32, tf.float64])
def test_sigmoidal_samples_across_a_plateau_of_the_sigmoids(dtype):
    y = tf.constant([3.0, 6.99446424, 10.0], dtype)
    params = [tf.constant(np.repeat(p, 3, axis=0), dtype) for p in PLATEAU.values()]
    _, log_slope = monotonic.deep_sigmoid(y, *params)
    assert np.all(log_slope.numpy() < -25.0)  # flat beyond float64 without the floor
    bijector = monotonic.Monotonic(
        functools.partial(monotonic.deep_sigmoid, min_slope=transforms.DSF_MIN_SLOPE), params
    )
    x = bijector.inverse(tf.identity(y))
    # The inverse is at worst 1 / min_slope times as steep as the map: x is 17.28 here.
    eps = np.finfo(dtype.as_numpy_dtype).eps
    tol = 4.0 * eps * 18.0 / transforms.DSF_MIN_SLOPE
    np.testing.assert_allclose(_forward(bijector, x), y, atol=tol, rtol=0)


def test_monotonic_integral_matches_simpson_and_its_log_slope_is_g():
    rng = np.random.default_rng(2)
    weights, biases, outputs = rng.normal(size=(3, 6, 4))
    offset, shift = rng.normal(size=(2, 6))
    y = rng.uniform(-3.0, 3.0, 6)
    x, log_slope = monotonic.monotonic_integral(
        y, weights, biases, outputs, offset, shift, nodes=65
    )

    def g(i, t):
        hidden = np.tanh(weights[i] * t[:, None] + biases[i])
        z = offset[i] + hidden @ outputs[i]
        return _softplus(np.log(np.expm1(1.0)) + 6.0 * np.tanh(z / 6.0))

    # Simpson on [0, y] (a negative y gives the signed integral).
    expected = [shift[i] + _simpson(lambda t, i=i: g(i, t), y[i]) for i in range(6)]
    np.testing.assert_allclose(x, expected, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(
        log_slope, [np.log(g(i, y[i : i + 1]))[0] for i in range(6)], rtol=1e-12
    )


def test_clenshaw_curtis_integrates_polynomials_of_its_degree_exactly():
    points, weights = monotonic.clenshaw_curtis(9)
    assert points[0] == 0.0 and points[-1] == pytest.approx(1.0)
    for power in range(9):
        assert np.sum(weights * points**power) == pytest.approx(1.0 / (power + 1), abs=1e-14)
    with pytest.raises(ValueError, match="nodes >= 2"):
        monotonic.clenshaw_curtis(1)


def test_sum_of_squares_matches_numpy_polynomials_and_has_linear_tails():
    rng = np.random.default_rng(3)
    bound = 2.5
    coefficients = rng.normal(size=(4, 3, 4))  # 4 points, K = 3, degree 3
    shift = rng.normal(size=4)
    y = np.array([-1.7, 0.3, 2.4, 7.0])
    x, log_slope = monotonic.sum_of_squares(y, coefficients, shift, bound=bound, min_slope=0.0)
    P = np.polynomial.Polynomial
    for i in range(4):
        q = sum((P(c) ** 2 for c in coefficients[i]), P([0.0]))  # in s = y / bound
        integral = q.integ() * bound
        end = min(y[i], bound)
        value = shift[i] + integral(end / bound) + q(end / bound) * (y[i] - end)
        assert x[i].numpy() == pytest.approx(value, rel=1e-12, abs=1e-12)
        assert log_slope[i].numpy() == pytest.approx(np.log(q(end / bound)), rel=1e-12)


def test_sum_of_squares_never_goes_flat():
    # All-zero coefficients: the squares vanish everywhere; the floor keeps the map onto R.
    y = tf.constant([-9.0, -1.0, 0.5, 3.0], tf.float64)
    x, log_slope = monotonic.sum_of_squares(
        y, tf.zeros([4, 1, 2], tf.float64), tf.zeros([4], tf.float64)
    )
    np.testing.assert_allclose(x, 1e-3 * y.numpy(), rtol=1e-12)
    np.testing.assert_allclose(log_slope, np.log(1e-3), rtol=1e-12)


def test_bernstein_matches_the_basis_formula():
    rng = np.random.default_rng(4)
    bound, degree = 2.0, 6
    start = rng.normal(size=5)
    increments = np.exp(rng.normal(size=(5, degree)))
    y = np.array([-1.9, -0.4, 0.0, 1.2, 1.99])
    x, log_slope = monotonic.bernstein(y, start, increments, bound=bound)
    theta = start[:, None] + np.concatenate([np.zeros((5, 1)), np.cumsum(increments, -1)], -1)
    s = (y + bound) / (2.0 * bound)
    np.testing.assert_allclose(x, np.sum(theta * _bernstein_basis(s, degree), -1), rtol=1e-12)
    # The slope against central differences of the reference.
    h = 1e-6
    up = np.sum(theta * _bernstein_basis(s + h / (2 * bound), degree), -1)
    down = np.sum(theta * _bernstein_basis(s - h / (2 * bound), degree), -1)
    np.testing.assert_allclose(np.exp(log_slope), (up - down) / (2 * h), rtol=1e-7)


def _bernstein_basis(s, degree):
    i = np.arange(degree + 1)
    comb = np.array([math.comb(degree, k) for k in i])
    return comb * s[:, None] ** i * (1 - s[:, None]) ** (degree - i)


@pytest.mark.parametrize("kind", sorted(SPECS))
@pytest.mark.parametrize("dtype", [tf.float32, tf.float64])
def test_zero_parameters_give_the_identity(kind, dtype):
    transform = transforms.get(SPECS[kind])
    y = tf.constant(np.linspace(-12.0, 12.0, 41).reshape(41, 1), dtype)
    bijector = transform.bijector(tf.zeros([41, 1, transform.num_params], dtype))
    atol = 1e-5 if dtype == tf.float32 else 1e-12
    np.testing.assert_allclose(bijector.inverse(y), y, atol=atol)
    np.testing.assert_allclose(bijector.inverse_log_det_jacobian(y, event_ndims=0), 0.0, atol=atol)
    np.testing.assert_allclose(_forward(bijector, y), y, atol=atol)


@pytest.mark.parametrize("kind", sorted(SPECS))
def test_increasing_with_continuous_linear_tails(kind):
    transform = transforms.get(SPECS[kind])
    grid = np.linspace(-40.0, 40.0, 4001)
    y = tf.constant(np.tile(grid[:, None], [1, 3]))
    params = tf.broadcast_to(
        _params(transform, (1, 3), scale=0.8, seed=5), [4001, 3, transform.num_params]
    )
    bijector = transform.bijector(params)
    x = bijector.inverse(y).numpy()
    log_slope = bijector.inverse_log_det_jacobian(y, event_ndims=0).numpy()
    assert np.all(np.diff(x, axis=0) > 0)
    assert np.all(np.isfinite(log_slope))
    # Value and slope continuous: no jump between neighbouring grid points beyond the slope.
    slope = np.exp(log_slope)
    step = grid[1] - grid[0]
    np.testing.assert_allclose(np.diff(x, axis=0), 0.5 * step * (slope[1:] + slope[:-1]), rtol=2e-2)
    # Far out, the slope settles (linear tails).
    np.testing.assert_allclose(slope[:10], np.tile(slope[:1], [10, 1]), rtol=1e-3)
    np.testing.assert_allclose(slope[-10:], np.tile(slope[-1:], [10, 1]), rtol=1e-3)


@pytest.mark.parametrize("kind", sorted(SPECS))
@pytest.mark.parametrize("dtype, tol", [(tf.float32, 1e-4), (tf.float64, 1e-10)])
def test_round_trips(kind, dtype, tol):
    transform = transforms.get(SPECS[kind])
    rng = np.random.default_rng(6)
    y = tf.constant(rng.uniform(-6.0, 6.0, (64, 3)), dtype)
    bijector = transform.bijector(_params(transform, (64, 3), scale=1.0, seed=7, dtype=dtype))
    x = bijector.inverse(y)
    y_back = _forward(bijector, x)
    np.testing.assert_allclose(y_back, y, rtol=tol, atol=tol)
    x_back = bijector.inverse(tf.identity(_forward(bijector, y)))
    np.testing.assert_allclose(x_back, y, rtol=tol, atol=tol)
    fldj = _fldj(bijector, x)
    ildj = bijector.inverse_log_det_jacobian(tf.identity(y), event_ndims=0)
    np.testing.assert_allclose(fldj, -ildj, rtol=tol, atol=tol)


@pytest.mark.parametrize("kind", sorted(SPECS))
def test_non_finite_inputs(kind):
    transform = transforms.get(SPECS[kind])
    z = tf.constant([[np.nan, np.inf, -np.inf, 0.5]])
    bijector = transform.bijector(_params(transform, (1, 4), dtype=tf.float32))
    for direction in ("inverse", "forward"):
        call = _forward if direction == "forward" else lambda b, t: b.inverse(t)
        value = call(bijector, tf.identity(z)).numpy()[0]
        assert np.isnan(value[0]) and value[1] == np.inf and value[2] == -np.inf
        assert np.isfinite(value[3])
    ildj = bijector.inverse_log_det_jacobian(tf.identity(z), event_ndims=0).numpy()[0]
    fldj = _fldj(bijector, z).numpy()[0]
    for log_det in (ildj, fldj):
        assert np.isnan(log_det[0]) and np.all(np.isfinite(log_det[1:]))


@pytest.mark.parametrize("kind", sorted(SPECS))
def test_config_round_trip_and_argument_errors(kind):
    transform = transforms.get(SPECS[kind])
    assert transforms.get(transforms.serialize(transform)) == transform
    assert type(transform).from_config(transform.get_config()) == transform
    counts = [k for k in SPECS[kind] if k in ("hidden", "nodes", "polynomials", "degree")]
    for bad in (2.0, True, "3", 0):
        with pytest.raises(ValueError, match=f"Expected an integer {counts[0]}"):
            transforms.get({**SPECS[kind], counts[0]: bad})


def test_forward_gradients_are_the_implicit_ones():
    # d forward / d params = -(d explicit / d params) / explicit', at x = forward(u).
    transform = transforms.get(SPECS["sos"])
    params = tf.Variable(_params(transform, (4, 1), seed=8))
    u = tf.constant(np.linspace(-2.0, 2.0, 4)[:, None])
    with tf.GradientTape() as tape:
        x = transform.bijector(params).forward(u)
    implicit = tape.gradient(x, params)
    x = tf.constant(x.numpy())
    with tf.GradientTape() as tape:
        explicit = transform.bijector(params).inverse(x)
    d_params = tape.gradient(explicit, params)
    slope = tf.exp(transform.bijector(params).inverse_log_det_jacobian(x, event_ndims=0))
    np.testing.assert_allclose(implicit, -d_params / slope[..., None], rtol=1e-9, atol=1e-12)


def test_builders_and_a_conditional_flow():
    for builder, attribute in ((kflows.naf, "hidden"), (kflows.bpf, "degree")):
        flow = builder(num_layers=2, hidden_units=(8,), context_dim=2, event_dim=2)
        assert flow.flow_layers[0].fast_direction == "density"
        x = tf.constant([[0.1, -0.3], [1.0, 2.0]])
        c = tf.constant([[0.0, 1.0], [1.0, 0.0]])
        assert flow.log_prob(x, c).shape == (2,)
        assert hasattr(flow.flow_layers[0].transform, attribute)
