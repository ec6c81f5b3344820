"""Flow matching: the path and its loss, the OT coupling, the density checks, surfaces."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from scipy.optimize import linear_sum_assignment

import kflows
from kflows import ode
from kflows.builders import flow_matching
from kflows.matching import (
    FlowMatching,
    conditional_ot_path,
    ot_partners,
    sample_times,
    sinkhorn_log_plan,
)

# Loose tolerances keep the solves quick; each check's tolerance is set against them.
TOL = dict(rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def trained():
    """A small model after 200 flow-matching steps on two moons (a few seconds)."""
    keras.utils.set_random_seed(0)
    model = flow_matching(hidden_units=(32, 32), seed=0, **TOL)
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    model.fit(kflows.data.two_moons(2048), epochs=25, batch_size=256, verbose=0)
    return model


def twin(model, **kwargs):
    """A model with ``model``'s weights and other FFJORD (solver, trace) arguments."""
    other = flow_matching(hidden_units=(32, 32), event_dim=2, **{**TOL, **kwargs})
    other.set_weights(model.get_weights())
    return other


# ---------------------------------------------------------------------- the path and loss
def test_target_is_the_time_derivative_of_the_path():
    rng = np.random.default_rng(0)
    x0, x1 = (tf.constant(rng.standard_normal((5, 3))) for _ in range(2))
    t = tf.constant(rng.uniform(size=(5, 1)))
    sigma, h = 0.1, 1e-6
    start, target = conditional_ot_path(x0, x1, tf.zeros_like(t), sigma)
    np.testing.assert_allclose(start, x0)  # t = 0: the base draw
    end, _ = conditional_ot_path(x0, x1, tf.ones_like(t), sigma)
    np.testing.assert_allclose(end, x1 + sigma * x0)  # t = 1: the data, widened by sigma
    ahead, _ = conditional_ot_path(x0, x1, t + h, sigma)
    behind, _ = conditional_ot_path(x0, x1, t - h, sigma)
    np.testing.assert_allclose((ahead - behind) / (2 * h), target, atol=1e-8)


def test_loss_is_the_weighted_mean_of_rows_and_depends_on_the_seed():
    model = flow_matching(hidden_units=(8,), event_dim=2, seed=0)
    x = tf.constant(kflows.data.two_moons(64))
    loss, rows = model.flow_matching_loss(x, seed=3)
    assert rows.shape == (64,) and np.isclose(loss, rows.numpy().mean(), rtol=1e-6)
    again, _ = model.flow_matching_loss(x, seed=3)
    other, _ = model.flow_matching_loss(x, seed=4)
    assert float(again) == float(loss) and float(other) != float(loss)
    weight = tf.constant(np.arange(64) % 2, tf.float32)  # rows 1, 3, 5, ...
    weighted, same_rows = model.flow_matching_loss(x, sample_weight=weight, seed=3)
    np.testing.assert_array_equal(same_rows, rows)  # the same noise for the same batch
    np.testing.assert_allclose(weighted, rows.numpy()[1::2].mean(), rtol=1e-6)


def test_time_samplers_stay_in_the_unit_interval():
    seed = tf.constant([0, 1])
    uniform = sample_times({"name": "uniform"}, 20_000, seed, tf.float32).numpy()
    assert uniform.shape == (20_000, 1) and 0 <= uniform.min() and uniform.max() <= 1
    assert abs(uniform.mean() - 0.5) < 0.01 and abs(uniform.var() - 1 / 12) < 0.005
    spec = {"name": "logit_normal", "loc": 1.0, "scale": 0.5}
    logit = sample_times(spec, 20_000, seed, tf.float32).numpy()
    logits = np.log(logit / (1 - logit))
    assert abs(logits.mean() - 1.0) < 0.02 and abs(logits.std() - 0.5) < 0.02


# ---------------------------------------------------------------------- the OT coupling
def test_sinkhorn_plan_has_uniform_marginals():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((64, 2)), rng.standard_normal((64, 2)) + 2.0
    cost = tf.constant(((a[:, None] - b[None]) ** 2).sum(-1))
    plan = np.exp(sinkhorn_log_plan(cost, 0.03, 100).numpy())
    np.testing.assert_allclose(plan.sum(0), 1 / 64, rtol=0.02)
    np.testing.assert_allclose(plan.sum(1), 1 / 64, rtol=0.02)


def test_ot_pairs_cost_near_the_exact_assignment_and_keep_the_base_distribution():
    rng = np.random.default_rng(1)
    x1 = tf.constant(kflows.data.two_moons(256, seed=2))
    paired_costs, exact_costs, independent_costs, norms = [], [], [], []
    for trial in range(4):
        x0 = tf.constant(rng.standard_normal((256, 2)), tf.float32)
        cost = ((x0.numpy()[:, None] - x1.numpy()[None]) ** 2).sum(-1)
        rows, cols = linear_sum_assignment(cost)
        exact_costs.append(cost[rows, cols].mean())
        independent_costs.append(np.diag(cost).mean())
        paired = ot_partners(x0, x1, 0.03, 50, tf.constant([trial, 0])).numpy()
        paired_costs.append(((paired - x1.numpy()) ** 2).sum(-1).mean())
        norms.append((paired**2).sum(-1).mean())
    exact, paired = np.mean(exact_costs), np.mean(paired_costs)
    assert paired < 1.5 * exact < 0.2 * np.mean(independent_costs)
    # Partners are drawn from the plan, whose rows each hold 1/B: the base draws keep their
    # law (E|x0|^2 = D = 2); taking each column's most likely partner gives about 2.6.
    assert abs(np.mean(norms) - 2.0) < 0.15


# ---------------------------------------------------------------------- densities
def test_density_integrates_to_one_on_a_grid(trained):
    grid = np.linspace(-5.0, 5.0, 81)
    xx, yy = np.meshgrid(grid, grid)
    points = np.stack([xx.ravel(), yy.ravel()], axis=1).astype(np.float32)
    density = np.exp(trained.log_prob(points).numpy())
    assert density.max() > 0.19  # trained: above the base's peak of 1 / (2 pi) = 0.16
    assert abs(density.sum() * (grid[1] - grid[0]) ** 2 - 1.0) < 0.02


def test_hutchinson_log_prob_is_an_unbiased_estimate_of_the_exact_one(trained):
    point = np.array([[0.3, -0.2]], np.float32)
    exact = float(trained.log_prob(point)[0])
    # Each row draws its own probes, so 256 copies of a point are 256 estimates.
    stochastic = twin(trained, trace="hutchinson", num_probes=2, rtol=1e-4, atol=1e-4)
    estimates = stochastic.log_prob(np.repeat(point, 256, axis=0)).numpy()
    assert estimates.std() > 1e-3
    assert abs(estimates.mean() - exact) < 4 * estimates.std() / np.sqrt(len(estimates)) + 2e-3


def test_sample_and_log_prob_agree_with_log_prob_and_sample(trained):
    samples, log_prob = trained.sample_and_log_prob(64, seed=3)
    np.testing.assert_allclose(trained.sample(64, seed=3), samples, atol=1e-4)
    # log_prob solves back from the samples: the round trip of the map and of the log-det.
    np.testing.assert_allclose(trained.log_prob(samples), log_prob, atol=2e-3)
    # distribution() is the same density, usable in TFP code.
    dist = trained.distribution()
    np.testing.assert_allclose(dist.log_prob(samples[:8]), log_prob[:8], atol=2e-3)


def test_fixed_step_solver_agrees_with_the_adaptive_one(trained):
    rk4 = twin(trained, solver="rk4", solver_options={"num_steps": 40})
    x = kflows.data.two_moons(64, seed=9)
    np.testing.assert_allclose(rk4.log_prob(x), trained.log_prob(x), atol=5e-3)
    np.testing.assert_allclose(rk4.sample(64, seed=1), trained.sample(64, seed=1), atol=5e-3)


def test_fit_reports_the_regression_loss_and_evaluate_the_nll(trained):
    x = kflows.data.two_moons(512, seed=4)
    result = trained.evaluate(x, batch_size=512, verbose=0, return_dict=True)
    assert set(result) == {"loss", "bits_per_dim", "fm_loss"}
    np.testing.assert_allclose(result["loss"], -trained.log_prob(x).numpy().mean(), rtol=1e-4)
    assert result["fm_loss"] > 0 and result["fm_loss"] != result["loss"]
    # evaluate's regression loss uses the same noise at every call.
    again = trained.evaluate(x, batch_size=512, verbose=0, return_dict=True)
    assert again["fm_loss"] == result["fm_loss"]
    history = trained.history.history
    assert set(history) == {"loss", "fm_loss"} and history["loss"] == history["fm_loss"]
    assert history["loss"][-1] < 0.8 * history["loss"][0]


def test_training_is_reproducible_from_the_seed():
    x = kflows.data.two_moons(256)
    weights = []
    for _ in range(2):
        keras.utils.set_random_seed(5)
        model = flow_matching(hidden_units=(8,), coupling="ot", seed=7, event_dim=2)
        model.compile()
        model.fit(x, epochs=1, batch_size=64, verbose=0)
        weights.append(model.get_weights())
    for a, b in zip(*weights, strict=True):
        np.testing.assert_array_equal(a, b)


def test_mixed_float16_computes_the_network_low_and_the_maths_in_float32():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        keras.utils.set_random_seed(0)
        model = flow_matching(hidden_units=(8,), rtol=1e-3, atol=1e-3, seed=0)
        model.compile()
        x = kflows.data.two_moons(128)
        history = model.fit(x, epochs=1, batch_size=64, verbose=0)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    network = model.flow_layers[0].conditioner
    assert network.compute_dtype == "float16" and network.out.compute_dtype == "float32"
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert np.isfinite(history.history["loss"]).all()
    loss, rows = model.flow_matching_loss(tf.constant(x), seed=0)
    assert loss.dtype == tf.float32 and rows.dtype == tf.float32
    samples, log_prob = model.sample_and_log_prob(4, seed=0)
    assert samples.dtype == log_prob.dtype == tf.float32
    assert np.isfinite(log_prob.numpy()).all()


# ---------------------------------------------------------------------- arguments
@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"time_sampler": "beta"}, ValueError, "time_sampler one of"),
        ({"time_sampler": {"name": "logit_normal", "mean": 0.0}}, ValueError, "parameters"),
        ({"time_sampler": {"name": "logit_normal", "scale": 0.0}}, ValueError, "scale > 0"),
        ({"time_sampler": 3}, TypeError, "time_sampler as a name"),
        ({"coupling": "exact_ot"}, ValueError, "coupling one of"),
        ({"coupling": {"name": "ot", "reg": -1.0}}, ValueError, "coupling reg"),
        ({"coupling": {"name": "ot", "iterations": 2.5}}, TypeError, "iterations as an integer"),
        ({"coupling": {"name": "ot", "iterations": 0}}, ValueError, "iterations >= 1"),
        ({"sigma_min": 1.0}, ValueError, r"sigma_min in \[0.0, 1.0\); got 1.0"),
        ({"sigma_min": -0.1}, ValueError, "sigma_min in"),
        ({"sigma_min": float("nan")}, ValueError, "sigma_min in"),
        ({"sigma_min": True}, TypeError, "sigma_min as a real number"),
        ({"seed": -1}, ValueError, "seed in"),
        ({"seed": 2.0}, TypeError, "seed as an int"),
        ({"num_layers": 2}, ValueError, "num_layers=1"),
        ({"solver": "heun"}, ValueError, "solver one of"),
        ({"solver": "rk4", "solver_options": {"num_steps": 0}}, ValueError, "num_steps >= 1"),
        ({"solver": "rk4", "solver_options": {"num_steps": 8.0}}, TypeError, "num_steps as an"),
        ({"solver": "rk4", "solver_options": {"max_num_steps": 8}}, ValueError, "num_steps"),
        ({"coupling": "ot", "context_dim": 1}, ValueError, "coupling='independent'"),
    ],
)
def test_bad_arguments_are_refused_with_what_was_expected(kwargs, error, match):
    with pytest.raises(error, match=match):
        flow_matching(**kwargs)


def test_layers_and_bases_flow_matching_cannot_train_are_refused():
    with pytest.raises(ValueError, match="one kflows.FFJORD layer"):
        FlowMatching([kflows.Coupling()])
    with pytest.raises(ValueError, match="one kflows.FFJORD layer"):
        FlowMatching([kflows.FFJORD(), kflows.FFJORD()])
    with pytest.raises(ValueError, match="integration time 1.0"):
        FlowMatching([kflows.FFJORD(time=2.0)])
    model = flow_matching(hidden_units=(8,), base=kflows.DiagonalNormal())
    with pytest.raises(ValueError, match="without trainable weights"):
        model.build((None, 2))
    fixed = kflows.DiagonalNormal()
    fixed.trainable = False
    assert flow_matching(hidden_units=(8,), base=fixed, event_dim=2).built
    conditional = flow_matching(hidden_units=(8,), coupling="ot")
    with pytest.raises(ValueError, match="coupling='independent'"):
        conditional.log_prob(np.zeros((2, 2), np.float32), np.zeros((2, 1), np.float32))


def test_fixed_step_solvers_integrate_to_their_order():
    errors = {}
    for name, solver in ode.FIXED_STEP.items():
        result = solver(num_steps=10).solve(
            lambda t, y: -y, 0.0, tf.constant([1.0], tf.float64), [1.0]
        )
        errors[name] = abs(float(result.states[-1][0]) - np.exp(-1.0))
    assert errors["rk4"] < 1e-6 < errors["midpoint"] < 1e-3


# ---------------------------------------------------------------------- end to end
@pytest.mark.slow
def test_conditional_model_trains_samples_saves_and_exports(tmp_path):
    """Plain fit on (x, context), validation, conditional samples, .keras and the export."""
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    context = rng.uniform(-1.0, 1.0, (4096, 1)).astype("float32")
    x = rng.normal(context * [1.0, -2.0], 0.3).astype("float32")
    # A fixed-step solver: its graphs trace in a fraction of Dormand-Prince's time (the
    # export traces three), and its config travels through .keras and the export too.
    model = flow_matching(
        hidden_units=(32, 32),
        context_dim=1,
        seed=1,
        solver="rk4",
        solver_options={"num_steps": 8},
    )
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    history = model.fit(
        (x, context),
        epochs=6,
        batch_size=256,
        validation_data=(x[:256], context[:256]),
        verbose=0,
    ).history
    assert set(history) == {"loss", "fm_loss", "val_loss", "val_fm_loss", "val_bits_per_dim"}
    assert history["loss"][-1] < 0.7 * history["loss"][0]
    assert history["val_loss"][-1] < 1.0  # the NLL; the base alone scores about 4.3 here

    conditions = np.array([[0.8], [-0.6]], np.float32)
    samples = model.sample(2000, context=conditions, seed=0).numpy()
    assert samples.shape == (2000, 2, 2)
    np.testing.assert_allclose(samples.mean(0), conditions * [1.0, -2.0], atol=0.1)
    np.testing.assert_allclose(samples.std(0), 0.3, atol=0.15)  # the base's is 1

    probe, probe_context = x[:16], context[:16]
    expected = model.log_prob(probe, probe_context).numpy()
    path = tmp_path / "fm.keras"
    model.save(path)
    loaded = kflows.load(path)
    assert isinstance(loaded, FlowMatching)
    for key in ("sigma_min", "time_sampler", "coupling", "seed", "context_dim"):
        assert loaded.get_config()[key] == model.get_config()[key]
    velocity = loaded.flow_layers[0]
    assert (velocity.solver, velocity.solver_options) == ("rk4", {"num_steps": 8})
    np.testing.assert_array_equal(loaded.log_prob(probe, probe_context), expected)
    np.testing.assert_array_equal(
        loaded.sample(5, context=conditions, seed=2), model.sample(5, context=conditions, seed=2)
    )

    served = tf.saved_model.load(model.export(tmp_path / "export", warmup=False))
    assert {"log_prob", "sample", "sample_and_log_prob"} <= set(served.signatures)
    out = served.signatures["log_prob"](x=tf.constant(probe), context=tf.constant(probe_context))
    np.testing.assert_allclose(out["log_prob"], expected, atol=1e-5)
    draw = {"num_samples": tf.constant(7), "seed": tf.constant([1, 2]), "context": conditions}
    out = served.signatures["sample"](**draw)
    in_process = model.sample(7, context=conditions, seed=[1, 2])
    np.testing.assert_allclose(out["samples"], in_process, atol=1e-5)
    out = served.signatures["sample_and_log_prob"](**draw)
    samples, log_prob = model.sample_and_log_prob(7, context=conditions, seed=[1, 2])
    np.testing.assert_allclose(out["samples"], samples, atol=1e-5)
    np.testing.assert_allclose(out["log_prob"], log_prob, atol=1e-4)
