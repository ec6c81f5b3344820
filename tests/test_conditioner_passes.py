"""Every layer with a conditioner runs it once per direction it is fast in, and stays exact.

The counts are the promise of ``fast_direction``: one network pass gives a layer's
transform and its log-det together (kflows.bijectors.OnePassBijector), so ``log_prob``
costs one pass per density-fast layer and sampling one per sampling-fast layer; the slow
direction of an autoregressive layer takes one pass per feature.
"""

import numpy as np
import pytest
import tensorflow as tf
from helpers import data, make_flow
from registry import LAYERS

DIM = 4
#: Registry layers with a conditioner network, FFJORD aside (an ODE solve calls it many times).
CONDITIONED = sorted(
    name
    for name, make in LAYERS.items()
    if hasattr(make("float32", DIM), "conditioner") and name != "ffjord"
)


def count_calls(layer):
    """Wraps ``layer.conditioner.call`` to count the conditioner's passes."""
    net = layer.conditioner
    calls = []
    original = net.call

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    net.call = counted
    return calls


def expected_passes(layer, direction):
    fast = layer.fast_direction in (direction, "both")
    if not fast and hasattr(layer, "fixed_point_iterations"):
        # A residual flow samples by fixed-point steps and Newton steps, then one pass for
        # the log-det.
        return layer.fixed_point_iterations + layer.newton_steps + 1
    return 1 if fast else DIM


def test_the_conditioned_layers_are_all_here():
    assert {"maf_affine", "iaf_affine", "coupling_half", "spline_coupling"} <= set(CONDITIONED)


@pytest.fixture
def eager_functions():
    """Runs ``tf.function``s eagerly: the flow's traced public methods (and the loops of
    the slow directions) then call the conditioner once per pass, which the test counts."""
    tf.config.run_functions_eagerly(True)
    yield
    tf.config.run_functions_eagerly(False)


@pytest.mark.parametrize("name", CONDITIONED)
def test_each_direction_runs_the_conditioner_as_its_fast_direction_says(name, eager_functions):
    flow, layer = make_flow(name, dim=DIM)
    x, _ = data("float32", DIM, n=8)
    calls = count_calls(layer)
    flow.log_prob(x)
    assert len(calls) == expected_passes(layer, "density")
    for draw in (flow.sample, flow.sample_and_log_prob):
        calls.clear()
        draw(4, seed=1)
        assert len(calls) == expected_passes(layer, "sampling"), draw.__name__
    calls.clear()
    with tf.GradientTape() as tape:
        loss = -tf.reduce_mean(flow.log_prob(x))
    tape.gradient(loss, flow.trainable_variables)
    assert len(calls) == expected_passes(layer, "density")


@pytest.mark.parametrize("name", CONDITIONED)
def test_log_det_alone_and_after_the_transform_agree(name):
    _, layer = make_flow(name, dtype="float64", dim=DIM)
    x, _ = data("float64", DIM, n=8)
    # Log-det asked first (nothing remembered), then after the transform (remembered):
    # both directions, on fresh bijectors.
    ildj_first = layer.bijector().inverse_log_det_jacobian(x, event_ndims=1)
    bij = layer.bijector()
    bij.inverse(x)
    ildj_after = bij.inverse_log_det_jacobian(x, event_ndims=1)
    fldj_first = layer.bijector().forward_log_det_jacobian(x, event_ndims=1)
    bij = layer.bijector()
    bij.forward(x)
    fldj_after = bij.forward_log_det_jacobian(x, event_ndims=1)
    np.testing.assert_allclose(ildj_first, ildj_after, rtol=1e-10)
    np.testing.assert_allclose(fldj_first, fldj_after, rtol=1e-10)


@pytest.mark.parametrize("name", CONDITIONED)
def test_sample_and_log_prob_matches_log_prob(name):
    flow, _ = make_flow(name, dtype="float64", dim=DIM)
    samples, log_prob = flow.sample_and_log_prob(16, seed=3)
    np.testing.assert_allclose(log_prob, flow.log_prob(tf.identity(samples)), atol=1e-8)
