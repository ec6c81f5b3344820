"""Base distributions: normalisation, analytic densities, training, saving."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
from helpers import perturb
from scipy import stats
from scipy.special import logsumexp

import kflows

tfd = tfp.distributions

LAPLACE_SPEC = {"name": "Laplace", "params": {"loc": [0.5, -0.5], "scale": [1.0, 0.7]}}

BASES = {
    "standard_normal": lambda dtype: kflows.StandardNormal(dtype=dtype),
    "diagonal_normal": lambda dtype: kflows.DiagonalNormal(dtype=dtype),
    "gaussian_mixture": lambda dtype: kflows.GaussianMixture(3, seed=1, dtype=dtype),
    "student_t": lambda dtype: kflows.StudentT(df=4.0, dtype=dtype),
    "student_t_learned": lambda dtype: kflows.StudentT(df=4.0, learn_df=True, dtype=dtype),
    "fixed_spec": lambda dtype: kflows.Fixed(LAPLACE_SPEC, dtype=dtype),
    "fixed_object": lambda dtype: kflows.Fixed(
        tfd.Logistic(tf.constant([0.0, 1.0], dtype), tf.constant([1.0, 0.5], dtype)), dtype=dtype
    ),
}
LEARNED = ["diagonal_normal", "gaussian_mixture", "student_t_learned"]


def built(name, dtype="float64", perturbed=True):
    base = BASES[name](dtype)
    base.build((2,))
    if perturbed:
        perturb(base, scale=0.3, seed=2)
    return base


def reference_log_prob(name, base, x):
    """The density written out with scipy, from the base's weights."""
    w = {v.name: v.numpy() for v in base.weights}
    if name == "standard_normal":
        return stats.norm.logpdf(x).sum(-1)
    if name == "diagonal_normal":
        return stats.norm.logpdf(x, w["loc"], np.exp(w["log_scale"])).sum(-1)
    if name == "gaussian_mixture":
        log_w = w["logits"] - logsumexp(w["logits"])
        comp = stats.norm.logpdf(x[:, None, :], w["locs"], np.exp(w["log_scales"])).sum(-1)
        return logsumexp(log_w + comp, axis=1)
    if name == "student_t":
        return stats.t.logpdf(x, df=4.0).sum(-1)
    if name == "student_t_learned":
        return stats.t.logpdf(x, df=np.logaddexp(0.0, w["raw_df"])).sum(-1)
    if name == "fixed_spec":
        return stats.laplace.logpdf(x, [0.5, -0.5], [1.0, 0.7]).sum(-1)
    if name == "fixed_object":
        return stats.logistic.logpdf(x, [0.0, 1.0], [1.0, 0.5]).sum(-1)
    raise KeyError(name)


@pytest.mark.parametrize("name", sorted(BASES))
def test_shapes_and_analytic_log_prob(name):
    base = built(name)
    dist = base.distribution()
    assert dist.event_shape == [2] and dist.batch_shape == []
    x = np.random.default_rng(0).standard_normal((20, 2)) * 2.0
    np.testing.assert_allclose(dist.log_prob(x), reference_log_prob(name, base, x), atol=1e-8)
    assert dist.sample(5, seed=tf.constant([1, 2])).shape == (5, 2)


@pytest.mark.parametrize("name", sorted(BASES))
def test_density_integrates_to_one_in_2d(name):
    # Heavy tails: integrate over a wide box with the Student-t's small remaining mass.
    base = built(name)
    grid = np.linspace(-30.0, 30.0, 1201)
    xx, yy = np.meshgrid(grid, grid)
    points = np.stack([xx.ravel(), yy.ravel()], axis=1)
    density = np.exp(base.distribution().log_prob(points).numpy())
    step = grid[1] - grid[0]
    assert abs(density.sum() * step * step - 1.0) < 1e-2


@pytest.mark.parametrize("name", LEARNED)
def test_distribution_is_live(name):
    """A distribution made once follows later weight changes and gives them gradients."""
    base = built(name, perturbed=False)
    dist = base.distribution()
    x = tf.constant(np.random.default_rng(0).standard_normal((8, 2)))
    before = dist.log_prob(x).numpy()
    with tf.GradientTape() as tape:
        loss = -tf.reduce_sum(dist.log_prob(x + 3.0))
    grads = tape.gradient(loss, [v.value for v in base.trainable_variables])
    assert all(g is not None and np.any(g.numpy() != 0) for g in grads)
    perturb(base, scale=0.3, seed=4)
    assert not np.allclose(dist.log_prob(x).numpy(), before)
    assert {id(v) for v in dist.trainable_variables} == {
        id(v.value) for v in base.trainable_variables
    }


@pytest.mark.slow
@pytest.mark.parametrize("name", LEARNED)
def test_fit_updates_the_base_weights(name):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((256, 2)) * [0.5, 2.0] + [3.0, -1.0]).astype("float32")
    flow = kflows.Flow(
        [kflows.MaskedAutoregressive(conditioner={"hidden_units": (8,)})], base=BASES[name](None)
    )
    flow.compile(optimizer=keras.optimizers.Adam(0.05))
    flow.build((None, 2))
    start = [v.numpy().copy() for v in flow.base.weights]
    before = flow.evaluate(x, verbose=0, return_dict=True)["loss"]
    flow.fit(x, epochs=3, batch_size=64, verbose=0)
    assert flow.evaluate(x, verbose=0, return_dict=True)["loss"] < before
    for old, new in zip(start, flow.base.weights, strict=True):
        assert np.abs(new.numpy() - old).max() > 1e-3, new.name


@pytest.mark.parametrize("name", sorted(BASES))
def test_keras_file_round_trip(name, tmp_path):
    flow = kflows.Flow(
        [kflows.MaskedAutoregressive(conditioner={"hidden_units": (8,)})], base=BASES[name](None)
    )
    flow.build((None, 2))
    perturb(flow, scale=0.3, seed=3)
    path = str(tmp_path / "flow.keras")
    flow.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    assert type(loaded.base) is type(flow.base)
    x = np.random.default_rng(0).standard_normal((6, 2)).astype("float32")
    np.testing.assert_array_equal(loaded.log_prob(x), flow.log_prob(x))
    np.testing.assert_array_equal(loaded.sample(7, seed=5), flow.sample(7, seed=5))


def test_flow_wraps_a_plain_tfp_distribution():
    flow = kflows.Flow([kflows.Reverse()], base=tfd.Laplace([0.0, 1.0], [1.0, 2.0]))
    assert isinstance(flow.base, kflows.Fixed)
    x = np.array([[0.3, -0.2]], "float32")
    expected = stats.laplace.logpdf(x[:, ::-1], [0.0, 1.0], [1.0, 2.0]).sum(-1)
    np.testing.assert_allclose(flow.log_prob(x), expected, rtol=1e-6)
    config = json.loads(json.dumps(flow.base.get_config()))
    assert config["distribution"]["name"] == "Laplace"


def test_fixed_scalar_distribution_is_broadcast_to_d_features():
    base = kflows.Fixed({"name": "Laplace", "params": {"loc": 0.0, "scale": 1.0}})
    base.build((3,))
    assert base.distribution().event_shape == [3]
    x = np.ones((2, 3), "float32")
    np.testing.assert_allclose(base.distribution().log_prob(x), 3 * stats.laplace.logpdf(1.0))


def test_fixed_nested_spec_round_trips():
    dist = tfd.Independent(tfd.StudentT(3.0, [0.0, 0.0], [1.0, 2.0]), 1)
    base = kflows.Fixed(dist)
    base.build((2,))
    spec = json.loads(json.dumps(base.get_config()))
    clone = kflows.Fixed.from_config(spec)
    clone.build((2,))
    x = np.array([[0.5, 4.0]], "float32")
    np.testing.assert_array_equal(clone.distribution().log_prob(x), dist.log_prob(x))


def test_fixed_with_variables_cannot_be_saved_and_says_why():
    base = kflows.Fixed(tfd.Normal(tf.Variable([0.0, 0.0]), 1.0))
    base.build((2,))
    with pytest.raises(TypeError, match="Pass a JSON spec"):
        base.get_config()


@pytest.mark.parametrize(
    "bad, error",
    [
        ({"name": "NotADistribution", "params": {}}, ValueError),
        ({"params": {}}, ValueError),
        ("Laplace", TypeError),
    ],
)
def test_fixed_rejects_bad_input(bad, error):
    with pytest.raises(error, match="Expected"):
        kflows.Fixed(bad)


def test_fixed_checks_event_shape_and_dtype():
    base = kflows.Fixed(tfd.MultivariateNormalDiag(tf.zeros(3)))
    with pytest.raises(ValueError, match=r"event shape \[2\]"):
        base.build((2,))
    base = kflows.Fixed(tfd.Normal(tf.zeros(2), 1.0), dtype="float64")
    with pytest.raises(ValueError, match="float64"):
        base.build((2,))


def test_base_arguments_are_validated():
    with pytest.raises(ValueError, match="num_components"):
        kflows.GaussianMixture(0)
    with pytest.raises(ValueError, match="df"):
        kflows.StudentT(df=0.0)


def test_gaussian_mixture_initial_means_are_seeded_and_spread():
    a, b = kflows.GaussianMixture(4, seed=7), kflows.GaussianMixture(4, seed=7)
    a.build((2,))
    b.build((2,))
    np.testing.assert_array_equal(a.locs.numpy(), b.locs.numpy())
    assert np.unique(a.locs.numpy()[:, 0]).size == 4
    assert kflows.GaussianMixture(4).get_config()["seed"] is not None
