"""Mixed precision on every layer, and float64 end to end.

Under ``mixed_float16`` and ``mixed_bfloat16`` the conditioner networks compute in the low
precision; data, bijector maths, log-dets, base densities and the loss stay in float32
(kflows/_precision.py). The registry checks below run every layer under both policies
against the same layer in float32 with the same weights.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import data, make_flow
from registry import LAYERS, NO_CONTEXT

import kflows

POLICIES = ("mixed_float16", "mixed_bfloat16")
#: How far a low-precision network may move the median log-density (nats) at these small
#: weights: float16 keeps 11 significant bits, bfloat16 8. Single rows may move further (a
#: point by a spline's knot: one row by 1.2 nats in bfloat16), so the median is bounded.
MEDIAN_ATOL = {"mixed_float16": 0.01, "mixed_bfloat16": 0.1}
#: FFJORD's adjoint gradient takes 15-65 s on 2 cores, so its gradients are not checked here
#: (they were run by hand: finite, float32, under both policies; fit lowers its NLL in
#: float32 in tests/test_layers.py).
NO_GRADIENT_CHECK = {"ffjord"}


def _networks(layer):
    conditioner = getattr(layer, "conditioner", None)
    return [] if conditioner is None else [conditioner]


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layer_under_mixed_policy(name, policy):
    context_dim = None if name in NO_CONTEXT else 2
    reference, _ = make_flow(name, "float32", context_dim=context_dim)
    flow, layer = make_flow(name, policy, context_dim=context_dim)
    for ours, theirs in zip(flow.get_weights(), reference.get_weights(), strict=True):
        np.testing.assert_array_equal(ours, theirs)  # same weights, stored in float32
    assert all(w.dtype in ("float32", "bool") for w in flow.weights)
    x, c = data("float32", 3, context_dim)

    log_prob = flow.log_prob(x, c)
    assert log_prob.dtype == tf.float32
    error = np.abs(log_prob.numpy() - reference.log_prob(x, c).numpy())
    networks = _networks(layer)
    if networks:
        # The networks compute in the low precision (so the log-density moves a little)...
        compute = keras.dtype_policies.get(policy).compute_dtype
        assert all(net.compute_dtype == compute for net in networks)
        assert 0 < np.max(error) and np.median(error) < MEDIAN_ATOL[policy], error
    else:
        # ... and everything else runs in float32: no network, no difference at all.
        assert np.max(error) == 0, error

    bijector = layer.bijector(c)
    for value in (bijector.forward(x), bijector.inverse(x)):
        assert value.dtype == tf.float32 and np.isfinite(value.numpy()).all()
    sample = flow.sample(4, context=None if c is None else c[0], seed=0)
    assert sample.dtype == tf.float32 and np.isfinite(sample.numpy()).all()

    if name in NO_GRADIENT_CHECK:
        return
    with tf.GradientTape() as tape:
        loss = -tf.reduce_mean(flow.log_prob(x, c, training=True))
    grads = tape.gradient(loss, flow.trainable_variables)
    for var, grad in zip(flow.trainable_variables, grads, strict=True):
        assert grad is not None and grad.dtype == tf.float32, var.path
        assert np.isfinite(grad.numpy()).all(), var.path


@pytest.mark.parametrize("policy", POLICIES)
def test_global_policy_fit_save_and_export(policy, tmp_path):
    """The issue's case: set the global policy, build, fit, save, reload and export."""
    x = kflows.data.two_moons(512, seed=0)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        flow = kflows.maf(num_layers=2, hidden_units=(16,), event_dim=2)
        flow.compile(optimizer=keras.optimizers.Adam(5e-3))
    finally:
        keras.config.set_dtype_policy(previous)
    assert flow.dtype_policy.name == policy
    # Keras scales the loss under float16 (small gradients would underflow), not bfloat16.
    scaled = isinstance(flow.optimizer, keras.optimizers.LossScaleOptimizer)
    assert scaled == (policy == "mixed_float16")
    history = flow.fit(x, epochs=3, batch_size=128, verbose=0).history["loss"]
    assert np.isfinite(history).all() and history[-1] < history[0]
    assert flow.evaluate(x, verbose=0, return_dict=True)["loss"] < history[0]

    expected = flow.log_prob(x[:8]).numpy()
    flow.save(tmp_path / "flow.keras")
    loaded = kflows.load(tmp_path / "flow.keras")
    assert loaded.dtype_policy.name == policy
    np.testing.assert_array_equal(loaded.log_prob(x[:8]).numpy(), expected)

    served = tf.saved_model.load(flow.export(tmp_path / "export"))
    out = served.signatures["log_prob"](x=tf.constant(x[:8], tf.float32))
    assert out["log_prob"].dtype == tf.float32
    # A graph may order the low-precision network's sums differently from eager code.
    atol = {"mixed_float16": 2e-3, "mixed_bfloat16": 2e-2}[policy]
    np.testing.assert_allclose(out["log_prob"].numpy(), expected, atol=atol)


def test_inputs_in_low_precision_are_accepted():
    flow = kflows.realnvp(num_layers=1, hidden_units=(8,), event_dim=2, dtype="mixed_bfloat16")
    x = kflows.data.two_moons(64, seed=1)
    for low in (tf.bfloat16, tf.float16):
        log_prob = flow.log_prob(tf.cast(x, low))
        assert log_prob.dtype == tf.float32
        expected = flow.log_prob(tf.cast(tf.cast(x, low), tf.float32))
        np.testing.assert_array_equal(log_prob.numpy(), expected.numpy())
    flow.compile()
    flow.fit(tf.cast(x, tf.bfloat16), epochs=1, batch_size=32, verbose=0)


# ---------------------------------------------------------------------- float64
BASES = {
    "standard_normal": lambda: None,
    "diagonal_normal": kflows.DiagonalNormal,
    "student_t": lambda: kflows.StudentT(df=5.0, learn_df=True),
    "gaussian_mixture": lambda: kflows.GaussianMixture(3),
    "fixed_spec": lambda: kflows.Fixed({"name": "Laplace", "params": {"loc": 0.0, "scale": 1.0}}),
}


@pytest.mark.parametrize("base", sorted(BASES))
def test_float64_flow_gives_its_dtype_to_its_base(base):
    flow = kflows.maf(num_layers=1, hidden_units=(8,), base=BASES[base](), dtype="float64")
    x = kflows.data.two_moons(64, seed=2)
    log_prob = flow.log_prob(x)
    assert flow.base.dtype_policy.name == "float64"
    assert log_prob.dtype == tf.float64
    assert all(w.dtype in ("float64", "bool") for w in flow.weights)
    assert flow.sample(3, seed=0).dtype == tf.float64


def test_built_base_of_another_dtype_is_refused():
    base = kflows.DiagonalNormal()
    base.build((2,))
    with pytest.raises(ValueError, match="float64.*built in 'float32'"):
        kflows.Flow([kflows.MaskedAutoregressive(dtype="float64")], base=base)


@pytest.mark.slow
@pytest.mark.parametrize("builder", ["maf", "realnvp", "nsf", "nsf_coupling", "glow", "ffjord"])
def test_every_builder_trains_in_float64_on_float64_data(builder):
    """float64 end to end: Keras' array adapter would round the data to float32."""
    rng = np.random.default_rng(0)
    # Rows that differ below float32's resolution: they must reach the flow distinct.
    x = 1.0 + rng.standard_normal((128, 2)) * 1e-9
    flow = getattr(kflows, builder)(
        num_layers=1, hidden_units=(8,), base=kflows.DiagonalNormal(), dtype="float64"
    )
    flow.compile(optimizer=keras.optimizers.Adam(1e-3))
    history = flow.fit(x, epochs=2, batch_size=64, verbose=0, shuffle=False).history["loss"]
    assert np.isfinite(history).all()
    assert flow.log_prob(x).dtype == tf.float64
    # The loss fit reports is the float64 data's, not that of the data rounded to float32.
    np.testing.assert_allclose(
        flow.evaluate(x, verbose=0, batch_size=64, return_dict=True)["loss"],
        -np.mean(flow.log_prob(x).numpy()),
        rtol=1e-12,
    )
