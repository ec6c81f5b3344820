"""The rational-quadratic spline transform and the spline layers and builders."""

import json

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
from helpers import perturb

import kflows
from kflows import data, transforms
from kflows.bijectors.spline import RationalQuadraticSpline

tfb = tfp.bijectors


def test_spline_parameter_count_and_lookup():
    spline = transforms.get({"name": "spline", "bins": 6, "bound": 4.0})
    assert isinstance(spline, transforms.RationalQuadraticSpline)
    assert spline.num_params == 3 * 6 - 1
    assert transforms.get("spline") == transforms.RationalQuadraticSpline()
    config = json.loads(json.dumps(transforms.serialize(spline)))
    assert transforms.get(config) == spline


@pytest.mark.parametrize(
    "kwargs",
    [
        {"bins": 1},
        {"bins": 2.5},
        {"bound": 0.0},
        {"bins": 4, "min_bin_width": 0.3},
        {"min_slope": 1},
    ],
)
def test_spline_rejects_bad_hyperparameters(kwargs):
    with pytest.raises(ValueError, match="Expected"):
        transforms.RationalQuadraticSpline(**kwargs)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_zero_parameters_give_exactly_the_identity(dtype):
    spline = transforms.RationalQuadraticSpline(bins=7, bound=2.0, min_slope=0.01)
    x = tf.constant(np.linspace(-5.0, 5.0, 41).reshape(-1, 1), dtype)
    bij = spline.bijector(tf.zeros([41, 1, spline.num_params], dtype))
    atol = 1e-12 if dtype == "float64" else 1e-6
    np.testing.assert_allclose(bij.forward(x), x, atol=atol)
    np.testing.assert_allclose(bij.inverse(tf.identity(x)), x, atol=atol)
    np.testing.assert_allclose(bij.forward_log_det_jacobian(x, event_ndims=0), 0.0, atol=atol)


def _spline_coupling_flow(bound):
    layer = kflows.Coupling(
        transform={"name": "spline", "bins": 4, "bound": bound}, conditioner={"hidden_units": (8,)}
    )
    flow = kflows.Flow([layer])
    flow.build((None, 2))
    perturb(flow, scale=0.5)
    return flow, layer


def test_points_outside_the_bound_have_finite_values_and_gradients():
    bound = 3.0
    flow, layer = _spline_coupling_flow(bound)
    # Feature 0 conditions feature 1 (mask "half"); feature 1 takes the awkward values.
    far = [1e3, -1e3, bound, -bound, 1e20, -1e20, 0.5]
    x = tf.constant([[0.3, v] for v in far], tf.float32)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        bij = layer.bijector()
        outputs = {
            "forward": bij.forward(x),
            "inverse": bij.inverse(x),
            "fldj": bij.forward_log_det_jacobian(x, event_ndims=1),
            "ildj": bij.inverse_log_det_jacobian(x, event_ndims=1),
            "log_prob": flow.log_prob(x),
        }
        totals = {
            k: tf.reduce_sum(tf.where(tf.math.is_finite(v), v, 0.0)) for k, v in outputs.items()
        }
    for key, value in outputs.items():
        if key != "log_prob":  # the base density of 1e20 underflows to -inf, honestly
            assert np.all(np.isfinite(value.numpy())), key
        assert not np.any(np.isnan(value.numpy())), key
        grads = tape.gradient(totals[key], [x, *flow.trainable_variables])
        for g in grads:
            assert g is None or not np.any(np.isnan(tf.convert_to_tensor(g).numpy())), key
    # Identity (and zero log-det) at and beyond the bound.
    np.testing.assert_array_equal(outputs["forward"][:-1], x[:-1])
    np.testing.assert_array_equal(outputs["inverse"][:-1], x[:-1])
    np.testing.assert_array_equal(outputs["fldj"][:-1], 0.0)
    assert not np.isclose(outputs["forward"][-1, 1], 0.5)  # the spline acts inside


def test_spline_layers_round_trip_their_config():
    layer = kflows.Coupling(
        transform={"name": "spline", "bins": 5, "bound": 2.0},
        mask="alternate",
        conditioner={"hidden_units": (8,)},
    )
    assert layer.transform == transforms.RationalQuadraticSpline(bins=5, bound=2.0)
    config = json.loads(json.dumps(layer.get_config()))
    assert config["transform"]["config"]["bins"] == 5
    assert kflows.Coupling.from_config(config).get_config() == config
    maf = kflows.MaskedAutoregressive(
        transform={"name": "spline", "bins": 3},
        conditioner={"order": "random", "seed": 4, "hidden_units": (8,)},
    )
    config = json.loads(json.dumps(maf.get_config()))
    assert kflows.MaskedAutoregressive.from_config(config).get_config() == config
    assert config["conditioner"]["config"]["order"] == "random"


@pytest.mark.slow
def test_spline_flow_trains_on_data_with_outliers_without_nan():
    rng = np.random.default_rng(0)
    x = data.two_moons(480, seed=1)
    outliers = rng.choice([-50.0, 50.0], size=(32, 2)).astype(np.float32)
    x = rng.permutation(np.concatenate([x, outliers]))
    flow = kflows.nsf_coupling(num_layers=2, hidden_units=(16,), bins=4)
    flow.compile()
    history = flow.fit(x, epochs=2, batch_size=32, verbose=0)  # 32 steps
    losses = history.history["loss"]
    assert len(losses) == 2 and np.all(np.isfinite(losses))
    assert np.all(np.isfinite(flow.log_prob(x).numpy()))


@pytest.mark.slow
@pytest.mark.parametrize("builder", ["nsf", "nsf_coupling", "glow"])
def test_builders_make_flows_that_learn_two_moons(builder):
    train, test = data.split(data.two_moons(2000, seed=3), seed=0)
    flow = getattr(kflows, builder)(2, hidden_units=(16, 16))
    flow.compile()
    flow.build((None, 2))
    before = flow.evaluate(test, verbose=0, return_dict=True)["loss"]
    flow.fit(train, epochs=4, batch_size=64, verbose=0)
    after = flow.evaluate(test, verbose=0, return_dict=True)["loss"]
    assert np.isfinite(after) and after < before - 0.2
    assert flow.sample(5, seed=0).shape == (5, 2)


def test_spline_coupling_keeps_static_shapes_in_graph_mode():
    # RealNVP slices by the static event size; the spline must not lose it in a tf.function.
    flow = kflows.nsf_coupling(num_layers=2, hidden_units=(8,), bins=3)
    flow.build((None, 2))
    log_prob = tf.function(lambda x: flow.distribution().log_prob(x))
    x = data.two_moons(16)
    np.testing.assert_allclose(log_prob(tf.constant(x)), flow.log_prob(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("point", [0.0, 1.25, -1.25, 0.3])
def test_inverse_gradients_are_right_on_the_knots(point):
    """At initialisation the knots sit at 0 and +-bound/2, where TFP's inverse cuts its
    gradient; the inverse and its log-det must still match finite differences."""
    layer = kflows.Coupling(
        transform={"name": "spline", "bins": 4, "bound": 2.5}, mask="alternate", dtype="float64"
    )
    kflows.Flow([layer], dtype="float64").build((None, 2))
    bias = layer.conditioner.out.bias  # zero: uniform bins, knots on round numbers
    x = tf.Variable([[0.5, point]], dtype=tf.float64)

    def value():
        bijector = layer.bijector()
        y = tf.identity(x)
        return tf.reduce_sum(bijector.inverse(y)) + tf.reduce_sum(
            bijector.inverse_log_det_jacobian(y, event_ndims=1)
        )

    with tf.GradientTape() as tape:
        out = value()
    grads = tape.gradient(out, [x, bias])
    for var, grad in zip([x, bias], grads, strict=True):
        start = var.numpy().copy()
        numeric = np.zeros(start.size)
        for i in range(start.size):
            for sign in (1, -1):
                moved = start.copy().ravel()
                moved[i] += sign * 1e-6
                var.assign(moved.reshape(start.shape))
                numeric[i] += sign * value().numpy() / 2e-6
        var.assign(start)
        # A knot is a kink in the parameters: central differences err by ~step size there.
        np.testing.assert_allclose(grad.numpy().ravel(), numeric, atol=1e-5)


BOUND = 2.0
TOL = {"float32": 1e-6, "float64": 1e-12}


TRANSFORM = transforms.RationalQuadraticSpline(bins=5, bound=BOUND)


def _tfp_spline(raw):
    """TFP's spline with the widths, heights and slopes of kflows' at ``raw``."""
    spline = TRANSFORM.bijector(raw)
    return tfb.RationalQuadraticSpline(
        spline.bin_widths, spline.bin_heights, spline.knot_slopes, range_min=-BOUND
    )


def _random_spline(dtype, rows, seed=0):
    """The transform's spline at random raw parameters ``[rows, 3, P]`` (one spline per
    feature, repeated over rows): ``(raw, spline, [widths, heights, slopes])``."""
    raw = np.random.default_rng(seed).normal(size=(1, 3, TRANSFORM.num_params))
    raw = tf.tile(tf.constant(raw, dtype), [rows, 1, 1])
    spline = TRANSFORM.bijector(raw)
    return raw, spline, [spline.bin_widths, spline.bin_heights, spline.knot_slopes]


def _points(knots, dtype, seed=1):
    """Every knot (``knots [1, 3, K]``), both ends, points between and outside the range."""
    rng = np.random.default_rng(seed)
    between = rng.uniform(-BOUND, BOUND, size=(12, 3))
    ends = np.array([[-BOUND], [BOUND], [-1.5 * BOUND], [1.5 * BOUND], [1e3]]) * np.ones(3)
    points = np.concatenate([np.transpose(knots[0]), between, ends])
    return tf.constant(points, dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_spline_matches_tfp_with_its_gradients(dtype):
    """Same map as tfb.RationalQuadraticSpline(range_min=-bound): values, log-dets and the
    forward's gradients, on the knots, between them and outside the range."""
    rows = 22  # 5 knots + 12 points between + 5 outside
    raw, spline, params = _random_spline(dtype, rows)
    reference = _tfp_spline(raw)
    x_knots = tf.math.cumsum(params[0][:1], axis=-1, exclusive=True) - BOUND
    y_knots = tf.math.cumsum(params[1][:1], axis=-1, exclusive=True) - BOUND
    x, y = _points(x_knots.numpy(), dtype), _points(y_knots.numpy(), dtype)
    # float32 log-dets of steep bins round differently in the two by up to ~1e-5: both are
    # that far from the float64 value.
    log_det_tol = 3e-5 if dtype == "float32" else TOL[dtype]
    checks = [
        ("forward", x, TOL[dtype]),
        ("inverse", y, TOL[dtype]),
        ("forward_log_det_jacobian", x, log_det_tol),
        ("inverse_log_det_jacobian", y, log_det_tol),
    ]
    for method, z, tol in checks:
        kwargs = {} if method in ("forward", "inverse") else {"event_ndims": 0}
        ours = getattr(spline, method)(tf.identity(z), **kwargs)
        theirs = getattr(reference, method)(tf.identity(z), **kwargs)
        np.testing.assert_allclose(ours, theirs, rtol=TOL[dtype], atol=tol, err_msg=method)
    # The same splines with parameters broadcast against the points, and one spline alone.
    shared = RationalQuadraticSpline(*[p[:1] for p in params], bound=BOUND)
    np.testing.assert_allclose(shared.inverse(y), spline.inverse(y), rtol=TOL[dtype])
    alone = RationalQuadraticSpline(*[p[0, 0] for p in params], bound=BOUND)
    np.testing.assert_allclose(alone.inverse(y[:, 0]), spline.inverse(y)[:, 0], rtol=TOL[dtype])

    # Gradients for x and the raw parameters. (For the widths themselves they differ by a
    # multiple of (1, ..., 1), which the softmax takes out: TFP's last knot moves with the
    # sum of the widths, kflows' is the bound itself.)
    def forward_grads(make):
        with tf.GradientTape() as tape:
            tape.watch([x, raw])
            bijector = make(raw)
            out = bijector.forward(x) + bijector.forward_log_det_jacobian(x, event_ndims=0)
        return tape.gradient(out, [x, raw])

    pairs = zip(forward_grads(TRANSFORM.bijector), forward_grads(_tfp_spline), strict=True)
    for ours, theirs in pairs:
        np.testing.assert_allclose(ours, theirs, rtol=10 * TOL[dtype], atol=10 * TOL[dtype])


def test_inverse_gradients_follow_the_implicit_function_theorem():
    """With x = f^-1(y; theta): dx/dy = 1 / f'(x) and dx/dtheta = -(df/dtheta) / f'(x),
    and the chain rule through ildj(y) = -fldj(x(y)); y on every knot included, where TFP's
    inverse loses its gradient."""
    _, spline, params = _random_spline("float64", rows=19)
    y_knots = tf.math.cumsum(params[1][:1], axis=-1, exclusive=True) - BOUND
    y = _points(y_knots.numpy(), "float64")[:-3]  # the points inside the range
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([y, *params])
        x = spline.inverse(y)
        ildj = spline.inverse_log_det_jacobian(y, event_ndims=0)
    x_grads = tape.gradient(x, [y, *params])
    ildj_grads = tape.gradient(ildj, [y, *params])
    x_fixed = tf.constant(x.numpy())
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([x_fixed, *params])
        forward = RationalQuadraticSpline(*params, bound=BOUND)
        fx = forward.forward(x_fixed)
        fldj = forward.forward_log_det_jacobian(x_fixed, event_ndims=0)
    slope = tf.exp(fldj)
    dfdtheta = tape.gradient(fx, params)
    dfldj_dx, *dfldj_dtheta = tape.gradient(fldj, [x_fixed, *params])
    np.testing.assert_allclose(fx, y, atol=1e-12)
    np.testing.assert_allclose(x_grads[0], 1.0 / slope, rtol=1e-9)
    np.testing.assert_allclose(ildj_grads[0], -dfldj_dx / slope, rtol=1e-9, atol=1e-12)
    for i in range(3):
        dxdtheta = -dfdtheta[i] / slope[..., tf.newaxis]
        np.testing.assert_allclose(x_grads[i + 1], dxdtheta, rtol=1e-9, atol=1e-12)
        expected = -(dfldj_dtheta[i] + dfldj_dx[..., tf.newaxis] * dxdtheta)
        np.testing.assert_allclose(ildj_grads[i + 1], expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("inverse", [False, True])
def test_second_derivatives_through_the_hand_written_gradient(inverse):
    """d/dtheta of the map's derivative, taken through the hand-written gradient, equals
    the first derivative of exp(log-det), the same function of theta."""
    _, _, params = _random_spline("float64", rows=19)
    knots = tf.math.cumsum(params[1 if inverse else 0][:1], axis=-1, exclusive=True) - BOUND
    z = _points(knots.numpy(), "float64")[:-3]  # the points inside the range
    with tf.GradientTape(persistent=True) as outer:
        outer.watch(params)
        with tf.GradientTape() as inner:
            inner.watch(z)
            spline = RationalQuadraticSpline(*params, bound=BOUND)
            value = spline.inverse(z) if inverse else spline.forward(z)
            log_det = (
                spline.inverse_log_det_jacobian if inverse else spline.forward_log_det_jacobian
            )(z, event_ndims=0)
        derivative = inner.gradient(value, z)
        direct = tf.exp(log_det)
    np.testing.assert_allclose(derivative, direct, rtol=1e-12)
    second = outer.gradient(derivative, params)
    first = outer.gradient(direct, params)
    for a, b in zip(second, first, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_huge_and_nan_inputs(dtype):
    """Huge inputs: the identity, a zero log-det, finite gradients (none for the
    parameters); NaN: NaN value and log-det, both ways."""
    _, spline, params = _random_spline(dtype, rows=4)
    huge = 1e300 if dtype == "float64" else 1e20
    rows = [[huge, -huge, 1e20], [-1e20, np.inf, -np.inf], [BOUND, -BOUND, 1e3], [0.1, np.nan, 0.2]]
    z = tf.constant(rows, dtype)
    for value_fn, log_det_fn in [
        (spline.forward, spline.forward_log_det_jacobian),
        (spline.inverse, spline.inverse_log_det_jacobian),
    ]:
        with tf.GradientTape() as tape:
            tape.watch([z, *params])
            value = value_fn(tf.identity(z))
            log_det = log_det_fn(tf.identity(z), event_ndims=0)
            total = tf.reduce_sum(value[:3]) + tf.reduce_sum(log_det[:3])
        np.testing.assert_array_equal(value[:3], z[:3])
        np.testing.assert_array_equal(log_det[:3], 0.0)
        assert np.isnan(value[3, 1]) and np.isnan(log_det[3, 1])
        assert np.all(np.isfinite(value.numpy()[3, [0, 2]]))
        dz, *dparams = tape.gradient(total, [z, *params])
        np.testing.assert_array_equal(dz[:3], 1.0)
        for grad in dparams:
            np.testing.assert_array_equal(grad[:3], 0.0)


def test_one_pass_graph_and_xla():
    """Value and log-det share one pass (one square root, one bin table), the graph holds no
    assertion or dynamic broadcast, and XLA compiles it to the same numbers."""
    spline_transform = transforms.RationalQuadraticSpline(bins=4, bound=BOUND)
    rng = np.random.default_rng(0)
    params = tf.constant(rng.normal(size=(6, 3, spline_transform.num_params)), tf.float32)
    y = tf.constant(rng.uniform(-2.5, 2.5, size=(6, 3)), tf.float32)

    def inverse_and_grads(y, params):
        with tf.GradientTape() as tape:
            tape.watch(params)
            spline = spline_transform.bijector(params)
            x = spline.inverse(y)
            ildj = spline.inverse_log_det_jacobian(y, event_ndims=1)
            total = tf.reduce_sum(x) + tf.reduce_sum(ildj)
        return x, ildj, tape.gradient(total, params)

    spec = [
        tf.TensorSpec([None, 3], tf.float32),
        tf.TensorSpec([None, 3, spline_transform.num_params], tf.float32),
    ]
    graph = tf.function(inverse_and_grads).get_concrete_function(*spec).graph
    forward_ops = [op for op in graph.get_operations() if not op.name.startswith("gradient")]
    kinds = [op.type for op in forward_ops]
    assert kinds.count("Sqrt") == 1 and kinds.count("BatchMatMulV2") == 1
    # The spline's own pass (not the event sum around it) is all element-wise on static shapes.
    own = {op.type for op in forward_ops if "/inverse/" in op.name}
    assert own and not {"Assert", "BroadcastArgs", "BroadcastTo", "Shape"} & own
    eager = inverse_and_grads(y, params)
    compiled = tf.function(inverse_and_grads, jit_compile=True)(y, params)
    # Two unknown batch dimensions take the reshape through the dynamic shape.
    params_4d, y_3d = tf.reshape(params, [2, 3, 3, -1]), tf.reshape(y, [2, 3, 3])
    unknown = tf.function(
        inverse_and_grads,
        input_signature=[
            tf.TensorSpec([None, None, 3], tf.float32),
            tf.TensorSpec([None, None, 3, spline_transform.num_params], tf.float32),
        ],
    )(y_3d, params_4d)
    unknown = [tf.reshape(t, e.shape) for t, e in zip(unknown, eager, strict=True)]
    for a, b, c in zip(eager, compiled, unknown, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(a, c, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "shapes, match",
    [
        (([2, 4], [2, 3], [2, 3]), "bin_heights"),
        (([2, 4], [2, 4], [2, 4]), "knot_slopes"),
        (([2, 4], [3, 4], [2, 3]), "batch shape"),
        (([], [], []), "static rank"),
    ],
)
def test_spline_bijector_rejects_bad_shapes(shapes, match):
    args = [tf.ones(shape) for shape in shapes]
    with pytest.raises(ValueError, match=match):
        RationalQuadraticSpline(*args, bound=1.0)
    with pytest.raises(ValueError, match="bound > 0"):
        RationalQuadraticSpline(tf.ones([4]), tf.ones([4]), tf.ones([3]), bound=0.0)
