"""Elementwise: fixed named bijectors, bounded supports and density zero outside them."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import perturb

import kflows

#: name -> (params, points inside the data support, points outside it)
CASES = {
    "sigmoid": ({"low": 0.0, "high": 1.0}, [0.02, 0.5, 0.97], [-0.5, 1.5, 0.0, 1.0]),
    "sigmoid_shifted": ({"low": 2.0, "high": 5.0}, [2.1, 3.0, 4.9], [1.0, 6.0, 2.0, 5.0]),
    "tanh": ({}, [-0.9, 0.0, 0.6], [-1.0, 1.0, 3.0]),
    "softplus": ({"hinge_softness": 0.5}, [0.01, 1.0, 7.0], [-1.0, 0.0]),
    "exp": ({}, [0.01, 1.0, 7.0], [-1.0, 0.0]),
    "shift": ({"shift": 1.5}, [-3.0, 0.0, 4.0], []),
    "scale": ({"scale": -2.0}, [-3.0, 0.0, 4.0], []),
    "sinh_arcsinh": ({"skewness": 0.5, "tailweight": 0.7}, [-3.0, 0.0, 4.0], []),
}


def _layer(case, dtype="float32"):
    params = CASES[case][0]
    return kflows.Elementwise(case.split("_shifted")[0], params, dtype=dtype)


@pytest.mark.parametrize("case", sorted(CASES))
def test_log_det_matches_autodiff_inside_the_support(case):
    layer = _layer(case, "float64")
    x = tf.constant(np.array(CASES[case][1])[:, None] * np.ones(2), tf.float64)
    bij = layer.bijector()
    with tf.GradientTape() as tape:
        tape.watch(x)
        u = bij.inverse(x)
    _, expected = tf.linalg.slogdet(tape.batch_jacobian(u, x))
    np.testing.assert_allclose(bij.inverse_log_det_jacobian(x, event_ndims=1), expected, atol=1e-8)
    np.testing.assert_allclose(bij.forward(tf.identity(u)), x, rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("case", sorted(c for c in CASES if CASES[c][2]))
def test_log_prob_is_minus_inf_outside_the_support_never_nan(case):
    _, inside, outside = CASES[case]
    flow = kflows.Flow(
        [_layer(case), kflows.MaskedAutoregressive(conditioner={"hidden_units": (8,)})]
    )
    flow.build((None, 2))
    perturb(flow)
    x = tf.constant(
        [[a, b] for a in inside + outside for b in inside[:1] + outside[:1]], tf.float32
    )
    with tf.GradientTape() as tape:
        log_prob = flow.log_prob(x)
        total = tf.reduce_sum(tf.where(tf.math.is_finite(log_prob), log_prob, 0.0))
    lp = log_prob.numpy()
    # The same in a compiled graph, as in fit/evaluate.
    compiled = tf.function(lambda x: flow.distribution().log_prob(x), jit_compile=True)
    # atol: float32 sums of O(1) terms round at ~1e-6 whatever the result, and a log-density
    # near 0 (unseeded initial weights make one now and then) has no relative precision.
    np.testing.assert_allclose(compiled(x), lp, rtol=1e-5, atol=1e-5)
    x_np = x.numpy()
    out = np.isin(x_np, outside).any(axis=1)
    assert np.all(np.isfinite(lp[~out]))
    assert np.all(lp[out] == -np.inf)
    for grad in tape.gradient(total, flow.trainable_variables):
        assert np.all(np.isfinite(tf.convert_to_tensor(grad).numpy()))


def test_samples_lie_in_the_support_and_the_flow_saves(tmp_path):
    flow = kflows.Flow(
        [
            kflows.Elementwise("sigmoid", {"low": 2.0, "high": 5.0}),
            kflows.Coupling(conditioner={"hidden_units": (8,)}),
        ]
    )
    flow.build((None, 2))
    samples = flow.sample(200, seed=0).numpy()
    assert np.all((samples > 2.0) & (samples < 5.0))
    path = str(tmp_path / "bounded.keras")
    flow.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(loaded.log_prob(samples), flow.log_prob(samples))


@pytest.mark.parametrize("case", sorted(CASES))
def test_config_is_json_and_round_trips(case):
    layer = _layer(case)
    config = json.loads(json.dumps(layer.get_config()))
    assert set(config["params"]) == set(CASES[case][0]) or not CASES[case][0]
    clone = kflows.Elementwise.from_config(config)
    x = tf.constant([CASES[case][1][:2]], tf.float32)
    np.testing.assert_array_equal(clone.bijector().inverse(x), layer.bijector().inverse(x))


def test_bad_names_and_params_are_clear_errors():
    with pytest.raises(ValueError, match="'exp'.*'sigmoid'"):
        kflows.Elementwise("logit")
    with pytest.raises(ValueError, match="hinge_softness"):
        kflows.Elementwise("softplus", {"softness": 1.0})
    with pytest.raises(ValueError, match="low < high"):
        kflows.Elementwise("sigmoid", {"low": 1.0, "high": 0.0})
    with pytest.raises(ValueError, match="scale != 0"):
        kflows.Elementwise("scale", {"scale": 0})
    with pytest.raises(TypeError, match="number"):
        kflows.Elementwise("shift", {"shift": "1"})
