"""No silent failures: the Keras, TFP and tf.distribute contracts at every edge of Flow.

Each test is one instance of a class of defect that once returned a wrong answer, or lost
data, without saying so (see the closing notes of the contracts issue).
"""

import pickle
import threading

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
from helpers import perturb

import kflows

tfd = tfp.distributions


def small(builder="maf", context_dim=None, dim=2, seed=0, **kwargs):
    """A built, perturbed two-layer flow (not the identity, so every input matters)."""
    keras.utils.set_random_seed(seed)
    flow = getattr(kflows, builder)(
        num_layers=2, hidden_units=(8, 8), context_dim=context_dim, **kwargs
    )
    shape = (None, dim)
    flow.build(shape if context_dim is None else (shape, (None, context_dim)))
    perturb(flow, scale=0.4, seed=seed)
    return flow


def rows(n=6, dim=2, seed=0):
    return np.random.default_rng(seed).standard_normal((n, dim)).astype("float32")


# ---------------------------------------------------------------------- gradients & graphs
def test_eager_log_prob_keeps_gradients_to_x_and_to_a_context_network():
    flow = small(context_dim=3)
    embed = keras.layers.Dense(3)
    x = tf.constant(rows())
    raw = tf.constant(rows(dim=4, seed=1))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        lp = flow.log_prob(x, embed(raw))
        total = tf.reduce_sum(lp)
    grad_x = tape.gradient(total, x)
    grads_embed = tape.gradient(total, embed.trainable_variables)
    assert grad_x is not None and np.abs(grad_x.numpy()).sum() > 0
    assert all(g is not None and np.abs(g.numpy()).sum() > 0 for g in grads_embed)
    # The same with run_eagerly-style code: predict's graph and log_prob agree.
    np.testing.assert_allclose(lp, flow.predict((x, embed(raw)), verbose=0), rtol=1e-5)


def test_log_prob_of_a_variable_inside_tf_function():
    flow = small()
    v = tf.Variable(rows())

    @tf.function
    def score():
        return flow.log_prob(v)

    np.testing.assert_allclose(score(), flow.log_prob(v.numpy()), rtol=1e-5)


def test_log_prob_on_keras_tensors_builds_a_functional_model():
    flow = small(context_dim=1)
    x_in, c_in = keras.Input((2,)), keras.Input((1,))
    model = keras.Model([x_in, c_in], flow.log_prob(x_in, c_in))
    x, c = rows(), rows(dim=1, seed=3)
    np.testing.assert_allclose(model.predict([x, c], verbose=0), flow.log_prob(x, c), rtol=1e-5)


# ---------------------------------------------------------------------- NaN, inf, overflow
@pytest.mark.parametrize("builder", ["maf", "realnvp", "nsf", "nsf_coupling"])
def test_nan_in_gives_nan_out_and_the_rest_of_the_batch_is_unaffected(builder):
    flow = small(builder, context_dim=1)
    x, c = rows(4), rows(4, dim=1, seed=2)
    expected = flow.log_prob(x, c).numpy()
    x_bad, c_bad = x.copy(), c.copy()
    x_bad[1, 0] = np.nan
    c_bad[2, 0] = np.nan
    c_bad[3, 0] = np.inf
    for scored in (
        flow.log_prob(x_bad, c_bad),
        flow.predict((x_bad, c_bad), verbose=0),
        tf.function(flow.log_prob)(tf.constant(x_bad), tf.constant(c_bad)),
        flow.distribution(c_bad).log_prob(x_bad),
    ):
        scored = np.asarray(scored)
        assert np.isnan(scored[1:]).all()
        np.testing.assert_allclose(scored[0], expected[0], rtol=1e-5)
    samples = flow.sample(3, context=c_bad, seed=0).numpy()  # [3, 4, 2]
    assert np.isnan(samples[:, 2:]).all() and np.isfinite(samples[:, :2]).all()


@pytest.mark.parametrize("builder", ["maf", "realnvp", "nsf", "nsf_coupling"])
def test_huge_and_infinite_inputs_score_minus_inf_never_nan(builder):
    flow = small(builder, seed=1)
    x = np.array([[3e38, 0.0], [0.0, -3e38], [np.inf, 1.0], [1e30, 1e30], [0.5, 0.5]], np.float64)
    x64 = np.vstack([x, [[1e300, 0.0]]])  # finite in float64, beyond float32
    lp = flow.log_prob(x64).numpy()
    assert not np.isnan(lp).any(), lp
    np.testing.assert_array_equal(lp[[0, 1, 2, 3, 5]], -np.inf)
    assert np.isfinite(lp[4])


def test_nan_weights_stay_nan_rather_than_minus_inf():
    flow = small("realnvp")
    flow.trainable_variables[0].assign(np.full(flow.trainable_variables[0].shape, np.nan))
    assert np.isnan(flow.log_prob(np.array([[3e38, 0.0]], np.float32))).all()


@pytest.mark.parametrize("builder", ["maf", "realnvp"])
def test_nan_weights_give_nan_everywhere_in_compiled_graphs(builder, tmp_path):
    """Grappler's fused MatMul+BiasAdd+Relu maps NaN to 0: without the guard a flow with NaN
    weights scored and sampled finite numbers in every compiled graph (traced log_prob,
    evaluate, the export), though eager execution gave NaN."""
    flow = small(builder)
    kernel = flow.trainable_variables[0]
    kernel.assign(np.full(kernel.shape, np.nan))
    x = rows()
    assert np.isnan(flow.log_prob(x)).all()
    assert np.isnan(flow.sample(4, seed=0)).all()
    samples, lp = flow.sample_and_log_prob(4, seed=0)
    assert np.isnan(samples).all() and np.isnan(lp).all()
    flow.compile()
    assert np.isnan(flow.evaluate(x, verbose=0, return_dict=True)["loss"])
    loaded = tf.saved_model.load(kflows.export(flow, tmp_path / "m", warmup=False))
    assert np.isnan(loaded.signatures["log_prob"](x=tf.constant(x))["log_prob"]).all()
    drawn = loaded.signatures["sample"](num_samples=tf.constant(3), seed=tf.constant([1, 2]))
    assert np.isnan(drawn["samples"]).all()


def test_public_methods_trace_once_per_signature_and_keep_gradients():
    flow = small("maf")
    for n in (3, 5, 7, 9):
        flow.log_prob(rows(n))
        flow.sample(n, seed=n)
    traced = flow.__dict__["_kflows_traced"]
    counts = [(key[0], fn.experimental_get_tracing_count()) for key, fn in traced.items()]
    assert sorted(counts) == [("log_prob", 1), ("sample", 1)], counts
    x = tf.constant(rows(4))
    with tf.GradientTape() as tape:
        tape.watch(x)
        lp = flow.log_prob(x)
    grad = tape.gradient(lp, x)
    eps = 1e-3
    numeric = (flow.log_prob(x + [eps, 0.0]) - flow.log_prob(x - [eps, 0.0])) / (2 * eps)
    np.testing.assert_allclose(grad[:, 0], numeric, rtol=2e-2, atol=2e-3)


def test_dataset_with_nan_after_the_first_batch_stops_and_keeps_earlier_weights():
    flow = small()
    flow.compile(optimizer=keras.optimizers.SGD(0.01))
    x = rows(64)
    x[40, 1] = np.nan  # batch 2 of 16-row batches
    seen = []

    class Record(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append([w.copy() for w in flow.get_weights()])

    ds = tf.data.Dataset.from_tensor_slices(x).batch(16)
    with pytest.raises(ValueError, match="batch 2 of epoch 0") as err:
        flow.fit(ds, epochs=2, verbose=0, callbacks=[Record()])
    assert "training x" in str(err.value)
    assert len(seen) == 2  # batches 0 and 1 trained, nothing after
    for w, w_before in zip(flow.get_weights(), seen[-1], strict=True):
        np.testing.assert_array_equal(w, w_before)


def test_dataset_with_nan_in_the_first_batch_is_refused_before_initialising():
    flow = kflows.Flow(
        [kflows.ActNorm(), kflows.MaskedAutoregressive(conditioner={"hidden_units": (4,)})]
    )
    flow.compile()
    x = rows(32)
    x[0, 0] = np.nan
    with pytest.raises(ValueError, match="batch 0"):
        flow.fit(tf.data.Dataset.from_tensor_slices(x).batch(8), verbose=0)
    assert not flow.built or flow.needs_data_init


def test_evaluate_on_a_dataset_with_inf_is_an_error():
    flow = small()
    flow.compile()
    x = rows(32)
    x[20, 0] = np.inf
    with pytest.raises(ValueError, match="evaluation x.*batch 2"):
        flow.evaluate(tf.data.Dataset.from_tensor_slices(x).batch(8), verbose=0)


# ---------------------------------------------------------------------- data forms
def test_dataset_of_x_and_one_dimensional_labels_is_refused():
    flow = kflows.maf(num_layers=1, hidden_units=(4,))
    flow.compile()
    ds = tf.data.Dataset.from_tensor_slices((rows(32), np.arange(32.0))).batch(8)
    with pytest.raises(ValueError, match=r"reads like \(x, y\) labels"):
        flow.fit(ds, verbose=0)
    assert flow.context_dim is None


def test_dataset_of_three_tuples_is_refused():
    flow = small()
    flow.compile()
    ds = tf.data.Dataset.from_tensor_slices((rows(8), rows(8), np.ones(8))).batch(4)
    with pytest.raises(ValueError, match="tuples of 3"):
        flow.fit(ds, verbose=0)


def test_unbatched_dataset_is_refused():
    flow = small()
    flow.compile()
    with pytest.raises(ValueError, match="batch"):
        flow.fit(tf.data.Dataset.from_tensor_slices(rows(8)), verbose=0)


def test_validation_data_takes_the_forms_fit_takes():
    flow = small(context_dim=1)
    flow.compile()
    x, c = rows(64), rows(64, dim=1, seed=4)
    forms = [
        (x[:16], c[:16]),
        {"x": x[:16], "context": c[:16]},
        tf.data.Dataset.from_tensor_slices((x[:16], c[:16])).batch(8),
    ]
    for form in forms:
        history = flow.fit((x, c), epochs=1, verbose=0, validation_data=form)
        expected = -flow.log_prob(x[:16], c[:16]).numpy().mean()
        np.testing.assert_allclose(history.history["val_loss"][0], expected, rtol=1e-4)


def test_bad_validation_data_is_refused_before_the_first_epoch():
    flow = small()
    flow.compile()
    weights = [w.copy() for w in flow.get_weights()]
    with pytest.raises(ValueError, match="validation x"):
        flow.fit(rows(32), epochs=1, verbose=0, validation_data=rows(8, dim=3))
    for w, w0 in zip(flow.get_weights(), weights, strict=True):
        np.testing.assert_array_equal(w, w0)


def test_integer_data_trains_and_scores_as_floats():
    x_int = np.random.default_rng(0).integers(-2, 3, (64, 2))
    a, b = small(), small()
    for flow in (a, b):
        flow.compile(optimizer=keras.optimizers.SGD(0.01))
    a.fit(x_int, epochs=1, batch_size=64, shuffle=False, verbose=0)
    b.fit(x_int.astype("float32"), epochs=1, batch_size=64, shuffle=False, verbose=0)
    for wa, wb in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_allclose(wa, wb, rtol=1e-6)
    np.testing.assert_allclose(a.log_prob(x_int), a.log_prob(x_int.astype("float32")))


def test_list_of_numbers_is_data_not_x_and_context():
    flow = small()
    np.testing.assert_allclose(
        flow.log_prob([[0.0, 1.0], [2.0, 3.0]]),
        flow.log_prob(np.array([[0.0, 1.0], [2.0, 3.0]], np.float32)),
    )


def test_generators_are_refused_with_a_pointer_to_tf_data():
    flow = small()
    flow.compile()
    with pytest.raises(TypeError, match="from_generator"):
        flow.fit((r for r in rows(4)), verbose=0)


# ---------------------------------------------------------------------- sample weights
def test_evaluate_sample_weight_is_the_exact_weighted_mean_over_batches():
    flow = small()
    flow.compile()
    x = rows(50)
    w = np.random.default_rng(1).uniform(0.0, 3.0, 50)
    nll = -flow.log_prob(x).numpy()
    result = flow.evaluate(x, sample_weight=w, batch_size=7, verbose=0, return_dict=True)
    np.testing.assert_allclose(result["loss"], np.sum(w * nll) / np.sum(w), rtol=1e-5)
    np.testing.assert_allclose(
        result["bits_per_dim"], np.sum(w * nll) / np.sum(w) / (2 * np.log(2)), rtol=1e-5
    )
    plain = flow.evaluate(x, batch_size=7, verbose=0, return_dict=True)
    np.testing.assert_allclose(plain["loss"], nll.mean(), rtol=1e-5)


def test_fit_sample_weight_of_zero_drops_rows():
    x = rows(40)
    w = (np.arange(40) % 2).astype("float64")
    x_weighted = x.copy()
    x_weighted[w == 0] += 50.0  # rows with weight 0 must have no effect at all
    a, b = small(), small()
    for flow in (a, b):
        flow.compile(optimizer=keras.optimizers.SGD(0.05))
    a.fit(x_weighted, sample_weight=w, epochs=2, batch_size=40, shuffle=False, verbose=0)
    b.fit(x[w == 1], epochs=2, batch_size=20, shuffle=False, verbose=0)
    for wa, wb in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_allclose(wa, wb, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "weights, message",
    [(np.ones(5), r"shape \[8\]"), (-np.ones(8), "non-negative"), (np.zeros(8), "positive sum")],
)
def test_bad_sample_weights_are_refused(weights, message):
    flow = small()
    flow.compile()
    with pytest.raises(ValueError, match=message):
        flow.fit(rows(8), sample_weight=weights, verbose=0)


# ---------------------------------------------------------------------- numbers never coerced
@pytest.mark.parametrize(
    "seed, error",
    [(2**32 + 7, ValueError), (2.5, ValueError), (True, TypeError), ([0, 2**31], ValueError)],
)
def test_seeds_are_never_wrapped_or_truncated(seed, error):
    flow = small()
    with pytest.raises(error, match="seed"):
        flow.sample(3, seed=seed)


def test_valid_seed_forms_agree():
    flow = small()
    a = flow.sample(3, seed=7)
    np.testing.assert_array_equal(a, flow.sample(3, seed=np.int64(7)))
    np.testing.assert_array_equal(a, flow.sample(3, seed=tf.constant([0, 7])))
    np.testing.assert_array_equal(a, flow.sample(3, seed=(0, 7)))


@pytest.mark.parametrize("n, error", [(2.5, TypeError), (True, TypeError), (3.0, TypeError)])
def test_sample_counts_are_never_rounded(n, error):
    flow = small()
    with pytest.raises(error, match="num_samples"):
        flow.sample(n)


def test_integer_counts_of_every_kind_work():
    flow = small()
    for n in (np.int64(4), tf.constant(4), 4):
        assert flow.sample(n, seed=0).shape == (4, 2)


@pytest.mark.parametrize("context_dim", [2.5, True, 0])
def test_context_dim_must_be_a_positive_integer(context_dim):
    with pytest.raises(ValueError, match="context_dim"):
        kflows.Flow([kflows.Reverse()], context_dim=context_dim)


# ---------------------------------------------------------------------- tracking
def test_checkpoint_saves_and_restores_every_variable(tmp_path):
    flow = kflows.Flow(
        [
            kflows.ActNorm(),
            kflows.BatchNorm(),
            kflows.MaskedAutoregressive(conditioner={"hidden_units": (4,)}),
        ]
    )
    flow.compile()
    flow.fit(rows(64), epochs=1, batch_size=16, verbose=0)  # moves every kind of variable
    path = tf.train.Checkpoint(flow=flow).write(str(tmp_path / "ckpt"))
    names = [name for name, _ in tf.train.list_variables(path)]
    assert sum("moving_mean" in n for n in names) == 1
    assert sum("initialized" in n for n in names) == 1
    fresh = kflows.Flow(
        [
            kflows.ActNorm(),
            kflows.BatchNorm(),
            kflows.MaskedAutoregressive(conditioner={"hidden_units": (4,)}),
        ]
    )
    fresh.build((None, 2))
    tf.train.Checkpoint(flow=fresh).read(path).assert_existing_objects_matched()
    for a, b in zip(flow.weights, fresh.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert not fresh.needs_data_init
    np.testing.assert_allclose(fresh.log_prob(rows()), flow.log_prob(rows()), rtol=1e-6)


def test_bijectors_and_distribution_expose_the_flow_variables():
    flow = small(context_dim=1)
    c = rows(6, dim=1)
    expected = {id(v.value) for v in flow.trainable_variables}
    assert {id(v) for v in flow.bijector(c).trainable_variables} == expected
    assert {id(v) for v in flow.distribution(c).trainable_variables} == expected


def test_two_named_flows_in_one_joint_distribution():
    a, b = small(seed=0), small("realnvp", seed=1)
    joint = tfd.JointDistributionSequential(
        [a.distribution(name="first"), b.distribution(name="second")]
    )
    xa, xb = joint.sample(5, seed=(1, 2))
    np.testing.assert_allclose(
        joint.log_prob([xa, xb]), a.log_prob(xa) + b.log_prob(xb), rtol=1e-5, atol=1e-5
    )
    assert len(joint.trainable_variables) == len(a.trainable_variables) + len(b.trainable_variables)


def test_a_flow_pickles():
    flow = small("realnvp", context_dim=1)
    copy = pickle.loads(pickle.dumps(flow))
    x, c = rows(), rows(dim=1, seed=5)
    np.testing.assert_allclose(copy.log_prob(x, c), flow.log_prob(x, c), rtol=1e-6)


# ---------------------------------------------------------------------- lazy building
def test_an_unbuilt_layer_says_what_is_missing():
    layer = kflows.MaskedAutoregressive()
    with pytest.raises(ValueError, match=r"not built.*build\(\(None, D\)\)"):
        layer.bijector()


def test_an_unbuilt_flow_says_how_to_build_it():
    flow = kflows.maf(num_layers=1)
    for call in (flow.distribution, flow.bijector, lambda: flow.sample(2)):
        with pytest.raises(ValueError, match="event_dim"):
            call()


def test_first_build_is_safe_under_threads():
    keras.utils.set_random_seed(0)
    flow = kflows.maf(num_layers=2, hidden_units=(8, 8))
    x = rows()
    results, errors = [], []
    barrier = threading.Barrier(4)

    def score():
        try:
            barrier.wait()
            results.append(flow.log_prob(x).numpy())
        except Exception as err:  # noqa: BLE001  (reported below)
            errors.append(err)

    threads = [threading.Thread(target=score) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert len(results) == 4
    single = kflows.maf(num_layers=2, hidden_units=(8, 8))
    single.build((None, 2))
    assert len(flow.weights) == len(single.weights)
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0])


# ---------------------------------------------------------------------- Keras conventions
@pytest.mark.parametrize("key", ["metrics", "weighted_metrics"])
def test_compile_metrics_are_refused_with_a_reason(key):
    flow = small()
    with pytest.raises(ValueError, match="no targets"):
        flow.compile(**{key: ["mse"]})


def test_class_weight_and_targets_are_refused():
    flow = small()
    flow.compile()
    with pytest.raises(ValueError, match="class_weight"):
        flow.fit(rows(8), class_weight={0: 1.0}, verbose=0)
    with pytest.raises(ValueError, match="no targets"):
        flow.evaluate(rows(8), rows(8), verbose=0)


def test_readme_strategy_recipe_fits_outside_the_scope():
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        flow = kflows.maf(num_layers=2, hidden_units=(8, 8))
        flow.compile()
    dataset = tf.data.Dataset.from_tensor_slices(rows(64)).batch(16)
    history = flow.fit(dataset, epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    # The lazily built weights and the optimizer's slots belong to the strategy.
    assert all(isinstance(v.value, tf.distribute.DistributedValues) for v in flow.weights)
    assert all(
        isinstance(v.value, tf.distribute.DistributedValues) for v in flow.optimizer.variables
    )


def test_evaluate_and_predict_never_change_the_weights():
    flow = kflows.Flow([kflows.ActNorm(), kflows.BatchNorm(), kflows.Coupling()])
    flow.compile()
    x = rows(64) * 3.0 + 1.0
    flow.build((None, 2))
    before = [w.copy() for w in flow.get_weights()]
    flow.evaluate(x, verbose=0)
    flow.predict(x, verbose=0)
    assert flow.needs_data_init  # only fit initialises ActNorm from data
    for w, w0 in zip(flow.get_weights(), before, strict=True):
        np.testing.assert_array_equal(w, w0)
