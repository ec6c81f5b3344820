"""The structures run their conditioner once per density evaluation, and stay exact."""

import numpy as np
import pytest
import tensorflow as tf
from helpers import data, make_flow

# Registry entries whose bijector is a one-pass structure, and the conditioner to count.
ONE_PASS = {"maf_affine": "made", "iaf_affine": "made", "coupling_half": "conditioner"}


def count_calls(layer, attr):
    """Wraps ``layer.<attr>.call`` to count the conditioner's passes."""
    net = getattr(layer, attr)
    calls = []
    original = net.call

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    net.call = counted
    return calls


@pytest.mark.parametrize("name", sorted(ONE_PASS))
def test_log_prob_runs_the_conditioner_once(name):
    flow, layer = make_flow(name)
    x, _ = data("float32", 3, n=8)
    calls = count_calls(layer, ONE_PASS[name])
    flow.log_prob(x)
    # A MAF's density is one pass; an IAF's takes one per feature (its slow direction),
    # and its log-det comes out of the last of them.
    assert len(calls) == (3 if name.startswith("iaf") else 1)
    calls.clear()
    flow.sample_and_log_prob(4, seed=1)
    assert len(calls) == (1 if name.startswith("iaf") else 3 if name.startswith("maf") else 1)


@pytest.mark.parametrize("name", sorted(ONE_PASS))
def test_log_det_alone_and_after_the_transform_agree(name):
    flow, layer = make_flow(name, dtype="float64")
    x, _ = data("float64", 3, n=8)
    # Log-det asked first (cache empty), then after the transform (cache hit): both
    # directions, on fresh bijectors so that no earlier call is cached.
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


@pytest.mark.parametrize("name", sorted(ONE_PASS))
def test_sample_and_log_prob_matches_log_prob(name):
    flow, _ = make_flow(name, dtype="float64")
    samples, log_prob = flow.sample_and_log_prob(16, seed=3)
    np.testing.assert_allclose(log_prob, flow.log_prob(tf.identity(samples)), atol=1e-8)


def test_gradients_flow_through_the_cached_log_det():
    flow, _ = make_flow("maf_affine")
    x, _ = data("float32", 3, n=8)
    with tf.GradientTape() as tape:
        loss = -tf.reduce_mean(flow.log_prob(x))
    grads = tape.gradient(loss, flow.trainable_variables)
    assert all(g is not None and np.all(np.isfinite(g)) for g in grads)
    assert any(np.any(g.numpy() != 0) for g in grads)
