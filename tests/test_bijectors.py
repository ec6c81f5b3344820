"""The one-pass bijectors (autoregressive, coupling): exact, one conditioner pass, live.

The conditioners are small hand-written maps in float64, so that every check is about the
bijector itself: a fixed random masked linear map for the autoregressive transform, a small
dense map for the coupling transform. Features D = 5 and 7, with masks that are not
contiguous, so that a wrong permutation cannot undo itself.
"""

import copy
import pickle
import warnings

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from kflows import _compat, transforms
from kflows.bijectors import Autoregressive, Coupling

tfb, tfd = tfp.bijectors, tfp.distributions

DIMS = (5, 7)


class MaskedLinear:
    """``params_i = (z @ (W * M) + b)_i`` where ``M`` lets feature j reach i iff j comes first.

    ``order`` gives each feature's place; ``np.arange(D)`` is the natural order. Counts its
    calls; its weights are ``tf.Variable``s.
    """

    def __init__(self, dim, transform="affine", order=None, seed=0, scale=0.4):
        rng = np.random.default_rng(seed)
        self.transform = transforms.get(transform)
        self.dim, self.num_params = dim, self.transform.num_params
        order = np.arange(dim) if order is None else np.asarray(order)
        reach = order[:, None] < order[None, :]  # [from j, to i]
        mask = np.repeat(reach[:, :, None], self.num_params, axis=2).reshape(dim, -1)
        self.mask = tf.constant(mask, tf.float64)
        shape = (dim, dim * self.num_params)
        self.w = tf.Variable(scale * rng.standard_normal(shape), name="w")
        self.b = tf.Variable(scale * rng.standard_normal(shape[1]), name="b")
        self.calls = 0

    @property
    def variables(self):
        return (self.w, self.b)

    def __call__(self, z):
        self.calls += 1
        params = tf.matmul(z, self.w * self.mask) + self.b
        shape = tf.concat([tf.shape(z)[:-1], [self.dim, self.num_params]], axis=0)
        return self.transform.bijector(tf.reshape(params, shape))


class Dense:
    """``params = tanh(x_kept @ W1 + b1) @ W2 + b2``, reshaped to ``[..., D - K, P]``."""

    def __init__(self, kept, other, transform="affine", hidden=6, seed=0, scale=0.5):
        rng = np.random.default_rng(seed)
        self.transform = transforms.get(transform)
        self.other, self.num_params = other, self.transform.num_params
        self.w1 = tf.Variable(scale * rng.standard_normal((kept, hidden)))
        self.b1 = tf.Variable(scale * rng.standard_normal(hidden))
        self.w2 = tf.Variable(scale * rng.standard_normal((hidden, other * self.num_params)))
        self.b2 = tf.Variable(scale * rng.standard_normal(other * self.num_params))
        self.kept, self.calls = kept, 0

    @property
    def variables(self):
        return (self.w1, self.b1, self.w2, self.b2)

    def __call__(self, x_kept):
        self.calls += 1
        assert x_kept.shape[-1] == self.kept
        params = tf.matmul(tf.tanh(tf.matmul(x_kept, self.w1) + self.b1), self.w2) + self.b2
        shape = tf.concat([tf.shape(x_kept)[:-1], [self.other, self.num_params]], axis=0)
        return self.transform.bijector(tf.reshape(params, shape))


def random_mask(dim, seed):
    rng = np.random.default_rng(seed)
    while True:
        mask = rng.random(dim) < 0.5
        if mask.any() and not mask.all():
            return mask


MASKS = {
    5: [random_mask(5, 1), np.array([True, False, False, True, False])],
    7: [random_mask(7, 2), np.array([True, False, False, True, False, True, False])],
}


def make(kind, dim, transform="affine", seed=0):
    """A bijector of ``kind`` and its counting conditioner."""
    if kind == "autoregressive":
        fn = MaskedLinear(dim, transform, seed=seed)
        return Autoregressive(fn, dim, variables=fn.variables), fn
    if kind == "autoregressive_random_order":
        order = np.random.default_rng(seed + 10).permutation(dim)
        fn = MaskedLinear(dim, transform, order=order, seed=seed)
        return Autoregressive(fn, dim, variables=fn.variables), fn
    mask = MASKS[dim][0 if kind == "coupling" else 1]
    fn = Dense(int(mask.sum()), int((~mask).sum()), transform, seed=seed)
    return Coupling(fn, mask, variables=fn.variables), fn


KINDS = ["autoregressive", "autoregressive_random_order", "coupling", "coupling_fixed_mask"]
CASES = [(k, d, t) for k in KINDS for d in DIMS for t in ("affine", "spline")]


def points(dim, n=6, seed=3):
    return tf.constant(np.random.default_rng(seed).standard_normal((n, dim)))


def base(dim):
    return tfd.MultivariateNormalDiag(tf.zeros(dim, tf.float64))


# ---------------------------------------------------------------------- exactness
@pytest.mark.parametrize("kind,dim,transform", CASES)
def test_round_trip_and_log_dets_agree_with_autodiff(kind, dim, transform):
    bij, _ = make(kind, dim, transform)
    x = points(dim)
    y = bij.forward(x)
    np.testing.assert_allclose(bij.inverse(tf.identity(y)), x, atol=1e-10)
    np.testing.assert_allclose(bij.forward(tf.identity(bij.inverse(x))), x, atol=1e-10)

    fldj = bij.forward_log_det_jacobian(tf.identity(x), event_ndims=1)
    ildj = bij.inverse_log_det_jacobian(tf.identity(y), event_ndims=1)
    np.testing.assert_allclose(fldj, -ildj, atol=1e-10)

    checks = [(bij.inverse, y, ildj), (bij.forward, x, fldj)]
    if kind.startswith("autoregressive") and transform == "spline":
        # The Jacobian through the spline's D-pass loop takes seconds to vectorise; the
        # inverse Jacobian and fldj = -ildj above already pin the forward log-det down.
        checks = checks[:1]
    for fn, at, log_det in checks:
        at = tf.identity(at)  # a fresh tensor: TFP's cache must not return a stored value
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(at)
            out = fn(at)
        # Row by row: much faster here than vectorising the spline's ops with pfor.
        jacobian = tape.batch_jacobian(out, at, experimental_use_pfor=False)
        _, log_abs_det = tf.linalg.slogdet(jacobian)
        np.testing.assert_allclose(log_det, log_abs_det, atol=1e-9)


@pytest.mark.parametrize("dim", DIMS)
@pytest.mark.parametrize("which", [0, 1])
def test_coupling_keeps_features_bit_for_bit_and_transforms_the_others_in_order(dim, which):
    mask = MASKS[dim][which]
    fn = Dense(int(mask.sum()), int((~mask).sum()))
    bij = Coupling(fn, list(mask), variables=fn.variables)
    x = points(dim)
    for out, z, method in ((bij.forward(x), x, "forward"), (bij.inverse(x), x, "inverse")):
        np.testing.assert_array_equal(out.numpy()[:, mask], z.numpy()[:, mask])
        # The reference by hand: numpy indexing, features in their original order.
        transform = fn(tf.constant(z.numpy()[:, mask]))
        expected = getattr(transform, method)(tf.constant(z.numpy()[:, ~mask]))
        np.testing.assert_allclose(out.numpy()[:, ~mask], expected, atol=1e-12)


@pytest.mark.parametrize("dim", DIMS)
def test_autoregressive_matches_a_recursion_written_by_hand(dim):
    bij, fn = make("autoregressive", dim)
    u = points(dim)
    x = np.zeros(u.shape)
    for i in range(dim):  # feature i from the features before it
        x[:, i] = fn(tf.constant(x)).forward(u).numpy()[:, i]
    np.testing.assert_allclose(bij.forward(u), x, atol=1e-12)
    np.testing.assert_allclose(bij.inverse(tf.constant(x)), u, atol=1e-12)


@pytest.mark.parametrize("kind", ["autoregressive", "coupling"])
def test_log_det_alone_equals_log_det_after_the_value_and_sums_over_event_ndims(kind):
    bij, _ = make(kind, 5)
    x = points(5)
    alone = bij.inverse_log_det_jacobian(x, event_ndims=1)  # no memo: a fresh pass
    bij.inverse(x)
    after = bij.inverse_log_det_jacobian(x, event_ndims=1)  # from the memo
    np.testing.assert_array_equal(alone, after)
    fldj = bij.forward_log_det_jacobian(x, event_ndims=1)
    x3 = tf.reshape(x, [2, 3, 5])
    np.testing.assert_allclose(
        bij.forward_log_det_jacobian(x3, event_ndims=2), tf.reduce_sum(tf.reshape(fldj, [2, 3]), -1)
    )
    np.testing.assert_allclose(bij.forward_log_det_jacobian(x3), tf.reshape(fldj, [2, 3]))
    with pytest.raises(ValueError, match="Expected a static event_ndims >= 1"):
        bij.forward_log_det_jacobian(x, event_ndims=0)


# ---------------------------------------------------------------------- one pass
def count(fn, call):
    fn.calls = 0
    call()
    return fn.calls


@pytest.mark.parametrize("dim", DIMS)
@pytest.mark.parametrize("kind", ["autoregressive", "coupling_fixed_mask"])
def test_conditioner_passes(kind, dim):
    bij, fn = make(kind, dim)
    dist = tfd.TransformedDistribution(base(dim), bij)
    y = points(dim)
    passes_to_sample = dim if kind == "autoregressive" else 1
    assert count(fn, lambda: dist.log_prob(y)) == 1
    assert count(fn, lambda: dist.sample(4, seed=1)) == passes_to_sample
    assert count(fn, lambda: dist.experimental_sample_and_log_prob(4, seed=1)) == passes_to_sample
    # Inverted (an IAF): sampling is one pass, the density of new points D passes.
    inverted = tfd.TransformedDistribution(base(dim), tfb.Invert(bij))
    assert count(fn, lambda: inverted.experimental_sample_and_log_prob(4, seed=1)) == 1
    assert count(fn, lambda: inverted.log_prob(y)) == passes_to_sample
    # Nothing is left behind once the log-dets were used.
    assert len(bij._one_pass_memo) == 0


def test_one_pass_per_bijector_in_a_chain():
    ar, ar_fn = make("autoregressive", 7)
    coupling, coupling_fn = make("coupling_fixed_mask", 7)
    chain = tfb.Chain([coupling, tfb.Permute(np.arange(7)[::-1]), ar])
    dist = tfd.TransformedDistribution(base(7), chain)
    ar_fn.calls = coupling_fn.calls = 0
    samples, log_prob = dist.experimental_sample_and_log_prob(5, seed=2)
    assert (ar_fn.calls, coupling_fn.calls) == (7, 1)
    ar_fn.calls = coupling_fn.calls = 0
    np.testing.assert_allclose(dist.log_prob(tf.identity(samples)), log_prob, atol=1e-10)
    assert (ar_fn.calls, coupling_fn.calls) == (1, 1)


@pytest.mark.parametrize("kind", ["autoregressive", "coupling"])
def test_sample_and_log_prob_agrees_with_log_prob_and_memo_goes_with_the_samples(kind):
    bij, _ = make(kind, 5)
    dist = tfd.TransformedDistribution(base(5), bij)
    samples, log_prob = dist.experimental_sample_and_log_prob(8, seed=4)
    np.testing.assert_allclose(dist.log_prob(tf.identity(samples)), log_prob, atol=1e-10)
    samples = dist.sample(3, seed=5)  # the log-det of these samples is never asked for
    assert len(bij._one_pass_memo) == 1
    del samples
    assert len(bij._one_pass_memo) == 0


# ---------------------------------------------------------------------- gradients
def two_pass_log_prob(kind, fn, y, dim):
    """Density by hand: one conditioner pass for the value, another one for the log-det."""
    if kind == "autoregressive":
        x = fn(y).inverse(y)
        return base(dim).log_prob(x) + fn(y).inverse_log_det_jacobian(y, event_ndims=1)
    mask = MASKS[dim][0]
    kept = tf.constant(np.flatnonzero(mask))
    other = np.flatnonzero(~mask)
    y_kept, y_other = tf.gather(y, kept, axis=-1), tf.gather(y, other, axis=-1)
    x_other = fn(y_kept).inverse(y_other)
    columns = tf.unstack(y, axis=-1)
    for j, i in enumerate(other):
        columns[i] = x_other[..., j]
    x = tf.stack(columns, axis=-1)
    return base(dim).log_prob(x) + fn(y_kept).inverse_log_det_jacobian(y_other, event_ndims=1)


@pytest.mark.parametrize("kind", ["autoregressive", "coupling"])
def test_gradients_equal_those_of_a_two_pass_computation(kind):
    dim = 7
    bij, fn = make(kind, dim)
    y = points(dim)
    with tf.GradientTape() as tape:
        one_pass = tfd.TransformedDistribution(base(dim), bij).log_prob(y)
    grads = tape.gradient(one_pass, fn.variables)
    with tf.GradientTape() as tape:
        reference = two_pass_log_prob(kind, fn, y, dim)
    reference_grads = tape.gradient(reference, fn.variables)
    np.testing.assert_allclose(one_pass, reference, atol=1e-12)
    for g, r in zip(grads, reference_grads, strict=True):
        np.testing.assert_allclose(g, r, rtol=1e-10, atol=1e-12)


def test_sampling_gradients_equal_those_of_a_two_pass_computation():
    dim = 5
    bij, fn = make("autoregressive", dim)
    u = points(dim)
    # The base draw is replaced by u, fixed, so that both computations see the same points.
    with tf.GradientTape() as tape:
        x = bij.forward(u)
        log_prob = base(dim).log_prob(u) - bij.forward_log_det_jacobian(u, event_ndims=1)
        loss = tf.reduce_sum(x**2) + tf.reduce_sum(log_prob)
    grads = tape.gradient(loss, fn.variables)
    with tf.GradientTape() as tape:
        # The value (D passes), then the log-det apart (one more pass at the value).
        ref_x = tf.zeros_like(u)
        for _ in range(dim):
            ref_x = fn(ref_x).forward(u)
        ildj = fn(ref_x).inverse_log_det_jacobian(ref_x, event_ndims=1)
        ref_log_prob = base(dim).log_prob(u) + ildj
        ref_loss = tf.reduce_sum(ref_x**2) + tf.reduce_sum(ref_log_prob)
    ref_grads = tape.gradient(ref_loss, fn.variables)
    np.testing.assert_allclose(log_prob, ref_log_prob, atol=1e-12)
    for g, r in zip(grads, ref_grads, strict=True):
        np.testing.assert_allclose(g, r, rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------------- liveness & graphs
@pytest.mark.parametrize("kind", ["autoregressive", "coupling", "inverted"])
def test_log_prob_of_the_same_tensor_follows_the_weights(kind):
    inner, fn = make("autoregressive" if kind == "inverted" else kind, 5)
    bij = tfb.Invert(inner) if kind == "inverted" else inner
    dist = tfd.TransformedDistribution(base(5), bij)
    y = points(5)
    before = dist.log_prob(y)
    for v in fn.variables:
        v.assign(v * 1.5 + 0.1)
    after = dist.log_prob(y)
    # A new bijector (TFP's public copy) scoring a new tensor: nothing cached anywhere.
    new = tfb.Invert(inner.copy()) if kind == "inverted" else inner.copy()
    fresh = tfd.TransformedDistribution(base(5), new).log_prob(tf.identity(y))
    assert np.all(np.abs(after - before) > 1e-6)
    np.testing.assert_allclose(after, fresh, atol=1e-12)
    # Under a tape the log-det of the same tensor carries gradients again.
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(dist.log_prob(y))
    assert all(g is not None for g in tape.gradient(loss, fn.variables))


@pytest.mark.parametrize("kind", ["autoregressive", "coupling"])
def test_a_remembered_log_det_is_used_once(kind):
    bij, fn = make(kind, 5)
    x = points(5)
    y = bij.forward(x)  # y lives on, and so would its log-det if it were not used up
    first = bij.forward_log_det_jacobian(x, event_ndims=1)
    assert len(bij._one_pass_memo) == 0
    for v in fn.variables:
        v.assign(v * 1.5 + 0.1)
    second = bij.forward_log_det_jacobian(x, event_ndims=1)
    fresh = bij.copy().forward_log_det_jacobian(tf.identity(x), event_ndims=1)
    np.testing.assert_allclose(second, fresh, atol=1e-12)
    assert np.all(np.abs(second - first) > 1e-6)
    del y


@pytest.mark.parametrize("kind", ["autoregressive", "coupling"])
def test_works_inside_tf_function_with_gradients(kind):
    bij, fn = make(kind, 5)
    dist = tfd.TransformedDistribution(base(5), bij)
    y = points(5)

    @tf.function
    def step(y):
        with tf.GradientTape() as tape:
            loss = -tf.reduce_mean(dist.log_prob(y))
        samples, log_prob = dist.experimental_sample_and_log_prob(4, seed=(1, 2))
        return loss, tape.gradient(loss, fn.variables), samples, log_prob

    loss, grads, samples, log_prob = step(y)
    with tf.GradientTape() as tape:
        eager_loss = -tf.reduce_mean(dist.log_prob(y))
    np.testing.assert_allclose(loss, eager_loss, atol=1e-12)
    for g, r in zip(grads, tape.gradient(eager_loss, fn.variables), strict=True):
        np.testing.assert_allclose(g, r, atol=1e-12)
    np.testing.assert_allclose(dist.log_prob(tf.identity(samples)), log_prob, atol=1e-10)


def test_a_bijector_with_a_memo_copies_and_pickles():
    bij, _ = make("coupling", 5)
    x = points(5)
    y = bij.forward(x)  # leaves an entry in the memo
    clone = copy.deepcopy(bij)
    assert len(clone._one_pass_memo) == 0
    np.testing.assert_allclose(clone.inverse(tf.identity(y)), x, atol=1e-10)
    pickled = pickle.loads(pickle.dumps(Coupling(_shift_by_kept_sum, [True, False, True])))
    assert len(pickled._one_pass_memo) == 0
    np.testing.assert_allclose(pickled.forward(tf.constant([[1.0, 0.0, 2.0]])), [[1, 3, 2]])


def _shift_by_kept_sum(kept):
    return tfb.Shift(tf.reduce_sum(kept, -1, keepdims=True))


def test_one_feature_and_the_variables_it_reads():
    bij, fn = make("autoregressive", 1)
    u = points(1)
    dist = tfd.TransformedDistribution(base(1), bij)
    assert count(fn, lambda: dist.experimental_sample_and_log_prob(3, seed=1)) == 1
    np.testing.assert_allclose(bij.inverse(tf.identity(bij.forward(u))), u, atol=1e-12)
    for kind in ("autoregressive", "coupling"):
        bij, fn = make(kind, 5)
        assert {id(v) for v in bij.trainable_variables} == {id(v) for v in fn.variables}


# ---------------------------------------------------------------------- errors & versions
def test_bad_arguments_say_what_was_expected():
    fn = MaskedLinear(3)
    with pytest.raises(ValueError, match="Expected an integer event_size >= 1; got 0"):
        Autoregressive(fn, 0)
    with pytest.raises(TypeError, match="Expected a callable transform_fn"):
        Autoregressive("made", 3)
    with pytest.raises(ValueError, match=r"Expected 3 features .*got shape \(2, 4\)"):
        Autoregressive(fn, 3).inverse(tf.zeros([2, 4], tf.float64))
    with pytest.raises(ValueError, match="Expected mask to be a list of booleans; got"):
        Coupling(fn, [1, 0, 1])
    with pytest.raises(ValueError, match="keeps some features and transforms others"):
        Coupling(fn, [True, True])
    with pytest.raises(ValueError, match=r"Expected 3 features \(the mask's length\)"):
        Coupling(fn, [True, False, True]).forward(tf.zeros([2, 4], tf.float64))


def test_tfp_version_check():
    _compat.check_tfp_version(tfp.__version__)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _compat.check_tfp_version("0.25.3")
    with pytest.raises(ImportError, match="needs TensorFlow Probability 0.25.x; got 0.24.0"):
        _compat.check_tfp_version("0.24.0")
    with pytest.raises(ImportError, match="expected a TensorFlow Probability version"):
        _compat.check_tfp_version("nightly")
    with pytest.warns(UserWarning, match="tested with TensorFlow Probability 0.25.x"):
        _compat.check_tfp_version("0.26.0-dev20250101")
