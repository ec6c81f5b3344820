"""Block neural autoregressive flow (BNAF): a monotone, triangular network, and its inverse.

A BNAF is one feed-forward network ``z = f(x)`` of ``D`` features whose weight matrices are
split into ``D x D`` blocks: block ``(i, j)`` connects the units of feature ``i`` to those
of feature ``j``; blocks with ``i > j`` are zero (so ``z_j`` depends on ``x_<=j`` only) and
the diagonal blocks are positive. With increasing activations every ``z_j`` then increases
in ``x_j``: the Jacobian is lower triangular with a positive diagonal, and
``log |det J| = sum_j log dz_j/dx_j``. Each ``dz_j/dx_j`` is the product, along the
network, of the diagonal blocks and the activations' slopes; it is accumulated in log space
(a log-matrix product: ``logsumexp`` of sums), exact and in one pass with the values.

The explicit direction is data to latent, so it is this bijector's **inverse** (density,
one pass). Its **forward** (sampling) solves ``f(x) = u`` feature by feature: ``x_j`` is the
root of the increasing scalar map ``t -> f(x_<j, t)_j`` (:func:`~kflows.bijectors.root.
invert_increasing`), D root searches of a fixed number of steps.

The activation is a *leaky tanh*, ``tanh(a) + leak * a``: increasing, smooth, and onto the
real line (the paper's ``tanh`` is bounded, so its network maps ``R^D`` onto a bounded set:
the density would not normalise and the sampler could not reach every latent point;
FlowJAX's ``LeakyTanh`` fixes the same with linear tails beyond a cut-off).

References:
    De Cao, Titov, Aziz. Block Neural Autoregressive Flow. UAI 2019.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from kflows._validate import integer
from kflows.bijectors.root import invert_increasing
from kflows.bijectors.variables import EventSized, LayerBijector

tfb = tfp.bijectors


def block_masks(dim: int, in_block: int, out_block: int) -> tuple[np.ndarray, np.ndarray]:
    """The masks of a block autoregressive weight ``[dim * in_block, dim * out_block]``.

    Input unit ``r`` belongs to feature ``r // in_block``, output unit ``c`` to feature
    ``c // out_block`` (a kernel multiplies from the right, ``h @ W``).

    Returns:
        ``(diagonal, earlier)``: booleans, True where input and output belong to the same
        feature (the positive blocks), and where the input's feature comes before the
        output's (the free blocks). Elsewhere the weight is zero.

    Example:
        >>> diagonal, earlier = block_masks(2, 1, 2)
        >>> diagonal.astype(int)
        array([[1, 1, 0, 0],
               [0, 0, 1, 1]])
        >>> earlier.astype(int)
        array([[0, 0, 1, 1],
               [0, 0, 0, 0]])
    """
    rows = np.repeat(np.arange(dim), in_block)[:, None]
    cols = np.repeat(np.arange(dim), out_block)[None, :]
    return rows == cols, rows < cols


def block_weight(kernel, log_scale, dim: int, in_block: int, out_block: int):
    """A block autoregressive weight from raw values, and the log of its diagonal blocks.

    Diagonal blocks are ``exp(kernel)``, earlier blocks ``kernel``, the rest zero. With a
    ``log_scale`` (one per output unit) each column is weight-normalised as in the paper,
    ``W[:, c] = exp(log_scale[c]) * V[:, c] / ||V[:, c]||``, computed after dividing by
    the column's largest diagonal entry so that no ``exp`` overflows.

    Args:
        kernel: raw values ``[dim * in_block, dim * out_block]``.
        log_scale: ``[dim * out_block]`` or None (no weight normalisation).
        dim, in_block, out_block: the number of features and the block shape.

    Returns:
        ``(weight, log_diagonal)``: the weight, and the logs of its diagonal blocks as
        ``[dim, in_block, out_block]``.

    Example:
        >>> weight, log_diagonal = block_weight(tf.zeros([2, 2]), None, 2, 1, 1)
        >>> weight.numpy()
        array([[1., 0.],
               [0., 1.]], dtype=float32)
    """
    diagonal, earlier = block_masks(dim, in_block, out_block)
    zeros = tf.zeros_like(kernel)
    log_positive = tf.where(diagonal, kernel, zeros)
    if log_scale is None:
        weight = tf.where(diagonal, tf.exp(log_positive), tf.where(earlier, kernel, zeros))
        log_weight = log_positive
    else:
        # Every column holds in_block >= 1 diagonal entries: its largest is finite.
        lowest = tf.constant(-np.inf, kernel.dtype)
        shift = tf.reduce_max(tf.where(diagonal, kernel, lowest), axis=0)
        log_positive = tf.where(diagonal, kernel - shift, zeros)
        free = tf.where(earlier, kernel, zeros) * tf.exp(-shift)
        scaled = tf.where(diagonal, tf.exp(log_positive), free)
        # The largest scaled diagonal entry is 1: the squared norm is >= 1.
        log_factor = log_scale - 0.5 * tf.math.log(tf.reduce_sum(tf.square(scaled), axis=0))
        weight = scaled * tf.exp(log_factor)
        log_weight = log_positive + log_factor
    blocks = tf.reshape(log_weight, [dim, in_block, dim, out_block])
    # [D, a, D, b] -> [a, b, D, D] -> its diagonal [a, b, D] -> [D, a, b].
    log_diagonal = tf.linalg.diag_part(tf.transpose(blocks, [1, 3, 0, 2]))
    return weight, tf.transpose(log_diagonal, [2, 0, 1])


def leaky_tanh(x, leak: float):
    """``tanh(x) + leak * x``: increasing, smooth and onto the real line for ``leak > 0``."""
    return tf.tanh(x) + leak * x


def log_leaky_tanh_slope(x, leak: float):
    """``log(1 - tanh(x)**2 + leak)``, finite for every finite ``x`` (no ``tanh`` rounding).

    ``1 - tanh(x)**2 = 4 exp(-2|x|) / (1 + exp(-2|x|))**2`` is taken in log space, then
    added to ``leak`` with a log-add-exp.
    """
    a = tf.abs(x)
    log_sech2 = 2.0 * (math.log(2.0) - a - tf.math.softplus(-2.0 * a))
    log_leak = tf.constant(math.log(leak), x.dtype)
    high = tf.maximum(log_sech2, log_leak)
    return high + tf.math.log1p(tf.exp(-tf.abs(log_sech2 - log_leak)))


def _log_matvec(log_vector, log_matrix):
    """``log(exp(log_vector) @ exp(log_matrix))`` per feature: ``[..., D, a] x [D, a, b]``."""
    return tf.reduce_logsumexp(log_vector[..., :, :, None] + log_matrix, axis=-2)


class BlockNeuralAutoregressive(EventSized, LayerBijector):
    """The BNAF network as a bijector: inverse ``z = f(y)`` in one pass, forward by search.

    ``weights_fn()`` returns ``(layers, shift)``: ``layers`` a list of ``(weight,
    log_diagonal, bias)`` per linear layer (from :func:`block_weight`), the first of block
    shape ``(1, h_1)``, the last ``(h_L, 1)``; ``shift`` None or a tensor added to the
    first layer's pre-activations (a conditional BNAF's context term; it must broadcast
    against them). Every layer but the last is followed by :func:`leaky_tanh`.

    - Inverse (density): one network pass gives ``z`` and ``log dz_j/dy_j`` for each j.
    - Forward (sampling): ``D`` scalar root searches (:func:`~kflows.bijectors.root.
      invert_increasing`, ``steps`` bisection steps each), then one pass for the log-det.

    Args:
        weights_fn: callable returning ``(layers, shift)``, read each time the bijector
            runs (so it sees the current weights).
        event_size: D, the number of features (static).
        leak: the activation's linear slope, > 0.
        steps: bisection steps of each root search (None: the bracket's doublings plus
            :data:`BISECTION_STEPS` of the dtype).
        variables: the variables ``weights_fn`` reads (see :class:`LayerVariables`).
        name: the bijector's name.

    Example:
        >>> # One hidden block of width 1 per feature, all raw weights zero: z = f(y).
        >>> def weights_fn():
        ...     first = block_weight(tf.zeros([2, 2]), None, 2, 1, 1)
        ...     last = block_weight(tf.zeros([2, 2]), None, 2, 1, 1)
        ...     return [(*first, tf.zeros([2])), (*last, tf.zeros([2]))], None
        >>> bijector = BlockNeuralAutoregressive(weights_fn, event_size=2)
        >>> y = tf.constant([[0.5, -1.0]])
        >>> x = bijector.inverse(y)
        >>> np.round(bijector.forward(tf.identity(x)).numpy(), 6)
        array([[ 0.5, -1. ]], dtype=float32)

    References:
        De Cao, Titov, Aziz. Block Neural Autoregressive Flow. UAI 2019.
    """

    def __init__(
        self,
        weights_fn,
        event_size: int,
        leak: float = 0.5,
        steps: int | None = None,
        variables=(),
        validate_args: bool = False,
        name: str = "bnaf",
    ):
        parameters = dict(locals())
        if not callable(weights_fn):
            raise TypeError(f"Expected a callable weights_fn; got {weights_fn!r}.")
        event_size = integer(event_size, "event_size")
        if not float(leak) > 0:
            raise ValueError(f"Expected leak > 0; got {leak!r}.")
        self._weights_fn = weights_fn
        self._event_size = event_size
        self._leak = float(leak)
        self._steps = steps
        super().__init__(parameters, variables, validate_args, name)

    def _weights(self, dtype):
        layers, shift = self._weights_fn()
        layers = [tuple(tf.cast(t, dtype) for t in layer) for layer in layers]
        return layers, None if shift is None else tf.cast(shift, dtype)

    def _inverse_and_log_det(self, y):
        layers, shift = self._weights(y.dtype)
        z, log_slope = _network(self._checked(y), layers, shift, self._leak)
        return z, tf.reduce_sum(log_slope, axis=-1)

    def _forward_and_log_det(self, u):
        layers, shift = self._weights(u.dtype)
        solve = _solve_in_a_graph if tf.executing_eagerly() else _solve
        x = solve(self._checked(u), layers, shift, self._leak, self._steps, self._event_size)
        _, log_slope = _network(x, layers, shift, self._leak)
        return x, -tf.reduce_sum(log_slope, axis=-1)


def _network(x, layers, shift, leak: float, log_det: bool = True):
    """``(z, log dz_j/dx_j)`` at ``x`` ``[..., D]``, both ``[..., D]`` (see the bijector).

    With ``log_det=False`` only ``z`` is computed (and None returned for the log-slopes).
    """
    h, log_slope = x, None  # log_slope [..., D, units per feature]: log dh/dx_j
    for i, (weight, log_diagonal, bias) in enumerate(layers):
        # matmul broadcasts batch dimensions; a single event [D] needs tensordot.
        pre = (tf.matmul(h, weight) if h.shape.rank != 1 else tf.tensordot(h, weight, 1)) + bias
        if i == 0 and shift is not None:
            pre = pre + shift
        if log_det:
            # The first block shape is (1, h): its log-slopes are its diagonal weights.
            first = log_diagonal[:, 0, :]
            log_slope = first if i == 0 else _log_matvec(log_slope, log_diagonal)
        if i == len(layers) - 1:
            h = pre
        else:
            h = leaky_tanh(pre, leak)
            if log_det:
                units = tf.concat([tf.shape(pre)[:-1], tf.shape(log_diagonal)[::2]], axis=0)
                log_slope = log_slope + tf.reshape(log_leaky_tanh_slope(pre, leak), units)
    if not log_det:
        return h, None
    return h, log_slope[..., 0] + tf.zeros_like(h)


#: Bisection steps of each root search, per dtype, after a bracket that holds the root and is
#: at most ``2**k`` times its distance from zero (see :func:`_solve`): about half the
#: dtype's bits in float64, which the final Newton step doubles (round trips to ~1e-15);
#: more in float32, whose rounded Newton step gains less (round trips to ~1e-6).
BISECTION_STEPS = {tf.float16: 10, tf.bfloat16: 8, tf.float32: 22, tf.float64: 30}


def _solve(u, layers, shift, leak: float, steps: int | None, dim: int):
    """``x`` with ``_network(x)[0] = u``: D scalar root searches, feature by feature.

    ``t -> z_j(x_<j, t)`` has slopes between ``L_j = leak**H * P_j`` and ``U_j = (1 +
    leak)**H * P_j``, where ``H`` is the number of activations and ``P_j`` the product of
    the diagonal blocks along the network (the activations' slopes lie in ``[leak, 1 +
    leak]``). From ``r = u_j - z_j(x_<j, 0)`` the root lies in ``[r/U_j, r/L_j]``: in units
    of ``c = (|r| + 1)/U_j`` it is within ``(U/L) = ((1 + leak)/leak)**H`` of zero, so the
    search needs ``k = ceil(log2(U/L)) + 1`` doublings of its bracket, not forty.
    """
    hidden = len(layers) - 1
    ratio = ((1.0 + leak) / leak) ** hidden
    bracket_steps = math.ceil(math.log2(ratio)) + 1
    if steps is None:
        steps = bracket_steps + BISECTION_STEPS.get(u.dtype, 30)
    log_product = layers[0][1][:, 0, :]
    for _, log_diagonal, _ in layers[1:]:
        log_product = _log_matvec(log_product, log_diagonal)
    log_upper = log_product[:, 0] + hidden * math.log1p(leak)  # log U_j, [D]
    columns = tf.unstack(tf.zeros_like(u), num=dim, axis=-1)
    for j in range(dim):

        def output(t, j=j, known=tuple(columns[:j])):
            # x_j = t, the features before j solved; the later ones do not reach z_j.
            x = tf.stack([*known, t, *columns[j + 1 :]], axis=-1)
            return _network(x, layers, shift, leak, log_det=False)[0][..., j]

        def slope(t, j=j, known=tuple(columns[:j])):
            x = tf.stack([*known, t, *columns[j + 1 :]], axis=-1)
            return tf.exp(_network(x, layers, shift, leak)[1][..., j])

        scale = (tf.abs(u[..., j] - output(columns[j])) + 1.0) * tf.exp(-log_upper[j])
        root = invert_increasing(
            lambda s, f=output, c=scale: f(c * s),
            u[..., j],
            derivative=lambda s, f=slope, c=scale: c * f(c * s),
            steps=steps,
            bracket_steps=bracket_steps,
        )
        columns[j] = scale * root
    return tf.stack(columns, axis=-1)


# Called eagerly, the D searches' fixed loops would run op by op in Python and a tape would
# record each op: one graph per exact signature instead (inlined inside a tf.function).
_solve_in_a_graph = tf.function(_solve, autograph=False)
