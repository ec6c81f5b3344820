"""Planar, radial and Sylvester flows: exact log-dets, invertible for any weights, VI-ready.

The generic checks (tests/registry.py entries "planar", "radial", "sylvester") cover round
trips, log-dets, serialization, export and mixed precision. Here: the log-det against the
autodiff Jacobian at D = 5 (full-rank Sylvester), the invertibility constraints under
adversarial weights, sampling and scoring in one pass without a root search, NaN rows, the
context hypernetwork, and a small variational fit.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
from helpers import perturb

import kflows
from kflows.bijectors import residual_1d

DIM = 5
FAMILIES = {
    "planar": lambda dtype: kflows.Planar(dtype=dtype),
    "radial": lambda dtype: kflows.Radial(dtype=dtype),
    "sylvester": lambda dtype: kflows.Sylvester(num_reflections=3, dtype=dtype),
    "sylvester_triangular": lambda dtype: kflows.Sylvester(num_reflections=0, dtype=dtype),
}


def built(name, dtype="float64", dim=DIM, scale=0.5, context_dim=None, seed=0):
    keras.utils.set_random_seed(seed)
    layer = FAMILIES[name](dtype)
    flow = kflows.Flow([layer], dtype=dtype, context_dim=context_dim)
    flow.build((None, dim))
    perturb(layer, scale=scale, seed=seed)
    return flow, layer


def points(n=6, dim=DIM, seed=1, scale=1.5):
    return tf.constant(scale * np.random.default_rng(seed).standard_normal((n, dim)))


def slogdet_of_jacobian(fn, x):
    x = tf.identity(x)
    with tf.GradientTape(persistent=True) as tape:  # pfor over a root search is slow
        tape.watch(x)
        y = fn(x)
    jacobian = tape.batch_jacobian(y, x, experimental_use_pfor=False)
    return np.linalg.slogdet(jacobian.numpy())


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_log_dets_match_the_autodiff_jacobian_at_d5(name):
    _, layer = built(name)
    x = points()
    sign, expected = slogdet_of_jacobian(layer.bijector().forward, x)
    assert np.all(sign > 0)  # orientation-preserving, as the constraints promise
    fldj = layer.bijector().forward_log_det_jacobian(x, event_ndims=1)
    np.testing.assert_allclose(fldj, expected, atol=1e-10)
    y = layer.bijector().forward(x)
    _, expected = slogdet_of_jacobian(layer.bijector().inverse, y)
    ildj = layer.bijector().inverse_log_det_jacobian(tf.identity(y), event_ndims=1)
    np.testing.assert_allclose(ildj, expected, atol=1e-9)
    np.testing.assert_allclose(layer.bijector().inverse(tf.identity(y)), x, atol=1e-12)


def _round_trip_is_exact(layer, x, atol=1e-9):
    """Both round trips within ``atol``: a map flat at a point or steep (amplifying by 1e6)
    cannot do better than its conditioning allows."""
    y = layer.bijector().forward(x)
    assert np.all(np.isfinite(y))
    np.testing.assert_allclose(layer.bijector().inverse(tf.identity(y)), x, atol=atol)
    fldj = layer.bijector().forward_log_det_jacobian(x, event_ndims=1)
    assert np.all(np.isfinite(fldj))
    u = layer.bijector().inverse(x)
    np.testing.assert_allclose(layer.bijector().forward(tf.identity(u)), x, atol=atol)


def test_planar_stays_invertible_when_w_u_is_very_negative():
    _, layer = built("planar")
    w = np.array([1.0, -2.0, 0.5, 0.0, 3.0])
    layer.w.assign(w)
    layer.u.assign(-40.0 * w)  # w.u = -570: far past the -1 a raw planar map must keep
    u_hat, w_value, _, p = layer.bijector().constrained(tf.float64)
    assert float(tf.reduce_sum(u_hat * w_value)) >= -1.0 - 1e-12 and float(p) >= 0.0
    # w.u_hat = -1 (to rounding): a - tanh(a) along w, flat at a = 0, still increasing.
    _round_trip_is_exact(layer, points(), atol=1e-4)
    layer.u.assign(1e6 * w)  # and very positive: y ~ 1e7, whose rounding is ~1e-9
    _round_trip_is_exact(layer, points(), atol=1e-7)


def test_planar_with_w_zero_is_the_identity_plus_u_tanh_b():
    _, layer = built("planar")
    layer.w.assign(np.zeros(DIM))
    x = points()
    y = layer.bijector().forward(x).numpy()
    expected = x.numpy() + layer.u.numpy() * np.tanh(layer.b.numpy())
    np.testing.assert_allclose(y, expected, atol=1e-12)
    _round_trip_is_exact(layer, x)


def test_radial_stays_invertible_when_beta_is_very_negative():
    _, layer = built("radial")
    for beta in (-30.0, -1e4, 1e4):
        layer.beta.assign(beta)
        _, alpha, q = layer.bijector().constrained(tf.float64)
        assert float(q - alpha) >= -float(alpha)  # beta_hat >= -alpha
        _round_trip_is_exact(layer, points())
    layer.beta.assign(-1e4)  # beta_hat = -alpha: the centre absorbs its neighbourhood
    centre = tf.constant(layer.center.numpy()[None])
    assert np.all(np.isfinite(layer.bijector().inverse(centre)))


def test_sylvester_stays_invertible_when_the_diagonals_saturate():
    _, layer = built("sylvester")
    packed = layer.r.numpy()
    diagonal = [i * DIM - i * (i - 1) // 2 for i in range(DIM)]  # row-major upper triangle
    packed[diagonal] = 40.0
    layer.r.assign(packed)
    tilde = layer.r_tilde.numpy()
    tilde[diagonal] = -40.0  # tanh(40) tanh(-40) rounds to -1: the bound itself
    layer.r_tilde.assign(tilde)
    *_, p = layer.bijector().constrained(tf.float64)
    assert np.all(p.numpy() > 0)  # 1 + R_ii R~_ii, computed without cancelling
    _round_trip_is_exact(layer, points(), atol=1e-4)


def _count_root_searches(monkeypatch):
    calls = []
    original = residual_1d.invert_increasing

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(residual_1d, "invert_increasing", counted)
    return calls


@pytest.fixture
def eager_functions():
    """The flow's traced methods run eagerly, so every root search is counted."""
    tf.config.run_functions_eagerly(True)
    yield
    tf.config.run_functions_eagerly(False)


def test_sampling_and_scoring_the_samples_runs_no_root_search(monkeypatch, eager_functions):
    keras.utils.set_random_seed(0)
    flow = kflows.Flow(
        [kflows.Planar(), kflows.Radial(), kflows.Sylvester(num_reflections=2)], event_dim=3
    )
    perturb(flow, scale=0.3)
    calls = _count_root_searches(monkeypatch)
    samples, log_prob = flow.sample_and_log_prob(8, seed=1)
    flow.sample(8, seed=1)
    with tf.GradientTape() as tape:  # the ELBO's gradient: still none
        _, log_q = flow.distribution().experimental_sample_and_log_prob(8, seed=(1, 2))
        loss = tf.reduce_mean(log_q)
    assert all(g is not None for g in tape.gradient(loss, flow.trainable_variables))
    assert calls == []
    scored = flow.log_prob(tf.identity(samples))
    assert len(calls) == 1 + 1 + 3  # planar, radial, then one per Sylvester coordinate
    np.testing.assert_allclose(log_prob, scored, atol=1e-4)


@pytest.mark.parametrize("builder", ["planar", "radial", "sylvester"])
def test_sample_and_log_prob_equals_log_prob_of_the_samples(builder):
    keras.utils.set_random_seed(0)
    flow = getattr(kflows, builder)(num_layers=3, event_dim=3, dtype="float64")
    perturb(flow, scale=0.4)
    samples, log_prob = flow.sample_and_log_prob(64, seed=3)
    np.testing.assert_allclose(log_prob, flow.log_prob(tf.identity(samples)), atol=1e-9)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_nan_in_nan_out(name):
    flow, layer = built(name, dtype="float32")
    x = points().numpy().astype(np.float32)
    x[1, 2] = np.nan
    for direction in (layer.bijector().forward, layer.bijector().inverse):
        out = direction(tf.constant(x)).numpy()
        assert np.all(np.isnan(out[1])) and np.all(np.isfinite(np.delete(out, 1, axis=0)))
    log_prob = flow.log_prob(x).numpy()
    assert np.isnan(log_prob[1]) and np.all(np.isfinite(np.delete(log_prob, 1)))


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_identity_at_initialisation_with_a_context(name):
    keras.utils.set_random_seed(0)
    layer = FAMILIES[name]("float64")
    flow = kflows.Flow([layer], event_dim=DIM, context_dim=2, dtype="float64")
    x, c = points(), points(dim=2, seed=2)
    np.testing.assert_array_equal(layer.bijector(c).forward(x), x)
    base = tfp.distributions.MultivariateNormalDiag(tf.zeros(DIM, tf.float64))
    np.testing.assert_allclose(flow.log_prob(x, c), base.log_prob(x), atol=1e-12)


def test_the_hypernetwork_is_built_only_with_a_context():
    plain = kflows.planar(num_layers=2, event_dim=2)
    assert not any(hasattr(layer, "conditioner") for layer in plain.flow_layers)
    with pytest.raises(ValueError, match="built without a context"):
        plain.flow_layers[0].bijector(tf.zeros((1, 3))).forward(tf.zeros((1, 2)))
    amortised = kflows.planar(num_layers=2, hidden_units=(8,), event_dim=2, context_dim=3)
    networks = [layer.conditioner for layer in amortised.flow_layers]
    assert [net.hidden_units for net in networks] == [(8,), (8,)]


def test_bad_arguments_are_refused():
    with pytest.raises(TypeError, match="num_reflections"):
        kflows.Sylvester(num_reflections=2.0)
    with pytest.raises(ValueError, match="rank"):
        kflows.Flow([kflows.Sylvester(rank=4)], event_dim=3)
    with pytest.raises(TypeError, match="conditioner"):
        kflows.Planar(conditioner="mlp")


def banana_log_prob(x):
    x1, x2 = x[..., 0], x[..., 1]
    return -0.5 * (x1 / 1.5) ** 2 - 0.5 * (x2 - 0.5 * (x1**2 - 2.25)) ** 2


def test_planar_flow_fits_a_banana_with_tfp_vi():
    keras.utils.set_random_seed(0)
    flow = kflows.planar(num_layers=4, event_dim=2)
    losses = tfp.vi.fit_surrogate_posterior(
        banana_log_prob,
        flow.distribution(),
        optimizer=keras.optimizers.Adam(1e-2),
        num_steps=200,
        sample_size=32,
        seed=(0, 1),
        jit_compile=False,
    ).numpy()
    assert np.all(np.isfinite(losses))
    # The negative ELBO falls: from N(0, I)'s -1.67 towards -log Z = -2.24 (at q = p).
    assert np.mean(losses[-50:]) < np.mean(losses[:10]) - 0.25
