"""Invertible residual flows: the Lipschitz bound, the log-det, the inverse, the state."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import perturb

import kflows
from kflows.bijectors.residual import exact_log_det, series_log_det


def _built_layer(dim, dtype="float64", scale=0.3, seed=0, **kwargs):
    keras.utils.set_random_seed(seed)
    layer = kflows.Residual(dtype=dtype, **kwargs)
    flow = kflows.Flow([layer], dtype=dtype)
    flow.build((None, dim))
    perturb(flow, scale=scale, seed=seed)
    return flow, layer


def _vectors(flow):
    return [v.numpy().copy() for v in flow.non_trainable_variables if "power_vector" in v.path]


def test_spectral_normalisation_bounds_the_lipschitz_constant_after_a_perturbation():
    coeff = 0.9
    _, layer = _built_layer(5, scale=3.0, conditioner={"hidden_units": (32, 32), "coeff": coeff})
    for kernel in layer.conditioner.normalized_kernels():
        norm = np.linalg.svd(kernel.numpy(), compute_uv=False)[0]
        assert coeff * 0.99 < norm <= coeff * 1.001
    g = layer.residual_function()
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, 512, 5))
    ratios = np.linalg.norm(g(a) - g(b), axis=-1) / np.linalg.norm(a - b, axis=-1)
    assert ratios.max() < coeff**3


def test_zero_kernels_leave_the_network_at_zero():
    net = kflows.networks.LipschitzMLP(hidden_units=(4,))
    net.set_output(2, 1)
    net.build((None, 2))
    assert [float(tf.reduce_max(tf.abs(k))) for k in net.normalized_kernels()][-1] == 0.0
    np.testing.assert_array_equal(net(tf.ones([3, 2])), 0.0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"activation": "relu"},
        {"coeff": 1.0},
        {"coeff": True},
        {"power_iterations": 0},
        {"power_iterations": 2.0},
    ],
)
def test_bad_network_arguments_are_refused(kwargs):
    with pytest.raises(ValueError, match="Expected"):
        kflows.networks.LipschitzMLP(**kwargs)


@pytest.mark.parametrize("kwargs", [{"fixed_point_iterations": 0}, {"num_terms": True}])
def test_bad_layer_arguments_are_refused(kwargs):
    with pytest.raises(ValueError, match="Expected"):
        kflows.Residual(**kwargs)


def test_exact_log_det_matches_slogdet():
    _, layer = _built_layer(4, conditioner={"hidden_units": (16,)})
    x = tf.constant(np.random.default_rng(1).standard_normal((6, 4)))
    g = layer.residual_function()
    with tf.GradientTape() as tape:
        tape.watch(x)
        z = x + g(x)
    expected = np.linalg.slogdet(tape.batch_jacobian(z, x).numpy())[1]
    value, log_det = exact_log_det(g, x, 4)
    np.testing.assert_allclose(value, g(x), rtol=1e-12)
    np.testing.assert_allclose(log_det, expected, rtol=1e-10, atol=1e-12)
    bijector = layer.bijector()
    assert bijector.exact
    np.testing.assert_allclose(bijector.inverse_log_det_jacobian(x, event_ndims=1), expected)


def test_series_estimate_is_within_its_standard_error_of_the_exact_log_det():
    # D = 20 > exact_max_dim: the layer estimates. Truncation bias at 30 terms with
    # L <= 0.9^2 is below 1e-3 here, far under the probes' standard error.
    dim = 20
    _, layer = _built_layer(dim, conditioner={"hidden_units": (32,), "coeff": 0.9})
    assert not layer.bijector().exact
    x = tf.constant(np.random.default_rng(2).standard_normal((4, dim)))
    g = layer.residual_function()
    exact = exact_log_det(g, x, dim)[1].numpy()
    # Each copy of a row gets its own probes: 40 independent estimates per point, one call.
    copies = 40
    tiled = tf.tile(x, [copies, 1])
    estimates = series_log_det(g, tiled, num_terms=30, num_probes=8, seed=0)[1].numpy()
    estimates = estimates.reshape(copies, len(x))
    mean = estimates.mean(0)
    standard_error = estimates.std(0, ddof=1) / np.sqrt(len(estimates))
    assert np.all(standard_error > 0)
    np.testing.assert_array_less(np.abs(mean - exact), 3 * standard_error)
    # The seed fixes the probes.
    np.testing.assert_array_equal(
        series_log_det(g, x, 30, 8, seed=3)[1], series_log_det(g, x, 30, 8, seed=3)[1]
    )


@pytest.mark.parametrize("dtype, tolerance", [("float32", 1e-5), ("float64", 1e-12)])
def test_fixed_point_iteration_converges(dtype, tolerance):
    _, layer = _built_layer(3, dtype=dtype, conditioner={"hidden_units": (16, 16)})
    z = tf.constant(2.0 * np.random.default_rng(3).standard_normal((64, 3)), dtype)
    x = layer.bijector().forward(z)
    residual = (x + layer.residual_function()(x) - z).numpy()
    assert np.abs(residual).max() < tolerance


def test_nan_in_gives_nan_out_and_leaves_other_rows_finite():
    flow, layer = _built_layer(3, dtype="float32", conditioner={"hidden_units": (8,)})
    x = tf.constant([[0.1, 0.2, 0.3], [np.nan, 0.0, 0.0]], tf.float32)
    log_prob = flow.log_prob(x).numpy()
    assert np.isfinite(log_prob[0]) and np.isnan(log_prob[1])
    bijector = layer.bijector()
    assert np.isnan(bijector.forward(x).numpy()[1]).any()
    assert np.isfinite(bijector.forward(x).numpy()[0]).all()


def test_power_vectors_update_in_fit_only_and_survive_a_keras_file(tmp_path):
    x = kflows.data.two_moons(256)
    flow = kflows.residual(num_layers=1, hidden_units=(16,), event_dim=2)
    perturb(flow)
    before = _vectors(flow)
    assert len(before) == 2
    flow.log_prob(x)
    flow.sample(8, seed=0)
    flow.compile(optimizer=keras.optimizers.Adam(1e-3))
    flow.evaluate(x, batch_size=128, verbose=0)
    for old, new in zip(before, _vectors(flow), strict=True):
        np.testing.assert_array_equal(old, new)
    flow.fit(x, epochs=1, batch_size=128, verbose=0)
    after = _vectors(flow)
    assert all(not np.allclose(old, new) for old, new in zip(before, after, strict=True))
    path = str(tmp_path / "residual.keras")
    flow.save(path)
    loaded = kflows.load(path)
    for saved, restored in zip(after, _vectors(loaded), strict=True):
        np.testing.assert_array_equal(saved, restored)
    np.testing.assert_allclose(loaded.log_prob(x[:16]), flow.log_prob(x[:16]), rtol=1e-6)


def test_series_log_det_trains():
    # Above exact_max_dim the loss is the estimate's; its gradients reach every weight.
    flow = kflows.residual(
        num_layers=1, hidden_units=(8,), exact_max_dim=2, num_terms=3, seed=0, event_dim=3
    )
    x = tf.constant(np.random.default_rng(4).standard_normal((32, 3)), tf.float32)
    flow.initialize(x)
    with tf.GradientTape() as tape:
        loss = -tf.reduce_mean(flow.log_prob(x))
    grads = tape.gradient(loss, flow.trainable_variables)
    assert all(g is not None and np.isfinite(g.numpy()).all() for g in grads)
