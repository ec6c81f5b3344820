"""FFJORD specifics: the Hutchinson estimator, solvers, options, training."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import perturb

import kflows

# Loose tolerances keep these tests quick; none of them needs a precise solve.
TOL = dict(rtol=1e-4, atol=1e-4)


def twin_layers(dim=3, context_dim=None, **hutchinson):
    """An exact-trace and a Hutchinson FFJORD layer with the same (perturbed) weights."""
    keras.utils.set_random_seed(0)  # the same initial weights on every run
    exact = kflows.FFJORD(conditioner={"hidden_units": (8,)}, dtype="float64", **TOL)
    stochastic = kflows.FFJORD(
        conditioner={"hidden_units": (8,)}, trace="hutchinson", dtype="float64", **TOL, **hutchinson
    )
    context_shape = None if context_dim is None else (None, context_dim)
    for layer in (exact, stochastic):
        layer.build((None, dim), context_shape)
    perturb(exact, scale=0.5, seed=0)
    stochastic.set_weights(exact.get_weights())
    return exact, stochastic


@pytest.mark.parametrize("noise", ["rademacher", "gaussian"])
def test_hutchinson_log_det_is_unbiased(noise):
    exact, stochastic = twin_layers(noise=noise, seed=0)
    point = np.random.default_rng(1).standard_normal((1, 3))
    # Every row gets its own probes, so 512 copies of one point are 512 independent draws.
    x = tf.constant(np.repeat(point, 512, axis=0))
    true = exact.bijector().forward_log_det_jacobian(x[:1], event_ndims=1).numpy()[0]
    estimates = stochastic.bijector().forward_log_det_jacobian(x, event_ndims=1).numpy()
    assert estimates.std() > 1e-3  # really stochastic
    standard_error = estimates.std() / np.sqrt(len(estimates))
    assert abs(estimates.mean() - true) < 4 * standard_error
    # The map itself does not depend on the probes, up to the solver's step choices: the
    # adaptive steps differ with the augmented state, each within rtol = atol = 1e-4.
    np.testing.assert_allclose(
        stochastic.bijector().forward(x[:1]), exact.bijector().forward(x[:1]), atol=2e-3
    )


def test_hutchinson_seed_makes_estimates_reproducible():
    _, seeded = twin_layers(seed=3)
    x = tf.constant(np.random.default_rng(1).standard_normal((4, 3)))
    first = seeded.bijector().forward_log_det_jacobian(x, event_ndims=1)
    np.testing.assert_array_equal(
        seeded.bijector().forward_log_det_jacobian(x, event_ndims=1), first
    )
    seeded.seed = 4
    assert not np.allclose(seeded.bijector().forward_log_det_jacobian(x, event_ndims=1), first)
    _, unseeded = twin_layers(seed=None)
    a = unseeded.bijector().forward_log_det_jacobian(x, event_ndims=1)
    assert not np.allclose(unseeded.bijector().forward_log_det_jacobian(x, event_ndims=1), a)


def test_more_probes_give_a_closer_estimate():
    exact, _ = twin_layers()
    x = tf.constant(np.random.default_rng(2).standard_normal((64, 3)))
    true = exact.bijector().forward_log_det_jacobian(x, event_ndims=1)
    errors = []
    for num_probes in (1, 16):
        layer = kflows.FFJORD(
            conditioner={"hidden_units": (8,)},
            trace="hutchinson",
            num_probes=num_probes,
            seed=0,
            dtype="float64",
            **TOL,
        )
        layer.build((None, 3))
        layer.set_weights(exact.get_weights())
        estimate = layer.bijector().forward_log_det_jacobian(x, event_ndims=1)
        errors.append(float(tf.reduce_mean(tf.abs(estimate - true))))
    assert errors[1] < 0.5 * errors[0]


def test_bdf_solver_agrees_with_dormand_prince():
    # BDF is implicit (a Jacobian per step): keep this one small.
    exact, _ = twin_layers(dim=2)
    bdf = kflows.FFJORD(
        conditioner={"hidden_units": (8,)},
        solver="bdf",
        dtype="float64",
        **TOL,
    )
    bdf.build((None, 2))
    bdf.set_weights(exact.get_weights())
    x = tf.constant([[0.5, -1.0]], tf.float64)
    moved = exact.bijector().forward(x)
    assert np.abs(moved - x).max() > 0.05  # a comparison of two near-identities means little
    np.testing.assert_allclose(bdf.bijector().forward(x), moved, atol=2e-3)
    np.testing.assert_allclose(
        bdf.bijector().forward_log_det_jacobian(x, event_ndims=1),
        exact.bijector().forward_log_det_jacobian(x, event_ndims=1),
        atol=2e-3,
    )


def test_integration_time_and_solver_options_are_used():
    exact, _ = twin_layers()
    x = tf.constant(np.random.default_rng(4).standard_normal((4, 3)))
    longer = kflows.FFJORD(conditioner={"hidden_units": (8,)}, time=2.0, dtype="float64", **TOL)
    longer.build((None, 3))
    longer.set_weights(exact.get_weights())
    assert not np.allclose(longer.bijector().forward(x), exact.bijector().forward(x))
    capped = kflows.FFJORD(
        conditioner={"hidden_units": (8,)},
        solver_options={"max_num_steps": 1},
        dtype="float64",
        **TOL,
    )
    capped.build((None, 3))
    capped.set_weights(exact.get_weights())
    with pytest.raises(tf.errors.InvalidArgumentError):
        capped.bijector().forward(x)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"trace": "approximate"}, "trace"),
        ({"solver": "euler"}, "solver"),
        ({"solver_options": {"tolerance": 1e-3}}, "solver_options"),
        ({"rtol": 0.0}, "rtol"),
        ({"time": -1.0}, "time"),
        ({"num_probes": 0}, "num_probes"),
        ({"noise": "uniform"}, "noise"),
    ],
)
def test_bad_arguments_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        kflows.FFJORD(**kwargs)


@pytest.mark.slow
@pytest.mark.parametrize("trace", ["exact", "hutchinson"])
def test_fit_lowers_the_nll(trace):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((128, 2)) * 0.5 + [1.0, -1.0]).astype("float32")
    flow = kflows.ffjord(hidden_units=(16,), trace=trace, rtol=1e-3, atol=1e-3)
    flow.compile(optimizer=keras.optimizers.Adam(0.02))
    before = -flow.log_prob(x).numpy().mean()
    flow.fit(x, epochs=4, batch_size=64, verbose=0)
    assert -flow.log_prob(x).numpy().mean() < before - 0.1


def test_builder_passes_its_arguments_to_every_block():
    flow = kflows.ffjord(
        num_layers=2, hidden_units=(8,), trace="hutchinson", solver="bdf", rtol=1e-3, context_dim=2
    )
    assert [type(layer) for layer in flow.flow_layers] == [kflows.FFJORD] * 2
    config = flow.flow_layers[1].get_config()
    assert config["trace"] == "hutchinson" and config["solver"] == "bdf"
    assert config["rtol"] == 1e-3
    network = config["conditioner"]["config"]
    assert network["hidden_units"] == [8] and network["activation"] == "tanh"
    assert flow.context_dim == 2
    with pytest.raises(ValueError, match="num_layers"):
        kflows.ffjord(num_layers=0)


def test_context_is_required_once_built_with_one():
    layer = kflows.FFJORD(conditioner={"hidden_units": (8,)})
    layer.build((None, 2), (None, 1))
    with pytest.raises(ValueError, match="context"):
        layer.bijector()
