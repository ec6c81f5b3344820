"""Conditional flows p(x | context), end to end."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import kflows


def conditional_gaussian(n, seed):
    """x ~ N((2c, -c), 0.3² I) with a scalar context c ~ U(-1.5, 1.5)."""
    rng = np.random.default_rng(seed)
    c = rng.uniform(-1.5, 1.5, (n, 1))
    x = np.concatenate([2.0 * c, -c], axis=1) + 0.3 * rng.standard_normal((n, 2))
    return x.astype("float32"), c.astype("float32")


BUILDERS = {
    "maf": lambda: kflows.maf(num_layers=2, hidden_units=(16,), context_dim=3),
    "realnvp": lambda: kflows.realnvp(num_layers=2, hidden_units=(16,), context_dim=3),
}


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_shapes_with_shared_and_batched_contexts(name):
    flow = BUILDERS[name]()
    x = np.random.default_rng(0).standard_normal((5, 2)).astype("float32")
    context = np.random.default_rng(1).standard_normal((5, 3)).astype("float32")
    assert flow.log_prob(x, context).shape == (5,)
    # A context [C] is shared by every row.
    np.testing.assert_allclose(
        flow.log_prob(x, context[0]), flow.log_prob(x, np.repeat(context[:1], 5, 0)), atol=1e-6
    )
    assert flow.sample(4, context=context[0], seed=0).shape == (4, 2)
    batched = flow.sample(4, context=context[:3], seed=0)
    assert batched.shape == (4, 3, 2)
    samples, log_probs = flow.sample_and_log_prob(4, context=context[:3], seed=0)
    assert samples.shape == (4, 3, 2) and log_probs.shape == (4, 3)
    with pytest.raises(ValueError, match="pass a context"):
        flow.log_prob(x)
    with pytest.raises(ValueError, match="3 features"):
        flow.log_prob(x, context[:, :2])


def test_conditional_keras_file_round_trip(tmp_path):
    flow = BUILDERS["maf"]()
    x = np.random.default_rng(0).standard_normal((6, 2)).astype("float32")
    context = np.random.default_rng(1).standard_normal((6, 3)).astype("float32")
    flow.build(((None, 2), (None, 3)))
    for v in flow.trainable_variables:
        v.assign(v + 0.3 * tf.random.stateless_normal(v.shape, [0, 1]))
    path = str(tmp_path / "conditional.keras")
    flow.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    assert loaded.context_dim == 3
    np.testing.assert_array_equal(loaded.log_prob(x, context), flow.log_prob(x, context))
    np.testing.assert_array_equal(
        loaded.sample(5, context=context[:2], seed=3), flow.sample(5, context=context[:2], seed=3)
    )


@pytest.mark.slow
def test_fit_on_numpy_and_on_datasets_of_dicts_and_pairs():
    x, c = conditional_gaussian(256, seed=0)
    c3 = np.repeat(c, 3, axis=1)
    for data in (
        (x, c3),
        tf.data.Dataset.from_tensor_slices({"x": x, "context": c3}).batch(64),
        tf.data.Dataset.from_tensor_slices((x, c3)).batch(64),  # (x, context), not (x, y)
    ):
        flow = BUILDERS["maf"]()
        flow.compile(optimizer=keras.optimizers.Adam(1e-2))
        history = flow.fit(data, epochs=3, batch_size=64, verbose=0)
        losses = history.history["loss"]
        assert np.isfinite(losses).all() and losses[-1] < losses[0]
        assert flow.context_dim == 3


@pytest.mark.slow
def test_learns_a_density_whose_mean_follows_the_context():
    x, c = conditional_gaussian(2048, seed=0)
    x_test, c_test = conditional_gaussian(1000, seed=1)
    kwargs = dict(num_layers=2, hidden_units=(32,), seed=0)
    conditional = kflows.maf(context_dim=1, **kwargs)
    unconditional = kflows.maf(**kwargs)
    for flow, data in ((conditional, (x, c)), (unconditional, x)):
        flow.compile(optimizer=keras.optimizers.Adam(1e-2))
        flow.fit(data, epochs=10, batch_size=128, verbose=0)

    # Samples track the context as the data do: mean (2c, -c).
    for value in (-1.0, 1.0):
        samples = conditional.sample(2000, context=[value], seed=0).numpy()
        np.testing.assert_allclose(samples.mean(0), [2.0 * value, -value], atol=0.25)
        assert samples.std(0).max() < 0.6  # the conditional spread, not the marginal one

    # Held-out conditional data is likelier under the right context than under a wrong one,
    # and likelier than under the unconditional fit.
    right = conditional.log_prob(x_test, c_test).numpy().mean()
    wrong = conditional.log_prob(x_test, -c_test).numpy().mean()
    marginal = unconditional.log_prob(x_test).numpy().mean()
    assert right > wrong + 1.0
    assert right > marginal + 0.5
