"""The rational-quadratic spline transform and the spline layers and builders."""

import json

import numpy as np
import pytest
import tensorflow as tf
from helpers import perturb

import kflows
from kflows import data, transforms


def test_spline_parameter_count_and_lookup():
    spline = transforms.get({"name": "spline", "bins": 6, "bound": 4.0})
    assert isinstance(spline, transforms.RationalQuadraticSpline)
    assert spline.num_params == 3 * 6 - 1
    assert transforms.get("spline") == transforms.RationalQuadraticSpline()
    config = json.loads(json.dumps(transforms.serialize(spline)))
    assert transforms.get(config) == spline


@pytest.mark.parametrize(
    "kwargs",
    [
        {"bins": 1},
        {"bins": 2.5},
        {"bound": 0.0},
        {"bins": 4, "min_bin_width": 0.3},
        {"min_slope": 1},
    ],
)
def test_spline_rejects_bad_hyperparameters(kwargs):
    with pytest.raises(ValueError, match="Expected"):
        transforms.RationalQuadraticSpline(**kwargs)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_zero_parameters_give_exactly_the_identity(dtype):
    spline = transforms.RationalQuadraticSpline(bins=7, bound=2.0, min_slope=0.01)
    x = tf.constant(np.linspace(-5.0, 5.0, 41).reshape(-1, 1), dtype)
    bij = spline.bijector(tf.zeros([41, 1, spline.num_params], dtype))
    atol = 1e-12 if dtype == "float64" else 1e-6
    np.testing.assert_allclose(bij.forward(x), x, atol=atol)
    np.testing.assert_allclose(bij.inverse(tf.identity(x)), x, atol=atol)
    np.testing.assert_allclose(bij.forward_log_det_jacobian(x, event_ndims=0), 0.0, atol=atol)


def _spline_coupling_flow(bound):
    layer = kflows.Coupling(
        transform={"name": "spline", "bins": 4, "bound": bound}, conditioner={"hidden_units": (8,)}
    )
    flow = kflows.Flow([layer])
    flow.build((None, 2))
    perturb(flow, scale=0.5)
    return flow, layer


def test_points_outside_the_bound_have_finite_values_and_gradients():
    bound = 3.0
    flow, layer = _spline_coupling_flow(bound)
    # Feature 0 conditions feature 1 (mask "half"); feature 1 takes the awkward values.
    far = [1e3, -1e3, bound, -bound, 1e20, -1e20, 0.5]
    x = tf.constant([[0.3, v] for v in far], tf.float32)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        bij = layer.bijector()
        outputs = {
            "forward": bij.forward(x),
            "inverse": bij.inverse(x),
            "fldj": bij.forward_log_det_jacobian(x, event_ndims=1),
            "ildj": bij.inverse_log_det_jacobian(x, event_ndims=1),
            "log_prob": flow.log_prob(x),
        }
        totals = {
            k: tf.reduce_sum(tf.where(tf.math.is_finite(v), v, 0.0)) for k, v in outputs.items()
        }
    for key, value in outputs.items():
        if key != "log_prob":  # the base density of 1e20 underflows to -inf, honestly
            assert np.all(np.isfinite(value.numpy())), key
        assert not np.any(np.isnan(value.numpy())), key
        grads = tape.gradient(totals[key], [x, *flow.trainable_variables])
        for g in grads:
            assert g is None or not np.any(np.isnan(tf.convert_to_tensor(g).numpy())), key
    # Identity (and zero log-det) at and beyond the bound.
    np.testing.assert_array_equal(outputs["forward"][:-1], x[:-1])
    np.testing.assert_array_equal(outputs["inverse"][:-1], x[:-1])
    np.testing.assert_array_equal(outputs["fldj"][:-1], 0.0)
    assert not np.isclose(outputs["forward"][-1, 1], 0.5)  # the spline acts inside


def test_spline_layers_round_trip_their_config():
    layer = kflows.Coupling(
        transform={"name": "spline", "bins": 5, "bound": 2.0},
        mask="alternate",
        conditioner={"hidden_units": (8,)},
    )
    assert layer.transform == transforms.RationalQuadraticSpline(bins=5, bound=2.0)
    config = json.loads(json.dumps(layer.get_config()))
    assert config["transform"]["config"]["bins"] == 5
    assert kflows.Coupling.from_config(config).get_config() == config
    maf = kflows.MaskedAutoregressive(
        transform={"name": "spline", "bins": 3},
        conditioner={"order": "random", "seed": 4, "hidden_units": (8,)},
    )
    config = json.loads(json.dumps(maf.get_config()))
    assert kflows.MaskedAutoregressive.from_config(config).get_config() == config
    assert config["conditioner"]["config"]["order"] == "random"


@pytest.mark.slow
def test_spline_flow_trains_on_data_with_outliers_without_nan():
    rng = np.random.default_rng(0)
    x = data.two_moons(480, seed=1)
    outliers = rng.choice([-50.0, 50.0], size=(32, 2)).astype(np.float32)
    x = rng.permutation(np.concatenate([x, outliers]))
    flow = kflows.nsf_coupling(num_layers=2, hidden_units=(16,), bins=4)
    flow.compile()
    history = flow.fit(x, epochs=2, batch_size=32, verbose=0)  # 32 steps
    losses = history.history["loss"]
    assert len(losses) == 2 and np.all(np.isfinite(losses))
    assert np.all(np.isfinite(flow.log_prob(x).numpy()))


@pytest.mark.slow
@pytest.mark.parametrize("builder", ["nsf", "nsf_coupling", "glow"])
def test_builders_make_flows_that_learn_two_moons(builder):
    train, test = data.split(data.two_moons(2000, seed=3), seed=0)
    flow = getattr(kflows, builder)(2, hidden_units=(16, 16))
    flow.compile()
    flow.build((None, 2))
    before = flow.evaluate(test, verbose=0, return_dict=True)["loss"]
    flow.fit(train, epochs=4, batch_size=64, verbose=0)
    after = flow.evaluate(test, verbose=0, return_dict=True)["loss"]
    assert np.isfinite(after) and after < before - 0.2
    assert flow.sample(5, seed=0).shape == (5, 2)


def test_spline_coupling_keeps_static_shapes_in_graph_mode():
    # RealNVP slices by the static event size; the spline must not lose it in a tf.function.
    flow = kflows.nsf_coupling(num_layers=2, hidden_units=(8,), bins=3)
    flow.build((None, 2))
    log_prob = tf.function(lambda x: flow.distribution().log_prob(x))
    x = data.two_moons(16)
    np.testing.assert_allclose(log_prob(tf.constant(x)), flow.log_prob(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("point", [0.0, 1.25, -1.25, 0.3])
def test_inverse_gradients_are_right_on_the_knots(point):
    """At initialisation the knots sit at 0 and +-bound/2, where TFP's inverse cuts its
    gradient; the inverse and its log-det must still match finite differences."""
    layer = kflows.Coupling(
        transform={"name": "spline", "bins": 4, "bound": 2.5}, mask="alternate", dtype="float64"
    )
    kflows.Flow([layer], dtype="float64").build((None, 2))
    bias = layer.conditioner.out.bias  # zero: uniform bins, knots on round numbers
    x = tf.Variable([[0.5, point]], dtype=tf.float64)

    def value():
        bijector = layer.bijector()
        y = tf.identity(x)
        return tf.reduce_sum(bijector.inverse(y)) + tf.reduce_sum(
            bijector.inverse_log_det_jacobian(y, event_ndims=1)
        )

    with tf.GradientTape() as tape:
        out = value()
    grads = tape.gradient(out, [x, bias])
    for var, grad in zip([x, bias], grads, strict=True):
        start = var.numpy().copy()
        numeric = np.zeros(start.size)
        for i in range(start.size):
            for sign in (1, -1):
                moved = start.copy().ravel()
                moved[i] += sign * 1e-6
                var.assign(moved.reshape(start.shape))
                numeric[i] += sign * value().numpy() / 2e-6
        var.assign(start)
        # A knot is a kink in the parameters: central differences err by ~step size there.
        np.testing.assert_allclose(grad.numpy().ravel(), numeric, atol=1e-5)
