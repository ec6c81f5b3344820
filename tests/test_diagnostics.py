"""kflows.diagnostics: per-layer accuracy, spline tails, conditioning and NaN sources."""

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
from helpers import perturb

import kflows
from kflows import diagnostics

tfb = tfp.bijectors


def mixed_flow(dtype="float64"):
    """A built, perturbed flow with one layer of each kind the report has a column for."""
    keras.utils.set_random_seed(0)
    flow = kflows.Flow(
        [
            kflows.MaskedAutoregressive(
                transform={"name": "spline", "bins": 4, "bound": 2.0},
                conditioner={"hidden_units": (8,)},
                dtype=dtype,
            ),
            kflows.LULinear("random", seed=1, dtype=dtype),
            kflows.Coupling(conditioner={"hidden_units": (8,)}, dtype=dtype),
            kflows.BatchNorm(dtype=dtype),
        ]
    )
    flow.build((None, 3))
    perturb(flow, scale=0.2)
    return flow


def test_report_of_a_healthy_flow():
    flow = mixed_flow()
    x = np.random.default_rng(0).normal(size=(32, 3))
    report = diagnostics.check(flow, x)
    assert [r.kind for r in report.layers] == [
        "MaskedAutoregressive",
        "LULinear",
        "Coupling",
        "BatchNorm",
    ]
    for r in report.layers:
        assert r.round_trip_error < 1e-9 and r.log_det_error < 1e-9, r
        assert r.non_finite_values == r.non_finite_log_det == 0
    assert report.first_non_finite is None and report.non_finite_inputs == 0
    # The spline's share of inputs outside [-2, 2] is that of the data (layer 0 sees x).
    assert report.layers[0].out_of_bound == pytest.approx(np.mean(np.abs(x) >= 2.0))
    assert [r.out_of_bound is None for r in report.layers] == [False, True, True, True]
    # The condition number of LULinear's matrix P L U, built from its weight.
    packed = flow.flow_layers[1].lower_upper.numpy()
    lower = np.tril(packed, -1) + np.eye(3)
    upper = np.triu(packed, 1) + np.diag(np.exp(np.diag(packed)))
    assert report.layers[1].condition_number == pytest.approx(np.linalg.cond(lower @ upper))
    assert [r.condition_number is None for r in report.layers] == [True, False, True, True]
    # The loss is the flow's own mean NLL.
    assert report.loss == pytest.approx(-flow.log_prob(x).numpy().mean())
    table = str(report)
    assert len(table.splitlines()) == 1 + 4 + 1  # header, layers, summary
    assert all(layer.name in table for layer in flow.flow_layers)
    assert "first NaN/inf: none" in table


def test_training_mode_follows_the_training_step_and_changes_nothing():
    flow = mixed_flow()
    x = np.random.default_rng(1).normal(2.0, 3.0, size=(64, 3))
    before = [w.copy() for w in flow.get_weights()]
    report = diagnostics.check(flow, x, training=True, gradients=True)
    for w, w0 in zip(flow.get_weights(), before, strict=True):
        np.testing.assert_array_equal(w, w0)  # moving statistics restored
    assert all(r.non_finite_gradients == 0 for r in report.layers)
    # Batch statistics, as in fit: the loss is the training log-likelihood's.
    assert report.loss != pytest.approx(-flow.log_prob(x).numpy().mean())
    assert report.loss == pytest.approx(-flow.log_prob(x, training=True).numpy().mean())


def test_the_first_layer_to_overflow_is_found_and_later_ones_are_not_blamed():
    flow = kflows.Flow([kflows.Coupling(), kflows.LULinear(), kflows.Reverse(), kflows.LULinear()])
    flow.build((None, 2))
    # The inverse of LULinear divides by exp(-85) ~ 1e-37: rows of size 1e3 overflow there.
    flow.flow_layers[1].lower_upper.assign(np.diag([-85.0, 0.0]).astype("float32"))
    x = np.full((10, 2), 1e-20, np.float32)
    x[[2, 7]] = 1e3
    x[5, 1] = np.nan
    report = diagnostics.check(flow, x)
    assert report.non_finite_inputs == 1  # row 5, left out of every count
    assert [r.non_finite_values for r in report.layers] == [0, 2, 0, 0]
    found = report.first_non_finite
    name = flow.flow_layers[1].name
    assert (found.stage, found.layer, found.index, found.count) == ("value", name, 1, 2)
    assert f"layer 1 {name!r} (LULinear): NaN or inf in its output" in str(found)
    assert report.layers[1].condition_number > 1e30
    assert report.layers[1].largest > 1e16  # the finite rows grew too


def test_values_too_large_for_the_base_are_found_at_the_base():
    flow = kflows.maf(num_layers=1, hidden_units=(4,), event_dim=2)
    report = diagnostics.check(flow, np.array([[1e20, 0.0], [0.5, 0.5]], np.float32))
    assert report.first_non_finite.stage == "base" and report.base_non_finite == 1
    assert "base log-density" in str(report.first_non_finite)


def test_one_layer_alone():
    layer = kflows.Coupling(transform="spline", conditioner={"hidden_units": (4,)})
    layer.build((None, 4))
    x = np.zeros((5, 4), np.float32)
    x[0, 3] = 10.0  # outside the spline's bound of 3, in a transformed feature
    report = diagnostics.check(layer, x)
    (only,) = report.layers
    assert only.out_of_bound == pytest.approx(1 / 10)  # 10 transformed inputs, 1 outside
    assert report.loss is None and report.base_non_finite is None


def test_conditional_flow_with_per_row_and_shared_context():
    flow = kflows.maf(num_layers=2, hidden_units=(4,), context_dim=1, event_dim=2)
    perturb(flow)
    x = np.random.default_rng(3).normal(size=(6, 2)).astype("float32")
    context = np.arange(6, dtype=np.float32)[:, None]
    context[4] = np.inf
    report = diagnostics.check(flow, x, context)
    assert report.non_finite_inputs == 1 and report.first_non_finite is None
    expected = -flow.log_prob(np.delete(x, 4, 0), np.delete(context, 4, 0)).numpy().mean()
    assert report.loss == pytest.approx(expected, rel=1e-5)
    shared = diagnostics.check(flow, x, [0.5])
    assert shared.loss == pytest.approx(-flow.log_prob(x, [0.5]).numpy().mean(), rel=1e-5)


def test_errors_say_what_was_expected():
    with pytest.raises(ValueError, match="Expected a built flow"):
        diagnostics.check(kflows.maf(), np.zeros((2, 2)))
    with pytest.raises(TypeError, match="Expected a kflows.Flow or a kflows FlowLayer; got str"):
        diagnostics.check("maf", np.zeros((2, 2)))
    flow = kflows.maf(num_layers=1, event_dim=2)
    with pytest.raises(ValueError, match="D=2 features"):
        diagnostics.check(flow, np.zeros((2, 3)))
    with pytest.raises(ValueError, match="jacobian_rows"):
        diagnostics.check(flow, np.zeros((2, 2)), jacobian_rows=-1)
    bijector = flow.bijector()
    with pytest.raises(ValueError, match="Expected direction in"):
        diagnostics.round_trip_error(bijector, np.zeros((2, 2)), "sideways")


def test_log_det_error_catches_a_wrong_log_det():
    class WrongLogDet(tfb.Scale):
        def _inverse_log_det_jacobian(self, y):
            return -tf.math.log(tf.abs(self.scale)) + 0.5

    bijector = WrongLogDet(tf.constant([2.0, 3.0], tf.float64))
    errors = diagnostics.log_det_error(bijector, np.ones((4, 2)), "inverse")
    np.testing.assert_allclose(errors, 1.0)  # 0.5 per feature, summed over two features
    right = diagnostics.log_det_error(tfb.Scale([2.0, 3.0]), np.ones((4, 2)), "inverse")
    np.testing.assert_allclose(right, 0.0, atol=1e-6)


def test_finite_gradients_too_large_to_square_are_found():
    # Rows of size 1e10 give gradients of size ~1e24: finite, but their squares overflow
    # float32, as Adam's second moment would.
    flow = kflows.maf(num_layers=1, hidden_units=(4,), event_dim=2)
    perturb(flow)
    x = np.array([[3e10, 1e10], [0.5, 0.5]], np.float32)
    report = diagnostics.check(flow, x, gradients=True)
    found = report.first_non_finite
    assert (found.stage, found.index) == ("gradient_norm", 0)
    assert report.layers[0].non_finite_gradients == 0
    assert report.layers[0].gradient_norm > np.sqrt(np.finfo(np.float32).max)
    assert "squared norm overflows" in str(found)
    assert diagnostics.check(flow, x).first_non_finite is None  # without gradients=True
