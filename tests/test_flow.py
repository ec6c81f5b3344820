"""The Flow model: API, training with fit, bad input, TFP interop."""

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
from tensorflow_probability.python.distributions import transformed_distribution

import kflows
from kflows import data

tfd = tfp.distributions


def small_maf(**kwargs):
    return kflows.maf(num_layers=2, hidden_units=(16, 16), **kwargs)


@pytest.fixture(scope="module")
def moons():
    return data.split(data.two_moons(2000, seed=0), seed=0)


def test_distribution_is_a_real_tfp_distribution():
    flow = small_maf()
    flow.build((None, 2))
    dist = flow.distribution()
    # TFP's TransformedDistribution constructor returns its non-CompositeTensor base class
    # when a bijector holds Python callables, as ours do: that class is TFP's own.
    assert isinstance(dist, transformed_distribution._TransformedDistribution)
    assert type(dist) is type(tfd.TransformedDistribution(dist.distribution, dist.bijector))
    chain = flow.bijector()
    assert isinstance(chain, tfp.bijectors.Bijector)
    # The data end's guard, then one bijector per layer.
    assert len(chain.bijectors) == 1 + len(flow.flow_layers)
    assert isinstance(chain.bijectors[0], kflows.bijectors.RowGuard)
    assert dist.event_shape == [2]
    x = np.zeros((3, 2), np.float32)
    np.testing.assert_allclose(dist.log_prob(x), flow.log_prob(x), rtol=1e-6)


def test_distribution_stays_live_and_exposes_variables():
    flow = small_maf()
    flow.build((None, 2))
    dist = flow.distribution()
    assert {id(v) for v in dist.trainable_variables} == {
        id(v.value) for v in flow.trainable_variables
    }
    x = tf.constant(data.two_moons(64, seed=1))
    with tf.GradientTape() as tape:
        loss = -tf.reduce_mean(dist.log_prob(x))
    grads = tape.gradient(loss, dist.trainable_variables)
    assert all(g is not None for g in grads)
    before = dist.log_prob(x).numpy()
    for v in flow.trainable_variables:
        v.assign(v + 0.1)
    assert not np.allclose(dist.log_prob(x), before)  # the same object sees new weights


def test_fit_surrogate_posterior_trains_the_flow():
    target = tfd.MultivariateNormalDiag(loc=[2.0, -1.0], scale_diag=[0.5, 2.0])
    flow = small_maf()
    flow.build((None, 2))
    losses = tfp.vi.fit_surrogate_posterior(
        target.log_prob,
        flow.distribution(),
        optimizer=tf.optimizers.Adam(1e-2),
        num_steps=150,
        sample_size=64,
        seed=(0, 1),
    )
    assert losses[-20:].numpy().mean() < losses[:20].numpy().mean() - 0.5
    mean = flow.sample(4000, seed=2).numpy().mean(axis=0)
    np.testing.assert_allclose(mean, [2.0, -1.0], atol=0.35)


def test_seeded_sampling_is_reproducible():
    flow = small_maf()
    flow.build((None, 2))
    for v in flow.trainable_variables:
        v.assign(v + 0.05)
    a, b, c = flow.sample(5, seed=7), flow.sample(5, seed=7), flow.sample(5, seed=8)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    np.testing.assert_array_equal(flow.sample(5, seed=[0, 7]), a)
    samples, lp = flow.sample_and_log_prob(5, seed=7)
    np.testing.assert_allclose(samples, a, rtol=1e-6)
    np.testing.assert_allclose(lp, flow.log_prob(samples), rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_fit_evaluate_and_callbacks(moons, tmp_path):
    train, test = moons
    flow = small_maf()
    flow.compile(optimizer=keras.optimizers.Adam(5e-3))
    before = flow.evaluate(test, verbose=0, return_dict=True)
    ckpt = str(tmp_path / "best.keras")
    history = flow.fit(
        train,
        epochs=6,
        batch_size=128,
        validation_split=0.2,
        verbose=0,
        callbacks=[
            keras.callbacks.EarlyStopping(patience=2, restore_best_weights=True),
            keras.callbacks.ModelCheckpoint(ckpt, save_best_only=True),
        ],
    )
    assert {"loss", "val_loss", "bits_per_dim", "val_bits_per_dim"} <= set(history.history)
    after = flow.evaluate(test, verbose=0, return_dict=True)
    assert after["loss"] < before["loss"] - 0.3
    nll = -flow.log_prob(test).numpy().mean()
    np.testing.assert_allclose(after["loss"], nll, rtol=1e-4)
    np.testing.assert_allclose(after["bits_per_dim"], nll / (2 * np.log(2)), rtol=1e-4)
    restored = keras.models.load_model(ckpt)
    assert np.isfinite(restored.log_prob(test[:4])).all()


@pytest.mark.slow
def test_fit_on_dataset_and_validation_data(moons):
    train, test = moons
    flow = small_maf()
    flow.compile(optimizer=keras.optimizers.Adam(3e-3))
    ds = tf.data.Dataset.from_tensor_slices(train).shuffle(1000, seed=0).batch(128)
    history = flow.fit(ds, epochs=3, validation_data=test, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert len(history.history["val_loss"]) == 3


def test_compile_without_arguments_uses_adam():
    flow = small_maf()
    flow.compile()
    assert isinstance(flow.optimizer, keras.optimizers.Adam)
    with pytest.raises(ValueError, match="negative log-likelihood"):
        flow.compile(loss="mse")


def test_features_are_inferred_from_data():
    flow = small_maf()
    assert flow.event_dim is None
    flow.log_prob(np.zeros((2, 5), np.float32))
    assert flow.event_dim == 5
    assert flow.sample(3, seed=0).shape == (3, 5)


def test_float64_flow():
    flow = small_maf(dtype="float64")
    lp = flow.log_prob(np.zeros((2, 3)))
    assert lp.dtype == tf.float64
    assert flow.sample(2, seed=0).dtype == tf.float64


def test_mixed_dtypes_are_refused():
    with pytest.raises(ValueError, match="float64"):
        kflows.Flow([kflows.Reverse(dtype="float64"), kflows.Reverse(dtype="float32")])


@pytest.mark.parametrize(
    "bad, error, message",
    [
        (np.zeros((4, 3), np.float32), ValueError, "2 features"),
        (np.array([[True, False]]), TypeError, "numeric"),
        (np.array([["a", "b"]]), TypeError, "numeric"),
        (np.float32(1.0), ValueError, "scalar"),
    ],
)
def test_bad_input_gets_a_clear_error(bad, error, message):
    flow = small_maf()
    flow.build((None, 2))
    with pytest.raises(error, match=message):
        flow.log_prob(bad)


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros((0, 2), np.float32), "non-empty"),
        (np.array([[0.0, 1.0], [np.inf, 0.0]], np.float32), "row"),
        (np.zeros((4, 3), np.float32), "2 features"),
        (np.zeros(5, np.float32), r"shape \[N, 2\]"),
    ],
)
def test_bad_training_data_is_refused_before_training(bad, message):
    flow = small_maf()
    flow.build((None, 2))
    flow.compile()
    weights = [w.copy() for w in flow.get_weights()]
    with pytest.raises(ValueError, match=message):
        flow.fit(bad, epochs=1, verbose=0)
    for w, w0 in zip(flow.get_weights(), weights, strict=True):
        np.testing.assert_array_equal(w, w0)  # nothing lost


def test_targets_and_negative_sample_counts_are_refused():
    flow = small_maf()
    flow.build((None, 2))
    flow.compile()
    with pytest.raises(ValueError, match="no targets"):
        flow.fit(np.zeros((8, 2), np.float32), np.zeros(8), verbose=0)
    with pytest.raises(ValueError, match="num_samples >= 0"):
        flow.sample(-1)


def test_context_is_required_exactly_when_conditional():
    cond = small_maf(context_dim=3)
    cond.build((None, 2))
    with pytest.raises(ValueError, match="conditional"):
        cond.log_prob(np.zeros((2, 2), np.float32))
    plain = small_maf()
    plain.build((None, 2))
    with pytest.raises(ValueError, match="no context"):
        plain.log_prob(np.zeros((2, 2), np.float32), np.zeros((2, 3), np.float32))


def test_non_flow_layers_are_refused():
    with pytest.raises(TypeError, match="FlowLayer"):
        kflows.Flow([keras.layers.Dense(2)])
