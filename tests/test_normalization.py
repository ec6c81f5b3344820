"""ActNorm, BatchNorm and Standardize: data-dependent statistics and their log-dets."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import kflows

MEAN = np.array([3.0, -2.0])
STD = np.array([0.5, 4.0])


def _data(n=512, seed=0, dtype="float64"):
    rng = np.random.default_rng(seed)
    return (MEAN + STD * rng.standard_normal((n, 2))).astype(dtype)


def _autodiff_log_det(fn, x):
    x = tf.identity(x)  # a fresh tensor: no bijector-cache hit, so the tape sees fn
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = fn(x)
    return tf.linalg.slogdet(tape.batch_jacobian(y, x))[1]


# ---------------------------------------------------------------- ActNorm
def test_actnorm_initialises_to_zero_mean_unit_variance(tmp_path):
    x = _data()
    flow = kflows.Flow([kflows.ActNorm(dtype="float64")], dtype="float64")
    flow.build((None, 2))
    layer = flow.flow_layers[0]
    assert flow.needs_data_init
    np.testing.assert_allclose(layer.bijector().inverse(x), x)  # the identity before init
    flow.initialize(x)
    assert not flow.needs_data_init
    u = layer.bijector().inverse(x).numpy()
    np.testing.assert_allclose(u.mean(0), 0.0, atol=1e-10)
    np.testing.assert_allclose(u.std(0), 1.0, atol=1e-10)
    # The initialised flag is saved: a reloaded flow is not initialised again.
    path = str(tmp_path / "actnorm.keras")
    flow.save(path)
    loaded = keras.models.load_model(path)
    assert not loaded.needs_data_init
    np.testing.assert_array_equal(loaded.flow_layers[0].bijector().inverse(x), u)


def test_actnorm_initialises_on_its_own_input_inside_a_flow():
    x = _data()
    flow = kflows.Flow(
        [
            kflows.Elementwise("scale", {"scale": 2.0}, dtype="float64"),
            kflows.ActNorm(dtype="float64"),
        ],
        dtype="float64",
    )
    flow.initialize(x)
    u = flow.flow_layers[1].bijector().inverse(x / 2.0).numpy()
    np.testing.assert_allclose(u.mean(0), 0.0, atol=1e-10)
    np.testing.assert_allclose(u.std(0), 1.0, atol=1e-10)


@pytest.mark.slow
def test_fit_initialises_actnorm_on_the_first_batch():
    x = _data(dtype="float32")
    flow = kflows.glow(num_layers=1, hidden_units=(8,))
    flow.compile()
    flow.fit(x, epochs=1, batch_size=128, verbose=0)
    actnorm = flow.flow_layers[0]
    assert not flow.needs_data_init
    # Four Adam steps of 1e-3 move the weights by at most ~4e-3 from the first batch's stats.
    np.testing.assert_allclose(actnorm.shift.numpy(), x[:128].mean(0), atol=1e-2)
    np.testing.assert_allclose(np.exp(actnorm.log_scale.numpy()), x[:128].std(0), rtol=1e-2)


def test_actnorm_initialises_on_data_whose_float32_variance_overflows():
    # Data at 1e20: the float32 variance (1e40) overflows; the statistics are computed in
    # float64, so the layer still standardises it.
    x = (_data() * 1e20).astype("float32")
    flow = kflows.Flow([kflows.ActNorm()])
    flow.initialize(x)
    layer = flow.flow_layers[0]
    np.testing.assert_allclose(layer.log_scale.numpy(), np.log(STD * 1e20), rtol=1e-3)
    u = layer.bijector().inverse(x).numpy()
    np.testing.assert_allclose(u.mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(u.std(0), 1.0, rtol=1e-5)
    assert np.all(np.isfinite(flow.log_prob(x)))


def test_actnorm_refuses_non_finite_statistics_and_keeps_its_weights():
    layer = kflows.ActNorm(name="an")
    layer.build((None, 3))
    layer.shift.assign([1.0, 2.0, 3.0])
    x = _data(n=16, dtype="float32")[:, [0, 1, 1]]
    x[5, 2] = np.inf
    with pytest.raises(ValueError, match=r"ActNorm layer 'an'.*finite mean.*feature\(s\) \[2\]"):
        layer.initialize(x)
    np.testing.assert_array_equal(layer.shift.numpy(), [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(layer.log_scale.numpy(), [0.0, 0.0, 0.0])
    assert layer.needs_data_init
    # In a flow: finite data that the layer before it sends beyond float32 (x / 1e-30).
    flow = kflows.Flow([kflows.Elementwise("scale", {"scale": 1e-30}), kflows.ActNorm(name="an2")])
    big = _data(n=16, dtype="float32") * 1e10
    with pytest.raises(ValueError, match=r"'an2'.*feature\(s\) \[0, 1\]"):
        flow.initialize(big)
    assert flow.needs_data_init


# ---------------------------------------------------------------- BatchNorm
def _batch_norm(momentum=0.9):
    layer = kflows.BatchNorm(momentum=momentum, dtype="float64")
    layer.build((None, 2))
    layer.log_gamma.assign([0.3, -0.2])
    layer.beta.assign([0.1, 0.5])
    return layer


def test_batch_norm_training_uses_batch_statistics_and_updates_moving_ones():
    layer = _batch_norm(momentum=0.9)
    x = tf.constant(_data())
    mean, var = x.numpy().mean(0), x.numpy().var(0)
    bij = layer.bijector(training=True)
    u = bij.inverse(x).numpy()
    expected = (x.numpy() - mean) / np.sqrt(var + layer.epsilon) * np.exp([0.3, -0.2]) + [0.1, 0.5]
    np.testing.assert_allclose(u, expected, atol=1e-10)
    np.testing.assert_allclose(layer.moving_mean.numpy(), 0.1 * mean, atol=1e-10)
    np.testing.assert_allclose(
        layer.moving_variance.numpy(), 0.9 * (1 - layer.epsilon) + 0.1 * var, atol=1e-10
    )
    # The training log-det treats the batch statistics as constants: it equals the log-det
    # of the same affine map with the statistics frozen, checked against autodiff.
    ildj = bij.inverse_log_det_jacobian(tf.identity(x), event_ndims=1)
    layer.moving_mean.assign(mean)
    layer.moving_variance.assign(var)
    frozen = layer.bijector(training=False)
    np.testing.assert_allclose(frozen.inverse(x), u, atol=1e-10)
    np.testing.assert_allclose(ildj, _autodiff_log_det(frozen.inverse, x), atol=1e-10)


def test_batch_norm_inference_uses_moving_statistics_and_does_not_update_them():
    layer = _batch_norm()
    layer.moving_mean.assign([1.0, 2.0])
    layer.moving_variance.assign([4.0, 0.25])
    x = tf.constant(_data(n=8))
    bij = layer.bijector(training=False)
    u = bij.inverse(x)
    expected = (x.numpy() - [1.0, 2.0]) / np.sqrt([4.0, 0.25] + np.float64(layer.epsilon))
    np.testing.assert_allclose(u, expected * np.exp([0.3, -0.2]) + [0.1, 0.5], atol=1e-10)
    np.testing.assert_allclose(bij.forward(tf.identity(u)), x, atol=1e-10)
    ildj = bij.inverse_log_det_jacobian(tf.identity(x), event_ndims=1)
    np.testing.assert_allclose(ildj, _autodiff_log_det(bij.inverse, x), atol=1e-10)
    np.testing.assert_array_equal(layer.moving_mean.numpy(), [1.0, 2.0])
    # The training-mode log-det differs: it uses this batch's variance.
    train_ildj = layer.bijector(training=True).inverse_log_det_jacobian(x, event_ndims=1)
    assert not np.allclose(train_ildj, ildj)


@pytest.mark.slow
@pytest.mark.parametrize("jit_compile", [True, False])
def test_fit_updates_moving_statistics_and_evaluate_uses_them(jit_compile):
    x = _data(n=640, dtype="float32")
    flow = kflows.Flow(
        [
            kflows.BatchNorm(momentum=0.5),
            kflows.MaskedAutoregressive(conditioner={"hidden_units": (8,)}),
        ]
    )
    flow.compile(jit_compile=jit_compile)
    flow.fit(x, epochs=1, batch_size=64, shuffle=False, verbose=0)  # 10 steps
    layer = flow.flow_layers[0]
    # The exact moving averages of the ten batches' statistics (BatchNorm sees x itself).
    mean, var = np.zeros(2), np.full(2, 1.0 - layer.epsilon)
    for batch in x.astype(np.float64).reshape(10, 64, 2):
        mean = 0.5 * mean + 0.5 * batch.mean(0)
        var = 0.5 * var + 0.5 * batch.var(0)
    np.testing.assert_allclose(layer.moving_mean.numpy(), mean, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(layer.moving_variance.numpy(), var, rtol=1e-4)
    moving = [v.numpy().copy() for v in (layer.moving_mean, layer.moving_variance)]
    loss = flow.evaluate(x, batch_size=64, verbose=0, return_dict=True)["loss"]
    np.testing.assert_allclose(loss, -np.mean(flow.log_prob(x)), rtol=1e-5)
    # evaluate ran in inference mode: the moving statistics did not move.
    np.testing.assert_array_equal(layer.moving_mean.numpy(), moving[0])
    np.testing.assert_array_equal(layer.moving_variance.numpy(), moving[1])


# ---------------------------------------------------------------- Standardize
def test_standardize_log_prob_is_the_gaussian_density_of_standardized_data():
    x = _data()
    layer = kflows.Standardize(dtype="float64")
    layer.adapt(x)
    np.testing.assert_allclose(layer.mean.numpy(), x.mean(0), atol=1e-12)
    np.testing.assert_allclose(layer.std.numpy(), x.std(0), atol=1e-12)
    flow = kflows.Flow([layer], dtype="float64")
    z = (x - x.mean(0)) / x.std(0)
    expected = np.sum(-0.5 * z**2 - 0.5 * np.log(2 * np.pi), axis=1) - np.sum(np.log(x.std(0)))
    np.testing.assert_allclose(flow.log_prob(x), expected, atol=1e-10)


def test_standardize_adapts_to_a_dataset_like_to_an_array():
    x = _data()
    from_array, from_dataset = kflows.Standardize(), kflows.Standardize()
    from_array.adapt(x)
    from_dataset.adapt(tf.data.Dataset.from_tensor_slices(x).batch(100))
    np.testing.assert_allclose(from_dataset.mean.numpy(), from_array.mean.numpy(), rtol=1e-6)
    np.testing.assert_allclose(from_dataset.std.numpy(), from_array.std.numpy(), rtol=1e-6)


def test_standardize_before_adapt_is_an_error_and_fit_adapts_with_a_warning():
    flow = kflows.Flow([kflows.Standardize()])
    flow.build((None, 2))
    with pytest.raises(ValueError, match="adapt"):
        flow.log_prob(_data(n=4))
    flow.compile()
    with pytest.warns(UserWarning, match="not adapted"):
        flow.fit(_data(n=64, dtype="float32"), epochs=1, batch_size=64, verbose=0)
    np.testing.assert_allclose(flow.flow_layers[0].mean.numpy(), _data(n=64).mean(0), rtol=1e-5)
    with pytest.raises(ValueError, match="features"):
        flow.flow_layers[0].adapt(np.zeros((4, 3)))


def test_standardize_refuses_statistics_its_dtype_cannot_hold():
    layer = kflows.Standardize(name="st")  # float32 weights
    beyond = np.array([[1e39, 1.0], [3e39, 2.0]])  # finite in float64, not in float32
    with pytest.raises(ValueError, match=r"'st'.*finite mean.*float32.*feature\(s\) \[0\]"):
        layer.adapt(beyond)
    assert not layer.is_adapted
    np.testing.assert_array_equal(layer.mean.numpy(), [0.0, 0.0])
    # float64 weights: the sum of squares of 1e200 overflows even in float64.
    wide = kflows.Standardize(name="st64", dtype="float64")
    with pytest.raises(ValueError, match=r"'st64'.*standard deviation.*feature\(s\) \[1\]"):
        wide.adapt(np.array([[1.0, 1e200], [2.0, -1e200]]))
    assert not wide.is_adapted
    np.testing.assert_array_equal(wide.std.numpy(), [1.0, 1.0])


def test_batch_norm_training_log_prob_uses_the_batch_statistics_log_det():
    """In training the density direction normalises with the batch's statistics: its
    log-det must be theirs, not the moving averages' (TFP asks for the forward log-det at
    inverse(y))."""
    layer = kflows.BatchNorm(dtype="float64")
    flow = kflows.Flow([layer], dtype="float64")
    flow.build((None, 2))
    layer.moving_variance.assign([2.0, 0.5])  # far from the batch's variances
    x = tf.constant(np.random.default_rng(0).normal(3.0, [1.0, 4.0], (64, 2)))
    expected_ildj = -0.5 * np.sum(np.log(np.var(x.numpy(), axis=0) + layer.epsilon))
    u = layer.bijector(training=True).inverse(x)
    base = flow.base.distribution().log_prob(u).numpy()
    moving_before = layer.moving_mean.numpy().copy()
    log_prob = flow.log_prob(x, training=True).numpy()
    np.testing.assert_allclose(log_prob, base + expected_ildj, rtol=1e-12)
    # One log_prob moves the moving averages once.
    momentum = layer.momentum
    np.testing.assert_allclose(
        layer.moving_mean.numpy(),
        momentum * moving_before + (1 - momentum) * np.mean(x.numpy(), axis=0),
        rtol=1e-12,
    )
