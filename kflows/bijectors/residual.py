"""The invertible residual block ``z = x + g(x)`` with a contractive ``g`` (i-ResNet)."""

from __future__ import annotations

import tensorflow as tf
import tensorflow_probability as tfp

from kflows._validate import integer
from kflows.bijectors.variables import EventSized, LayerBijector

tfb = tfp.bijectors


def _tiled(x, copies: int):
    """``x`` ``[..., D]`` repeated along a new leading axis: ``[copies, ..., D]``.

    A leading axis keeps a context's batch dimensions aligned with the data's, so ``g``
    evaluates every copy in one batched pass.
    """
    return tf.broadcast_to(x, tf.concat([[copies], tf.shape(x)], 0))


def jacobian(g, x, event_size: int):
    """``(g(x), J_g(x))`` with ``J`` ``[..., D, D]``: one tiled pass of ``g``.

    ``x`` is tiled ``D`` times along a new leading axis and one reverse pass with the unit
    vectors as output gradients gives all ``D`` rows of the Jacobian at once; the value
    ``g(x)`` is the first copy of the same forward pass.
    """
    tiled = _tiled(x, event_size)
    with tf.GradientTape(watch_accessed_variables=False) as tape:
        tape.watch(tiled)
        g_tiled = g(tiled)
    rank = tf.rank(x)
    unit = tf.reshape(
        tf.eye(event_size, dtype=x.dtype),
        tf.concat([[event_size], tf.ones([rank - 1], tf.int32), [event_size]], 0),
    )
    rows = tape.gradient(g_tiled, tiled, output_gradients=tf.broadcast_to(unit, tf.shape(tiled)))
    # rows[i, ..., j] = dg_i / dx_j: move the row axis next to the column axis.
    return g_tiled[0], tf.transpose(rows, tf.concat([tf.range(1, rank), [0, rank]], 0))


def _gram_cholesky(jacobian):
    """``(A, L)`` with ``A = I + J`` and ``L`` the Cholesky factor of ``A^T A``.

    ``A`` is never singular for a contraction (its singular values lie in
    ``[1 - Lip, 1 + Lip]``), so ``A^T A`` is positive definite and well conditioned.
    Cholesky compiles under XLA, unlike ``slogdet`` and an LU. A non-finite Jacobian gives
    a NaN factor (TensorFlow's Cholesky does not raise on NaN), so NaN stays NaN.
    """
    matrix = tf.eye(jacobian.shape[-1], dtype=jacobian.dtype) + jacobian
    return matrix, tf.linalg.cholesky(tf.linalg.matmul(matrix, matrix, transpose_a=True))


def exact_log_det(g, x, event_size: int):
    """``(g(x), log det(I + J_g(x)))`` from the full Jacobian (:func:`jacobian`).

    The determinant is positive (``I + J`` is never singular when ``g`` is a contraction),
    so it is ``sqrt(det(A^T A))``: the sum of the log-diagonal of ``A^T A``'s Cholesky
    factor.
    """
    g_x, jac = jacobian(g, x, event_size)
    _, chol = _gram_cholesky(jac)
    return g_x, tf.reduce_sum(tf.math.log(tf.linalg.diag_part(chol)), axis=-1)


def newton_step(g, x, z, event_size: int):
    """One Newton step on ``x + g(x) = z``: ``x - (I + J)^-1 (x + g(x) - z)``.

    Solved through the normal equations' Cholesky factor (XLA compiles it).
    """
    g_x, jac = jacobian(g, x, event_size)
    matrix, chol = _gram_cholesky(jac)
    residual = tf.linalg.matvec(matrix, x + g_x - z, transpose_a=True)
    return x - tf.linalg.cholesky_solve(chol, residual[..., None])[..., 0]


def series_log_det(g, x, num_terms: int, num_probes: int, seed):
    """``(g(x), estimate of log det(I + J))``: the power series with Hutchinson's estimator.

    ``log det(I + J) = sum_k (-1)^(k+1) tr(J^k) / k`` for ``||J|| < 1``; each ``tr(J^k)``
    is estimated as ``v^T J^k v`` with Rademacher probes ``v``, from ``k`` chained
    vector-Jacobian products (``num_terms`` in all, each over every probe at once).
    Truncating after ``num_terms`` terms leaves a bias of at most
    ``D * sum_{k > num_terms} L^k / k`` for a Lipschitz constant ``L``; the probes add
    variance of order ``||J||_F^2 / num_probes``.
    """
    tiled = _tiled(x, num_probes)
    stateless = tfp.random.sanitize_seed(None if seed is None else [0, seed])
    probes = tfp.random.rademacher(tf.shape(tiled), dtype=x.dtype, seed=stateless)
    with tf.GradientTape(persistent=True, watch_accessed_variables=False) as tape:
        tape.watch(tiled)
        g_tiled = g(tiled)
    w, total = probes, tf.zeros_like(x[..., 0])
    for k in range(1, num_terms + 1):
        w = tape.gradient(g_tiled, tiled, output_gradients=w)  # v^T J^k
        trace = tf.reduce_mean(tf.reduce_sum(w * probes, axis=-1), axis=0)
        total += (1.0 if k % 2 else -1.0) / k * trace
    del tape
    return g_tiled[0], total


class Residual(EventSized, LayerBijector):
    """``z = x + g(x)`` (density direction, one pass), inverted by fixed-point iteration.

    ``g`` must be a contraction (Lipschitz constant ``L < 1``, e.g. a
    :class:`~kflows.networks.LipschitzMLP`); then the map is invertible and
    ``det(I + J_g) > 0``. Direction as everywhere in kflows: the bijector's *inverse* maps
    data ``x`` to the base side ``z = x + g(x)`` (one pass of ``g``, with its log-det); its
    *forward* (sampling) solves ``x + g(x) = z`` with ``fixed_point_iterations`` steps of
    ``x <- z - g(x)`` from ``x = z``, then, when the Jacobian is computed exactly,
    ``newton_steps`` Newton steps (each costing about one exact log-det). The fixed-point
    error shrinks like ``L^k``, slowly for ``L`` near one; Newton's steps then finish the
    job quadratically. Fixed counts keep graphs and XLA simple, and gradients flow through
    the unrolled steps.

    The log-det ``log det(I + J_g(x))`` is exact for ``D <= exact_max_dim`` (the Jacobian
    from one tiled reverse pass, and a Cholesky factor) and otherwise a truncated power series
    with Hutchinson probes (see :func:`series_log_det`; biased by the truncation, random
    by the probes). In the density direction the value and the log-det share one forward
    pass of ``g``.

    Args:
        residual_fn: ``update -> g``: returns ``g`` (``[..., D] -> [..., D]``) reading the
            current weights; ``update`` is True once per density pass (the layer then
            updates state such as power-iteration vectors, in training).
        event_size: D.
        fixed_point_iterations: steps of the fixed-point iteration (sampling).
        newton_steps: Newton steps after them (sampling; only when ``D <= exact_max_dim``).
        exact_max_dim: largest D whose log-det is computed exactly.
        num_terms: terms of the power series (D > exact_max_dim).
        num_probes: Hutchinson probes per point (D > exact_max_dim).
        seed: an int gives the same probes at every call; None draws new ones each call.
        variables: the variables ``g`` reads (see :class:`LayerVariables`).
        name: the bijector's name.

    Example:
        >>> bijector = Residual(lambda update: lambda x: 0.5 * tf.sin(x), event_size=2)
        >>> z = bijector.inverse([[1.0, -2.0]])
        >>> bijector.forward(z).numpy().round(5)
        array([[ 1., -2.]], dtype=float32)

    References:
        Behrmann, Grathwohl, Chen, Duvenaud, Jacobsen. Invertible Residual Networks.
        ICML 2019. Chen, Behrmann, Duvenaud, Jacobsen. Residual Flows for Invertible
        Generative Modeling. NeurIPS 2019.
    """

    def __init__(
        self,
        residual_fn,
        event_size: int,
        fixed_point_iterations: int = 100,
        exact_max_dim: int = 16,
        num_terms: int = 10,
        num_probes: int = 1,
        seed: int | None = None,
        variables=(),
        newton_steps: int = 2,
        name: str = "residual",
    ):
        parameters = dict(locals())
        if not callable(residual_fn):
            raise TypeError(f"Expected a callable residual_fn; got {residual_fn!r}.")
        self._residual_fn = residual_fn
        self._event_size = integer(event_size, "event_size")
        self._iterations = integer(fixed_point_iterations, "fixed_point_iterations")
        self._newton_steps = integer(newton_steps, "newton_steps", minimum=0)
        self._exact_max_dim = integer(exact_max_dim, "exact_max_dim", minimum=0)
        self._num_terms = integer(num_terms, "num_terms")
        self._num_probes = integer(num_probes, "num_probes")
        self._seed = None if seed is None else integer(seed, "seed", minimum=0)
        super().__init__(parameters, variables, name=name)

    @property
    def exact(self) -> bool:
        """True when the log-det is exact (``D <= exact_max_dim``)."""
        return self._event_size <= self._exact_max_dim

    def _g_and_log_det(self, g, x):
        if self.exact:
            return exact_log_det(g, x, self._event_size)
        return series_log_det(g, x, self._num_terms, self._num_probes, self._seed)

    def _forward_and_log_det(self, z):
        z = self._checked(z)
        g = self._residual_fn(False)
        x = tf.while_loop(
            lambda x: True, lambda x: (z - g(x),), (z,), maximum_iterations=self._iterations
        )[0]
        if self.exact:
            for _ in range(self._newton_steps):
                x = newton_step(g, x, z, self._event_size)
        return x, -self._g_and_log_det(g, x)[1]

    def _inverse_and_log_det(self, x, update=False):
        x = self._checked(x)
        g_x, log_det = self._g_and_log_det(self._residual_fn(update), x)
        return x + g_x, log_det

    def _inverse(self, x):
        # The one place that updates the layer's state (in training): once per density pass.
        z, ildj = self._inverse_and_log_det(x, update=True)
        self._one_pass_memo.put(z, x, ildj, direction="inverse")
        return z
