"""Generic checks, run over every layer of the registry (tests/registry.py)."""

import json
import pickle

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import data, make_flow
from registry import (
    LAYERS,
    NO_CONTEXT,
    NOT_IDENTITY_AT_INIT,
    NOT_PICKLABLE,
    SET_AT_INIT,
)

import kflows
from kflows import diagnostics

NAMES = sorted(LAYERS)
CONTEXT = [None, 2]


@pytest.mark.parametrize("name", NAMES)
def test_output_shapes(name):
    flow, layer = make_flow(name)
    x, _ = data("float32", 3, n=5)
    bij = layer.bijector()
    assert bij.forward(x).shape == (5, 3)
    assert bij.inverse(x).shape == (5, 3)
    # Volume-preserving bijectors may return a scalar log-det that broadcasts.
    fldj_shape = tuple(bij.forward_log_det_jacobian(x, event_ndims=1).shape)
    assert fldj_shape in ((), (5,))
    assert flow.log_prob(x).shape == (5,)
    assert flow.sample(4, seed=0).shape == (4, 3)


@pytest.mark.parametrize("context_dim", CONTEXT)
@pytest.mark.parametrize("name", NAMES)
def test_round_trip(name, context_dim):
    _, layer = make_flow(name, "float64", context_dim=context_dim)
    x, c = data("float64", 3, context_dim)
    bij = layer.bijector(c)
    # The diagnostics' check (kflows.diagnostics.check runs it on user data).
    for direction in ("forward", "inverse"):
        errors = diagnostics.round_trip_error(bij, x, direction)
        assert errors.shape == (16,)
        np.testing.assert_array_less(errors, 1e-6)


@pytest.mark.parametrize("context_dim", CONTEXT)
@pytest.mark.parametrize("name", NAMES)
def test_forward_log_det_is_minus_inverse(name, context_dim):
    _, layer = make_flow(name, "float64", context_dim=context_dim)
    x, c = data("float64", 3, context_dim)
    bij = layer.bijector(c)
    y = tf.identity(bij.forward(x))
    fldj = bij.forward_log_det_jacobian(x, event_ndims=1)
    ildj = bij.inverse_log_det_jacobian(y, event_ndims=1)
    np.testing.assert_allclose(fldj, -ildj, atol=1e-6)


@pytest.mark.parametrize("context_dim", CONTEXT)
@pytest.mark.parametrize("name", NAMES)
def test_log_det_matches_autodiff_jacobian(name, context_dim):
    _, layer = make_flow(name, "float64", context_dim=context_dim)
    x, c = data("float64", 3, context_dim, n=8)
    for direction in ("forward", "inverse"):
        errors = diagnostics.log_det_error(layer.bijector(c), x, direction)
        assert errors.shape == (8,)
        np.testing.assert_array_less(errors, 1e-6)


@pytest.mark.parametrize("name", sorted(set(NAMES) - NOT_IDENTITY_AT_INIT - SET_AT_INIT))
def test_identity_at_initialisation(name):
    _, layer = make_flow(name, perturbed=False)
    x, _ = data("float32", 3)
    bij = layer.bijector()
    np.testing.assert_allclose(bij.forward(x), x, atol=1e-6)
    np.testing.assert_allclose(bij.forward_log_det_jacobian(x, event_ndims=1), 0.0, atol=1e-6)


@pytest.mark.parametrize("name", sorted(NOT_IDENTITY_AT_INIT))
def test_fixed_permutations_have_zero_log_det(name):
    _, layer = make_flow(name, perturbed=False)
    x, _ = data("float32", 3)
    bij = layer.bijector()
    assert not np.allclose(bij.forward(x), x)
    np.testing.assert_allclose(bij.forward_log_det_jacobian(x, event_ndims=1), 0.0)


@pytest.mark.parametrize("name", NAMES)
def test_density_integrates_to_one_in_2d(name):
    flow, _ = make_flow(name, "float64", dim=2)
    grid = np.linspace(-9.0, 9.0, 601)
    xx, yy = np.meshgrid(grid, grid)
    points = np.stack([xx.ravel(), yy.ravel()], axis=1)
    density = np.exp(flow.log_prob(points).numpy())
    step = grid[1] - grid[0]
    assert abs(density.sum() * step * step - 1.0) < 1e-2


@pytest.mark.parametrize("name", NAMES)
def test_config_round_trip(name):
    flow, layer = make_flow(name)
    config = json.loads(json.dumps(layer.get_config()))  # JSON only
    clone = type(layer).from_config(config)
    clone.build((None, 3))
    clone.set_weights(layer.get_weights())
    x, _ = data("float32", 3)
    np.testing.assert_allclose(clone.bijector().inverse(x), layer.bijector().inverse(x), atol=1e-6)
    flow_config = json.loads(json.dumps(flow.get_config()))
    assert kflows.Flow.from_config(flow_config).get_config() == flow_config


@pytest.mark.parametrize("name", NAMES)
def test_keras_file_round_trip(name, tmp_path):
    flow, _ = make_flow(name)
    x, _ = data("float32", 3)
    path = str(tmp_path / "flow.keras")
    flow.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(loaded.log_prob(x), flow.log_prob(x))
    np.testing.assert_array_equal(loaded.sample(7, seed=5), flow.sample(7, seed=5))


@pytest.mark.parametrize("name", sorted(set(NAMES) - NO_CONTEXT))
def test_context_changes_the_density(name):
    flow, layer = make_flow(name, context_dim=2)
    x, c = data("float32", 3, 2)
    lp = flow.log_prob(x, c)
    assert not np.allclose(lp, flow.log_prob(x, c + 1.0))
    samples = flow.sample(4, context=c[:3], seed=0)
    assert samples.shape == (4, 3, 3)


@pytest.mark.parametrize("context_dim", CONTEXT)
@pytest.mark.parametrize("name", NAMES)
def test_bijector_exposes_the_layer_variables(name, context_dim):
    _, layer = make_flow(name, context_dim=context_dim)
    _, c = data("float32", 3, context_dim)
    expected = {id(v.value) for v in layer.trainable_variables}
    assert {id(v) for v in layer.bijector(c).trainable_variables} == expected
    every = {id(v.value) for v in layer.variables if v.dtype != "bool"}
    assert every <= {id(v) for v in layer.bijector(c).variables}


@pytest.mark.parametrize("name", NAMES)
def test_distribution_is_live_and_gradients_reach_every_weight(name):
    flow, layer = make_flow(name, context_dim=None if name in NO_CONTEXT else 2)
    x, c = data("float32", 3, flow.context_dim)
    dist = flow.distribution(c)
    with tf.GradientTape() as tape:
        loss = -tf.reduce_mean(dist.log_prob(x))
    grads = tape.gradient(loss, dist.trainable_variables)
    assert all(g is not None and np.abs(g.numpy()).sum() > 0 for g in grads)
    before = dist.log_prob(x).numpy()
    for v in layer.trainable_variables:
        v.assign(v + 0.1)
    if layer.trainable_variables:
        assert not np.allclose(dist.log_prob(x), before)  # the same object sees new weights


@pytest.mark.parametrize("name", NAMES)
def test_tf_checkpoint_round_trip(name, tmp_path):
    flow, _ = make_flow(name)
    path = tf.train.Checkpoint(flow=flow).write(str(tmp_path / "ckpt"))
    fresh, _ = make_flow(name, seed=1)
    fresh.set_weights([np.zeros_like(w) for w in fresh.get_weights()])
    status = tf.train.Checkpoint(flow=fresh).read(path)
    status.assert_existing_objects_matched()
    for a, b in zip(flow.weights, fresh.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


@pytest.mark.parametrize("name", sorted(set(NAMES) - NOT_PICKLABLE))
def test_bijector_pickles(name):
    _, layer = make_flow(name, context_dim=None if name in NO_CONTEXT else 2)
    x, c = data("float32", 3, None if name in NO_CONTEXT else 2)
    bij = layer.bijector(c)
    copy = pickle.loads(pickle.dumps(bij))
    np.testing.assert_allclose(copy.inverse(x), bij.inverse(tf.identity(x)), atol=1e-6)


#: A larger event size: at D <= 3 a wrong permutation can undo itself, and a coupling's
#: kept and transformed sets are too small to tell a swapped index from a right one.
LARGE_DIM = 7


@pytest.mark.parametrize("name", NAMES)
def test_round_trip_and_log_det_at_a_larger_dim(name):
    _, layer = make_flow(name, "float64", dim=LARGE_DIM)
    x, _ = data("float64", LARGE_DIM, n=6, seed=4)
    bij = layer.bijector()
    y = bij.forward(x)
    np.testing.assert_array_less(diagnostics.round_trip_error(layer.bijector(), x, "forward"), 1e-6)
    errors = diagnostics.log_det_error(layer.bijector(), tf.identity(y), "inverse")
    np.testing.assert_array_less(errors, 1e-6)
    ildj = layer.bijector().inverse_log_det_jacobian(tf.identity(y), event_ndims=1)
    fldj = layer.bijector().forward_log_det_jacobian(x, event_ndims=1)
    np.testing.assert_allclose(fldj, -ildj, atol=1e-6)


@pytest.mark.parametrize("name", sorted(n for n in NAMES if n.startswith("coupling")))
def test_coupling_passes_its_kept_features_through_unchanged(name):
    _, layer = make_flow(name, "float64", dim=LARGE_DIM)
    x, _ = data("float64", LARGE_DIM, n=6, seed=5)
    keep = np.flatnonzero(layer._keep)
    for direction in (layer.bijector().forward, layer.bijector().inverse):
        out = direction(x).numpy()
        np.testing.assert_array_equal(out[:, keep], x.numpy()[:, keep])
        changed = np.setdiff1d(np.arange(LARGE_DIM), keep)
        assert not np.allclose(out[:, changed], x.numpy()[:, changed])
