"""Numerical health of a flow on your data: accuracy, tails, conditioning, NaN by layer.

:func:`check` walks a :class:`~kflows.Flow` (or one layer) the way ``log_prob`` does, data
side first, and reports per layer:

- **round trip**: ``max |forward(inverse(z)) - z|`` at the points the layer sees;
- **log-det error**: ``max |inverse log-det - log |det J||`` on a few rows, ``J`` the
  autodiff Jacobian of the inverse (``GradientTape.batch_jacobian`` and ``slogdet``);
- **out of bound**: the share of a rational-quadratic spline's inputs outside
  ``[-bound, bound]``, where the spline is the identity and learns nothing;
- **condition number** of each :class:`~kflows.LULinear` matrix;
- **non-finite values**: how many rows, finite when they reached the layer, left it
  holding NaN or inf (in the value or in the log-det), and for a flow the base density,
  the loss and the gradients, so that :attr:`Report.first_non_finite` names the layer
  that first produced a NaN or inf.

The test suite's generic checks (``tests/test_layers.py``) and the NaN guard of
:meth:`kflows.Flow.fit` use the same functions: :func:`round_trip_error`,
:func:`log_det_error` and :func:`check`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math

import keras
import numpy as np
import tensorflow as tf

from kflows import inputs
from kflows.layers.layer import FlowLayer
from kflows.layers.linear import LULinear
from kflows.transforms import RationalQuadraticSpline

__all__ = [
    "Finding",
    "LayerReport",
    "Report",
    "autodiff_log_det",
    "check",
    "log_det_error",
    "round_trip_error",
]

DIRECTIONS = ("inverse", "forward")


def _direction(direction: str) -> str:
    if direction not in DIRECTIONS:
        raise ValueError(f"Expected direction in {DIRECTIONS}; got {direction!r}.")
    return direction


def _row_finite(t) -> tf.Tensor:
    t = tf.convert_to_tensor(t)
    return tf.reduce_all(tf.math.is_finite(t), axis=-1) if t.shape.rank else tf.math.is_finite(t)


def round_trip_error(bijector, x, direction: str = "inverse") -> tf.Tensor:
    """Per-row ``max |forward(inverse(x)) - x|`` (``direction="inverse"``), or the reverse.

    ``tf.identity`` between the two maps defeats TFP's bijector cache, which would
    otherwise hand ``x`` itself back.

    Args:
        bijector: an invertible ``tfb.Bijector`` acting on ``[..., D]``.
        x: points ``[N, D]``.
        direction: ``"inverse"`` applies the inverse first (the density direction),
            ``"forward"`` the forward first.

    Returns:
        ``[N]`` errors (NaN where a row went non-finite).

    Example:
        >>> bijector = kflows.Flow([kflows.Coupling()], event_dim=2).bijector()
        >>> float(kflows.diagnostics.round_trip_error(bijector, [[0.5, -1.0]])[0])
        0.0
    """
    there, back = (
        (bijector.inverse, bijector.forward)
        if _direction(direction) == "inverse"
        else (bijector.forward, bijector.inverse)
    )
    x = tf.convert_to_tensor(x, dtype_hint=bijector.dtype)
    return tf.reduce_max(tf.abs(back(tf.identity(there(x))) - x), axis=-1)


def autodiff_log_det(fn, x, vectorize: bool = False) -> tf.Tensor:
    """``log |det ∂fn/∂x|`` per row of ``x`` ``[N, D]``, from ``GradientTape.batch_jacobian``.

    By default the Jacobian takes one backward pass per feature. ``vectorize=True`` uses
    ``pfor`` instead, which converts the whole map into a vectorized graph at every call
    (seconds for a spline, more than the loop costs until D is in the hundreds) and cannot
    convert an ODE solver's adjoint (FFJORD).
    """
    x = tf.convert_to_tensor(x)
    # Without pfor, batch_jacobian loops over output features and needs a persistent tape.
    with tf.GradientTape(persistent=not vectorize) as tape:
        tape.watch(x)
        y = fn(tf.identity(x))  # a fresh tensor: no bijector cache can answer for it
    with _quiet_retracing():
        jacobian = tape.batch_jacobian(y, x, experimental_use_pfor=vectorize)
    return tf.linalg.slogdet(jacobian)[1]


@contextlib.contextmanager
def _quiet_retracing():
    """Silences TF's retracing warning: ``pfor`` traces a new function at every Jacobian.

    A check over many layers makes many Jacobians; the warning would point users at code
    they did not write and cannot change.
    """
    logger = tf.get_logger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def log_det_error(bijector, x, direction: str = "inverse", vectorize: bool = False) -> tf.Tensor:
    """Per-row ``|log-det - log |det J||``, ``J`` the autodiff Jacobian of the same map.

    Args:
        bijector: a ``tfb.Bijector`` on ``[..., D]`` (event ndims 1).
        x: points ``[N, D]`` where the map (its inverse, or its forward) is applied.
        direction: ``"inverse"`` checks ``inverse_log_det_jacobian``, ``"forward"``
            ``forward_log_det_jacobian``.
        vectorize: compute the Jacobian with ``pfor`` (see :func:`autodiff_log_det`).

    Example:
        >>> layer = kflows.Coupling(conditioner={"hidden_units": [8]}, dtype="float64")
        >>> bijector = kflows.Flow([layer], event_dim=2).bijector()
        >>> x = np.random.default_rng(0).normal(size=(4, 2))
        >>> bool(np.all(kflows.diagnostics.log_det_error(bijector, x) < 1e-12))
        True
    """
    x = tf.convert_to_tensor(x, dtype_hint=bijector.dtype)
    if _direction(direction) == "inverse":
        fn, log_det = bijector.inverse, bijector.inverse_log_det_jacobian
    else:
        fn, log_det = bijector.forward, bijector.forward_log_det_jacobian
    expected = autodiff_log_det(fn, x, vectorize)
    return tf.abs(log_det(tf.identity(x), event_ndims=1) - expected)


@dataclasses.dataclass(frozen=True)
class LayerReport:
    """What :func:`check` found in one layer (``None``: not applicable or not computed).

    Attributes:
        index: position in the flow (0 touches the data).
        name: the layer's name.
        kind: its class name.
        largest: ``max |value|`` of the layer's finite outputs (base side): values that
            grow layer after layer point to an explosion before any NaN.
        round_trip_error: ``max |forward(inverse(z)) - z|`` over the finite rows it saw.
        log_det_error: ``max |inverse log-det - log |det J||`` over the rows checked.
        out_of_bound: share of spline inputs outside ``[-bound, bound]`` (spline layers).
        condition_number: of the layer's matrix (:class:`~kflows.LULinear`).
        non_finite_values: rows finite on the way in that came out holding NaN or inf.
        non_finite_log_det: rows finite on the way in whose log-det is NaN or inf (the
            log-det as ``log_prob`` computes it: minus the forward log-det at the output).
        non_finite_gradients: NaN or inf entries in the gradients of the layer's weights
            (with ``gradients=True``).
        gradient_norm: the Euclidean norm of those gradients' finite entries, computed in
            float64 (with ``gradients=True``).
    """

    index: int
    name: str
    kind: str
    largest: float | None = None
    round_trip_error: float | None = None
    log_det_error: float | None = None
    out_of_bound: float | None = None
    condition_number: float | None = None
    non_finite_values: int = 0
    non_finite_log_det: int = 0
    non_finite_gradients: int | None = None
    gradient_norm: float | None = None


@dataclasses.dataclass(frozen=True)
class Finding:
    """Where a NaN or inf first appeared.

    Attributes:
        stage: ``"value"`` or ``"log_det"`` (a layer's output on the inverse pass, data
            side first), ``"base"`` (the base log-density of values that stayed finite),
            ``"loss"`` (the mean NLL of finite log-densities overflowed), ``"gradient"``
            (values and log-densities were finite, gradients were not) or
            ``"gradient_norm"`` (every gradient entry was finite, but their squared norm
            overflows the dtype, as Adam's second moment would).
        layer: the layer's name (``"base"`` for the base distribution, None for the loss).
        index: the layer's position in the flow (None for the base and the loss).
        kind: the layer's class name (None for the base and the loss).
        count: rows (values, log-dets, base densities) or gradient entries affected (for
            ``"gradient_norm"``, the entries too large to square).
    """

    stage: str
    layer: str | None
    index: int | None
    kind: str | None
    count: int

    def __str__(self):
        who = f"layer {self.index} {self.layer!r} ({self.kind})"
        if self.stage == "value":
            return f"{who}: NaN or inf in its output on the inverse pass, {self.count} rows"
        if self.stage == "log_det":
            return f"{who}: NaN or inf in its log-det on the inverse pass, {self.count} rows"
        if self.stage == "base":
            return (
                f"the base log-density: NaN or inf in {self.count} rows whose values stayed "
                "finite through every layer but grew too large for the dtype (the 'largest' "
                "column shows where they grew)"
            )
        if self.stage == "loss":
            return (
                "the mean NLL overflowed, although every row's log-density was finite (the "
                "'largest' column shows where the values grew)"
            )
        if self.index is None:
            who = "the base distribution"
        if self.stage == "gradient_norm":
            large = f" ({self.count} entries too large to square)" if self.count else ""
            return (
                f"{who}: the largest gradients; every entry is finite but their squared norm "
                f"overflows the dtype, as Adam's second moment would{large}"
            )
        return (
            f"{who}: NaN or inf in {self.count} entries of its weights' gradients, the "
            "first that backpropagation reached (values and log-densities were finite)"
        )


@dataclasses.dataclass(frozen=True)
class Report:
    """The result of :func:`check`: one :class:`LayerReport` per layer, and flow figures.

    ``str(report)`` is a table, one line per layer, data side first.

    Attributes:
        layers: the layer reports, data side first.
        rows: rows checked.
        non_finite_inputs: rows of ``x`` (or of the context) holding NaN or inf; they are
            left out of the counts, since NaN in gives NaN out.
        base_non_finite: rows whose base log-density is NaN or inf although the pass gave
            finite values (flows only).
        loss: the (weighted) mean negative log-likelihood (flows only).
        first_non_finite: the first :class:`Finding`, or None if everything was finite.
    """

    layers: tuple[LayerReport, ...]
    rows: int
    non_finite_inputs: int = 0
    base_non_finite: int | None = None
    loss: float | None = None
    first_non_finite: Finding | None = None

    def __str__(self):
        # Names are never cut: a table must name every layer as the flow does.
        w = max([24, *(len(r.name) for r in self.layers)])
        k = max([22, *(len(r.kind) for r in self.layers)])
        header = (
            f"{'#':>3} {'layer':<{w}} {'kind':<{k}} {'largest':>9} {'round trip':>10} "
            f"{'log-det':>9} "
            f"{'out of bound':>12} {'cond':>9} {'NaN/inf rows':>12} {'NaN grads':>9} "
            f"{'grad norm':>9}"
        )
        lines = [header]
        for r in self.layers:
            nan_rows = f"{r.non_finite_values}/{r.non_finite_log_det}"
            lines.append(
                f"{r.index:>3} {r.name:<{w}} {r.kind:<{k}} {_fmt(r.largest):>9} "
                f"{_fmt(r.round_trip_error):>10} {_fmt(r.log_det_error):>9} "
                f"{_fmt(r.out_of_bound, '.1%'):>12} {_fmt(r.condition_number):>9} "
                f"{nan_rows:>12} {_fmt(r.non_finite_gradients, 'd'):>9} "
                f"{_fmt(r.gradient_norm):>9}"
            )
        notes = [f"{self.rows} rows"]
        if self.non_finite_inputs:
            notes.append(f"{self.non_finite_inputs} holding NaN or inf on input (left out)")
        if self.loss is not None:
            notes.append(f"mean NLL {self.loss:.6g}")
        if self.base_non_finite:
            notes.append(f"{self.base_non_finite} non-finite base log-densities")
        first = "none" if self.first_non_finite is None else str(self.first_non_finite)
        notes.append(f"first NaN/inf: {first}")
        lines.append("; ".join(notes) + ".")
        return "\n".join(lines)


def _fmt(value, spec: str = ".2e") -> str:
    return "-" if value is None else format(value, spec)


@contextlib.contextmanager
def _state_kept(variables):
    """Restores non-trainable state (moving statistics) that a training-mode pass updates."""
    saved = [(v, v.numpy()) for v in variables if not v.trainable]
    try:
        yield
    finally:
        for v, value in saved:
            v.assign(value)


def _max(values, keep) -> float | None:
    values = tf.boolean_mask(values, keep).numpy()
    return float(np.max(values)) if values.size else None


def _spline_share(layer, bijector, z, finite) -> float | None:
    transform = getattr(layer, "transform", None)
    if not isinstance(transform, RationalQuadraticSpline):
        return None
    # A coupling transforms the features its mask does not keep; an autoregressive layer
    # transforms them all. In the density direction the spline's input is the layer's.
    keep = getattr(bijector, "mask", None)
    z = tf.boolean_mask(z, finite)
    if keep is not None:
        z = tf.gather(z, np.flatnonzero(~keep), axis=-1)
    if tf.size(z) == 0:
        return None
    return float(tf.reduce_mean(tf.cast(tf.abs(z) >= transform.bound, tf.float64)))


def _condition_number(layer, bijector, dtype) -> float | None:
    if not isinstance(layer, LULinear):
        return None
    # forward(e_i) is the matrix's i-th column: the rows of eye's image are its transpose.
    matrix = bijector.forward(tf.eye(layer.event_dim, dtype=dtype)).numpy()
    return float(np.linalg.cond(matrix.astype(np.float64)))


def _layer_report(index, layer, context, z, training, jacobian_rows):
    """One layer's pass on ``z`` (data side) -> (its report fields, the next ``z``)."""
    finite = _row_finite(z)
    bijector = layer.bijector(context, training=training)
    out = bijector.inverse(z)
    # As TransformedDistribution.log_prob computes it: minus the forward log-det at the
    # inverse's output (TFP's cache, or a kflows bijector's one-pass memo, may serve it).
    ildj = -bijector.forward_log_det_jacobian(out, event_ndims=1)
    ildj = tf.broadcast_to(ildj, tf.shape(z)[:-1])
    new_values = tf.logical_and(finite, tf.logical_not(_row_finite(out)))
    new_log_det = tf.logical_and(finite, tf.logical_not(tf.math.is_finite(ildj)))
    # Accuracy is that of the map itself: layers in inference mode, at the points reached.
    check = layer.bijector(context) if training else bijector
    errors = round_trip_error(check, z)
    round_trip = _max(errors, tf.math.is_finite(errors))
    rows = np.flatnonzero(finite.numpy())[:jacobian_rows]
    log_det = None
    if rows.size:
        sub_context = context
        if context is not None and context.shape.rank > 1:
            sub_context = tf.gather(context, rows)
        errors = log_det_error(layer.bijector(sub_context), tf.gather(z, rows))
        log_det = _max(errors, tf.ones_like(errors, tf.bool))
    fields = {
        "index": index,
        "name": layer.name,
        "kind": type(layer).__name__,
        "largest": _max(tf.reduce_max(tf.abs(out), axis=-1), _row_finite(out)),
        "round_trip_error": round_trip,
        "log_det_error": log_det,
        "out_of_bound": _spline_share(layer, bijector, z, finite),
        "condition_number": _condition_number(layer, bijector, z.dtype),
        "non_finite_values": int(tf.reduce_sum(tf.cast(new_values, tf.int32))),
        "non_finite_log_det": int(tf.reduce_sum(tf.cast(new_log_det, tf.int32))),
    }
    return fields, out, ildj


def _gradient_figures(flow, x, context, training, sample_weight):
    """Per owner (each layer, then the base): NaN/inf gradient entries of the mean NLL, the
    float64 norm of the finite ones, and the entries too large to square in the dtype."""
    with tf.GradientTape() as tape:
        log_prob = flow.distribution(context, training=training).log_prob(x)
        loss = _mean_nll(log_prob, sample_weight)
    variables = flow.trainable_variables
    grads = tape.gradient(loss, variables) if variables else []
    figures = {}
    for v, g in zip(variables, grads, strict=True):
        if g is None:
            continue
        g = np.asarray(tf.convert_to_tensor(g).numpy(), np.float64)
        finite = np.isfinite(g)
        too_large = np.sqrt(np.finfo(tf.as_dtype(v.dtype).as_numpy_dtype).max)
        figures[id(v)] = (
            int(np.sum(~finite)),
            float(np.sum(np.square(g[finite]))),
            int(np.sum(np.abs(g[finite]) > too_large)),
        )
    owners = [*flow.flow_layers, flow.base]
    out = []
    for owner in owners:
        parts = [figures[id(v)] for v in owner.trainable_variables if id(v) in figures]
        if not parts:  # no weights (a permutation): nothing to report
            out.append((None, None, 0))
            continue
        bad, squares, large = (sum(p[i] for p in parts) for i in range(3))
        out.append((bad, math.sqrt(squares), large))
    return out


def _mean_nll(log_prob, sample_weight):
    if sample_weight is None:
        return -tf.reduce_mean(log_prob)
    w = tf.cast(sample_weight, log_prob.dtype)
    return -tf.reduce_sum(log_prob * w) / tf.maximum(tf.reduce_sum(w), 1e-12)


def _resolve(flow_or_layer):
    """``(flow or None, layers, D, C, dtype)``, refusing unbuilt or foreign objects."""
    if isinstance(flow_or_layer, FlowLayer):
        if not flow_or_layer.built:
            raise ValueError(
                f"Expected a built layer; {flow_or_layer.name} is not built (use it in a flow "
                "that has seen data, or call layer.build((None, D)))."
            )
        layer = flow_or_layer
        return None, [layer], layer.event_dim, None, layer.variable_dtype
    if isinstance(flow_or_layer, keras.Model) and hasattr(flow_or_layer, "flow_layers"):
        flow = flow_or_layer
        if not flow.built or flow.event_dim is None:
            raise ValueError(
                "Expected a built flow; this one has no weights yet (fit it, call log_prob on "
                "data, or pass event_dim=D to the builder)."
            )
        return flow, list(flow.flow_layers), flow.event_dim, flow.context_dim, flow.variable_dtype
    raise TypeError(
        f"Expected a kflows.Flow or a kflows FlowLayer; got {type(flow_or_layer).__name__}."
    )


def _first_in_layers(reports) -> Finding | None:
    for fields in reports:
        for stage, key in (("value", "non_finite_values"), ("log_det", "non_finite_log_det")):
            if fields[key]:
                return Finding(stage, fields["name"], fields["index"], fields["kind"], fields[key])
    return None


def check(
    flow_or_layer,
    x,
    context=None,
    *,
    training: bool = False,
    gradients: bool = False,
    sample_weight=None,
    jacobian_rows: int = 8,
) -> Report:
    """Checks a flow (or one layer) on data ``x``: per-layer accuracy, tails, NaN sources.

    The pass follows ``log_prob``: each layer's inverse, data side first, then (for a flow)
    the base log-density. Rows holding NaN or inf on input are counted apart and left out,
    since NaN in gives NaN out. Nothing changes: moving statistics that a training-mode
    pass updates are restored.

    Args:
        flow_or_layer: a built :class:`~kflows.Flow` or :class:`~kflows.FlowLayer`.
        x: data ``[N, D]``.
        context: ``[N, C]`` or ``[C]`` for conditional flows.
        training: run the layers as in a training step (batch statistics in
            :class:`~kflows.BatchNorm`); round trips and log-dets are always checked
            with the layers in inference mode, at the points the pass reached.
        gradients: also count NaN/inf entries in the gradients of the mean NLL (flows).
        sample_weight: ``[N]`` weights of the mean NLL (flows).
        jacobian_rows: rows (the first finite ones) on which log-dets are compared with
            the autodiff Jacobian; each costs a ``D x D`` Jacobian.

    Returns:
        a :class:`Report`.

    Example:
        >>> flow = kflows.nsf(num_layers=2, hidden_units=(8,), bound=3.0, event_dim=2)
        >>> report = kflows.diagnostics.check(flow, [[0.5, 0.1], [5.0, 0.2]])
        >>> report.layers[0].out_of_bound  # one input of four lies outside [-3, 3]
        0.25
        >>> report.first_non_finite is None
        True
        >>> print(report)  # doctest: +ELLIPSIS
          # layer kind largest round trip log-det out of bound cond NaN/inf rows NaN grads grad norm
          0 masked_autoregressive... MaskedAutoregressive ...25.0% - 0/0 - -
          1 reverse... Reverse ...- - 0/0 - -
          2 masked_autoregressive... MaskedAutoregressive ...25.0% - 0/0 - -
        2 rows; mean NLL ...; first NaN/inf: none.
    """
    flow, layers, dim, context_dim, dtype = _resolve(flow_or_layer)
    if isinstance(jacobian_rows, bool) or not isinstance(jacobian_rows, int) or jacobian_rows < 0:
        raise ValueError(f"Expected jacobian_rows as an integer >= 0; got {jacobian_rows!r}.")
    x = inputs.as_tensor(x, "x", dim, dtype)
    if x.shape.rank != 2:
        raise ValueError(f"Expected x of shape [N, {dim}]; got shape {tuple(x.shape)}.")
    finite = _row_finite(x)
    if context is not None:
        context = inputs.as_tensor(context, "context", context_dim, dtype, "C")
        finite = tf.logical_and(finite, _row_finite(context))  # [C] broadcasts
    if sample_weight is not None:
        sample_weight = inputs.as_tensor(sample_weight, "sample_weight", None, dtype, "N")
    kept = finite.numpy()
    # Rows with a non-finite input or context are left out of every count: make them NaN.
    z = tf.where(finite[:, None], x, tf.constant(math.nan, dtype))
    reports, log_det = [], tf.zeros(tf.shape(x)[:1], dtype)
    with _state_kept(flow_or_layer.variables):
        for index, layer in enumerate(layers):
            fields, z, ildj = _layer_report(index, layer, context, z, training, jacobian_rows)
            reports.append(fields)
            log_det = log_det + ildj
        first = _first_in_layers(reports)
        figures = {}
        if flow is not None:
            figures, first = _flow_figures(
                flow,
                x,
                context,
                z,
                log_det,
                kept,
                sample_weight,
                training,
                gradients,
                reports,
                first,
            )
    return Report(
        layers=tuple(LayerReport(**fields) for fields in reports),
        rows=len(kept),
        non_finite_inputs=int(np.sum(~kept)),
        first_non_finite=first,
        **figures,
    )


def _flow_figures(flow, x, context, z, log_det, kept, weight, training, gradients, reports, first):
    """The base density, the loss and (optionally) gradients of a flow's checked pass."""
    base_log_prob = flow.base.distribution().log_prob(z)
    bad = tf.logical_and(_row_finite(z), tf.logical_not(tf.math.is_finite(base_log_prob)))
    base_bad = int(tf.reduce_sum(tf.cast(bad, tf.int32)))
    log_prob = tf.boolean_mask(base_log_prob + log_det, kept)
    if weight is not None:
        weight = tf.boolean_mask(weight, kept)
    loss = float(_mean_nll(log_prob, weight)) if kept.any() else None
    if first is None and base_bad:
        first = Finding("base", "base", None, None, base_bad)
    every_row_finite = bool(tf.reduce_all(tf.math.is_finite(log_prob)))
    if first is None and every_row_finite and loss is not None and not math.isfinite(loss):
        first = Finding("loss", None, None, None, int(np.sum(kept)))
    if gradients and kept.any():
        rows = np.flatnonzero(kept)
        if context is not None and context.shape.rank > 1:
            context = tf.gather(context, rows)
        figures = _gradient_figures(flow, tf.gather(x, rows), context, training, weight)
        for fields, (bad, norm, _) in zip(reports, figures, strict=False):
            fields["non_finite_gradients"] = bad
            fields["gradient_norm"] = norm
        # Backpropagation runs base side first: the last owner with NaN gradients is the
        # first that received or made them.
        owners = [(i, layer.name, type(layer).__name__) for i, layer in enumerate(flow.flow_layers)]
        owners.append((None, "base", type(flow.base).__name__))
        for (index, name, kind), (bad, _, _) in reversed(list(zip(owners, figures, strict=True))):
            if first is None and bad:
                first = Finding("gradient", name, index, kind, bad)
        limit = float(np.finfo(x.dtype.as_numpy_dtype).max)
        total = math.sqrt(sum(norm**2 for _, norm, _ in figures if norm is not None))
        if first is None and total**2 > limit:
            (index, name, kind), (_, _, large) = max(
                zip(owners, figures, strict=True), key=lambda pair: pair[1][1] or 0.0
            )
            first = Finding("gradient_norm", name, index, kind, large)
    return {"base_non_finite": base_bad, "loss": loss}, first
