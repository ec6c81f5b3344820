"""Block neural autoregressive flows: the structure the generic checks cannot see."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import make_flow, perturb

import kflows
from kflows.bijectors.bnaf import block_masks, block_weight


def _bnaf(dim=4, dtype="float64", context_dim=None, hidden_units=(3, 2), seed=0):
    keras.utils.set_random_seed(seed)  # the initializers draw from the global seed
    flow = kflows.Flow(
        [kflows.BlockNeuralAutoregressive(hidden_units, dtype=dtype)],
        context_dim=context_dim,
        event_dim=dim,
        dtype=dtype,
    )
    perturb(flow, seed=seed)
    return flow, flow.flow_layers[0]


def _jacobian(bijector, x):
    with tf.GradientTape() as tape:
        tape.watch(x)
        z = bijector.inverse(x)
    return tape.batch_jacobian(z, x).numpy()


def test_masks_are_block_triangular():
    diagonal, earlier = block_masks(3, 2, 4)
    assert diagonal.shape == earlier.shape == (6, 12)
    rows = np.arange(6)[:, None] // 2
    cols = np.arange(12)[None, :] // 4
    np.testing.assert_array_equal(diagonal, rows == cols)
    np.testing.assert_array_equal(earlier, rows < cols)
    # The weight is positive on the diagonal blocks and zero after them, with or without
    # weight normalisation.
    kernel = tf.constant(np.random.default_rng(0).normal(size=(6, 12)))
    for log_scale in (None, tf.constant(np.linspace(-1.0, 1.0, 12))):
        weight, log_diagonal = block_weight(kernel, log_scale, 3, 2, 4)
        weight = weight.numpy()
        assert (weight[diagonal] > 0).all()
        np.testing.assert_array_equal(weight[~(diagonal | earlier)], 0.0)
        blocks = weight.reshape(3, 2, 3, 4)
        for d in range(3):
            np.testing.assert_allclose(np.exp(log_diagonal[d]), blocks[d, :, d, :], rtol=1e-12)


def test_weight_norm_gives_each_unit_its_scale():
    kernel = tf.constant(np.random.default_rng(1).normal(size=(4, 6)))
    log_scale = tf.constant(np.linspace(-2.0, 2.0, 6))
    weight, _ = block_weight(kernel, log_scale, 2, 2, 3)
    np.testing.assert_allclose(np.linalg.norm(weight, axis=0), np.exp(log_scale), rtol=1e-12)


def test_jacobian_is_triangular_with_positive_diagonal_and_log_det_matches_slogdet():
    _, layer = _bnaf()
    x = tf.constant(np.random.default_rng(2).normal(size=(5, 4)))
    bijector = layer.bijector()
    jacobian = _jacobian(bijector, x)
    np.testing.assert_array_equal(np.triu(jacobian, k=1), 0.0)  # z_j reads x_<=j only
    assert (np.diagonal(jacobian, axis1=1, axis2=2) > 0).all()
    sign, logdet = np.linalg.slogdet(jacobian)
    assert (sign > 0).all()
    ildj = layer.bijector().inverse_log_det_jacobian(x, event_ndims=1).numpy()
    np.testing.assert_allclose(ildj, logdet, atol=1e-10)


def test_sampling_inverts_the_network():
    _, layer = _bnaf(dim=3)
    u = tf.constant(3.0 * np.random.default_rng(3).normal(size=(32, 3)))
    x = layer.bijector().forward(u)
    np.testing.assert_allclose(layer.bijector().inverse(tf.identity(x)), u, atol=1e-10)
    # float32: the same accuracy the dtype allows.
    _, layer = _bnaf(dim=3, dtype="float32")
    u32 = tf.cast(u, tf.float32)
    x = layer.bijector().forward(u32)
    np.testing.assert_allclose(layer.bijector().inverse(tf.identity(x)), u32, atol=2e-5)


def test_nan_gives_nan():
    flow, layer = _bnaf(dim=3, dtype="float32")
    x = tf.constant([[0.1, np.nan, 0.3], [0.1, 0.2, 0.3]], tf.float32)
    assert np.isnan(flow.log_prob(x).numpy()[0]) and np.isfinite(flow.log_prob(x).numpy()[1])
    for direction in (layer.bijector().forward, layer.bijector().inverse):
        out = direction(x).numpy()
        assert np.isnan(out[0, 1:]).all()  # feature 1 and those after it read the NaN
        assert np.isfinite(out[1]).all()


def test_float32_is_finite_on_large_inputs():
    flow, layer = _bnaf(dim=2, dtype="float32")
    x = tf.constant([[1e4, -1e4], [-1e6, 3e6], [1e8, 0.0]], tf.float32)
    assert np.isfinite(flow.log_prob(x).numpy()).all()
    assert np.isfinite(layer.bijector().inverse_log_det_jacobian(x, 1).numpy()).all()
    u = tf.constant([[1e4, -1e4], [-1e6, 3e6]], tf.float32)
    bijector = layer.bijector()
    x = bijector.forward(u)
    assert np.isfinite(x.numpy()).all()
    assert np.isfinite(bijector.forward_log_det_jacobian(u, 1).numpy()).all()


def test_context_enters_zero_initialised_and_then_changes_the_density():
    keras.utils.set_random_seed(0)
    flow = kflows.Flow(
        [kflows.BlockNeuralAutoregressive((3,), dtype="float64")],
        context_dim=2,
        event_dim=2,
        dtype="float64",
    )
    x = tf.constant(np.random.default_rng(4).normal(size=(6, 2)))
    c = tf.constant(np.random.default_rng(5).normal(size=(6, 2)))
    np.testing.assert_allclose(flow.log_prob(x, c), flow.log_prob(x, c + 1.0))
    perturb(flow)
    assert not np.allclose(flow.log_prob(x, c), flow.log_prob(x, c + 1.0))
    # Monotone in x whatever the context: the Jacobian stays triangular and positive.
    jacobian = _jacobian(flow.flow_layers[0].bijector(c), x)
    np.testing.assert_array_equal(np.triu(jacobian, k=1), 0.0)
    assert (np.diagonal(jacobian, axis1=1, axis2=2) > 0).all()


def test_registry_entry_starts_random_and_proper():
    flow, layer = make_flow("bnaf", "float64", dim=2, perturbed=False)
    assert layer.initialisation == "random"
    x = tf.constant(np.random.default_rng(6).normal(size=(4, 2)))
    assert not np.allclose(layer.bijector().inverse(x), x)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"hidden_units": ()},
        {"hidden_units": (4, 0)},
        {"hidden_units": (True,)},
        {"hidden_units": 4},
        {"leak": 0.0},
        {"leak": "0.5"},
        {"steps": 2.5},
    ],
)
def test_bad_arguments_are_refused(kwargs):
    with pytest.raises((TypeError, ValueError), match="Expected"):
        kflows.BlockNeuralAutoregressive(**kwargs)


def test_builder():
    flow = kflows.bnaf(num_layers=3, hidden_units=(4,), event_dim=2)
    names = [type(layer).__name__ for layer in flow.flow_layers]
    assert names == ["BlockNeuralAutoregressive", "Reverse"] * 2 + ["BlockNeuralAutoregressive"]
    assert flow.flow_layers[0].hidden_units == (4,)
    with pytest.raises(TypeError, match="num_layers"):
        kflows.bnaf(num_layers=2.0)
