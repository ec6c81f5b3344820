"""Figures of what a flow learned (needs matplotlib: ``pip install 'kflows[plot]'``).

Every function returns a ``matplotlib.figure.Figure`` drawn on the Agg canvas, made without
``pyplot``: nothing is left open in pyplot's figure list however many figures are made, and
the global backend of a notebook or an application is left alone. ``path`` saves the figure
(the format follows the suffix, written atomically); an existing file is replaced only with
``overwrite=True``.

Example:
    >>> import kflows
    >>> from kflows import plot
    >>> flow = kflows.maf(num_layers=1, hidden_units=(8,))
    >>> flow.build((None, 2))
    >>> fig = plot.density_2d(flow, kflows.data.two_moons(500), resolution=20)
    >>> [ax.get_title() for ax in fig.axes[:3]]
    ['learned density', 'data', 'samples']
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping, Sequence

import numpy as np

from kflows.data import Table

DPI = 110
#: Most points drawn in one scatter panel (a random subset beyond it).
MAX_POINTS = 3000
DATA_COLOUR, SAMPLE_COLOUR = "tab:blue", "tab:orange"
DENSITY_CMAP = "viridis"


# ---------------------------------------------------------------- figures and files
def _new_figure(width: float, height: float):
    """An Agg figure that pyplot does not track (so nothing is left to close)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as err:
        raise ImportError(
            "kflows.plot needs matplotlib: pip install 'kflows[plot]'", name="matplotlib"
        ) from err
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path, overwrite: bool) -> None:
    """Writes ``fig`` to ``path`` atomically; refuses to replace a file unless ``overwrite``."""
    if path is None:
        return
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"Expected a file path (str or os.PathLike); got {path!r}.")
    path = os.fsdecode(os.fspath(path))
    formats = fig.canvas.get_supported_filetypes()
    fmt = os.path.splitext(path)[1][1:].lower()
    if fmt not in formats:
        raise ValueError(
            f"Expected a figure file ending in one of {sorted(formats)}; got {path!r}."
        )
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"{path!r} exists; pass overwrite=True to replace it.")
    directory = os.path.dirname(path) or "."
    if not os.path.isdir(directory):
        raise FileNotFoundError(
            f"Expected an existing folder for {path!r}; no folder {directory!r}."
        )
    # A hidden name in the same folder, so the final rename is atomic.
    partial = os.path.join(directory, f".{os.path.basename(path)}.{uuid.uuid4().hex}.partial")
    try:
        fig.savefig(partial, format=fmt, dpi=DPI)
        os.replace(partial, path)
    finally:
        if os.path.exists(partial):
            os.remove(partial)


# ---------------------------------------------------------------- checks and helpers
def _array(x, name: str, dim: int | None = None) -> np.ndarray:
    """``x`` as a float32 ``[N, D]`` array (``D == dim`` when given); refuses anything else."""
    array = np.asarray(x, dtype=np.float32) if x is not None else None
    if array is None or array.ndim != 2 or len(array) == 0:
        shape = None if array is None else array.shape
        raise ValueError(f"Expected {name} as a non-empty [N, D] array; got shape {shape}.")
    if dim is not None and array.shape[1] != dim:
        raise ValueError(f"Expected {name} with {dim} columns; got shape {array.shape}.")
    return array


def _event_dim(flow) -> int:
    if getattr(flow, "event_dim", None) is None:
        raise ValueError("Expected a built flow; build or fit it first (flow.build((None, D))).")
    return int(flow.event_dim)


def _subsample(x: np.ndarray, limit: int = MAX_POINTS, seed: int = 0) -> np.ndarray:
    if len(x) <= limit:
        return x
    return x[np.sort(np.random.default_rng(seed).choice(len(x), limit, replace=False))]


def _robust_limits(x: np.ndarray, margin: float = 0.1) -> np.ndarray:
    """Per-column ``[lo, hi]`` covering all but the 0.5% most extreme values on each side.

    A few outliers (or samples from a flow's heavy tails) would otherwise squash the bulk
    of the data into a corner of the panel.
    """
    x = x[np.isfinite(x).all(axis=1)]
    if len(x) == 0:
        return np.tile([[-1.0, 1.0]], (x.shape[1], 1))
    lo, hi = np.percentile(x, [0.5, 99.5], axis=0)
    width = np.maximum(hi - lo, 1e-3)
    return np.stack([lo - margin * width, hi + margin * width], axis=1)


def _limits_2d(limits) -> np.ndarray:
    """User limits ``(lo, hi)`` or ``((x_lo, x_hi), (y_lo, y_hi))`` as a ``[2, 2]`` array."""
    array = np.asarray(limits, dtype=np.float64)
    if array.shape == (2,):
        array = np.stack([array, array])
    if array.shape != (2, 2) or not np.isfinite(array).all() or (array[:, 0] >= array[:, 1]).any():
        raise ValueError(
            f"Expected limits (lo, hi) or ((x_lo, x_hi), (y_lo, y_hi)) with finite lo < hi; "
            f"got {limits!r}."
        )
    return array


def _context_rows(context, flow, count: int | None = None) -> np.ndarray | None:
    """A context row or rows as float32 ``[K, C]`` matching the flow's ``context_dim``."""
    context_dim = getattr(flow, "context_dim", None)
    if context is None:
        if context_dim is not None:
            raise ValueError(
                f"This flow is conditional (context_dim={context_dim}); pass a context."
            )
        return None
    if context_dim is None:
        raise ValueError("This flow has no context (context_dim=None); got a context.")
    rows = np.asarray(context, dtype=np.float32)
    if rows.ndim <= 1 and (count == 1 or context_dim == 1):
        rows = rows.reshape(-1, context_dim)
    if rows.ndim != 2 or rows.shape[1] != context_dim or (count and len(rows) != count):
        want = "one context row" if count == 1 else "context rows [K, C]"
        raise ValueError(f"Expected {want} with C = {context_dim}; got shape {rows.shape}.")
    return rows


def _sample(flow, n: int, context_row=None, seed: int = 0) -> np.ndarray:
    # One context row [C] gives [n, D] samples (a [B, C] batch would give [n, B, D]).
    return np.asarray(flow.sample(n, context=context_row, seed=seed))


def _density_grid(flow, limits: np.ndarray, resolution: int, context_row=None):
    """The flow's density on a ``resolution`` x ``resolution`` grid over ``limits``."""
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 2:
        raise ValueError(f"Expected resolution to be an integer >= 2; got {resolution!r}.")
    xs = np.linspace(*limits[0], resolution, dtype=np.float32)
    ys = np.linspace(*limits[1], resolution, dtype=np.float32)
    xx, yy = np.meshgrid(xs, ys)
    points = np.stack([xx.ravel(), yy.ravel()], axis=1)
    log_prob = np.asarray(flow.log_prob(points, context_row))  # a [C] context: every row
    return xx, yy, np.exp(log_prob).reshape(xx.shape)


def _heat_map(ax, xx, yy, density, title: str) -> None:
    finite = density[np.isfinite(density)]
    # The top 0.1% of the grid saturates, so one sharp peak cannot wash out the rest.
    top = float(np.percentile(finite, 99.9)) if finite.size else 1.0
    ax.pcolormesh(xx, yy, density, shading="auto", cmap=DENSITY_CMAP, vmin=0.0, vmax=top or 1.0)
    if finite.size < density.size:
        title += f"\n({density.size - finite.size} grid points not finite, blank)"
    ax.set_title(title)


def _point_style(n: int) -> tuple[float, float]:
    """Marker size and opacity: a few hundred points need to be bigger and darker."""
    if n <= 500:
        return 7.0, 0.7
    return (3.0, 0.5) if n <= 1500 else (2.0, 0.35)


def _scatter(ax, x, colour, title=None, seed=0) -> None:
    x = _subsample(x, seed=seed)
    size, alpha = _point_style(len(x))
    ax.scatter(x[:, 0], x[:, 1], s=size, c=colour, alpha=alpha, linewidths=0)
    if title:
        ax.set_title(title)


def _frame_2d(axes, limits: np.ndarray, columns) -> None:
    """Same limits and equal aspect on every panel of a grid; labels on its outer edges."""
    for (i, j), ax in np.ndenumerate(axes):
        ax.set_xlim(limits[0])
        ax.set_ylim(limits[1])
        ax.set_aspect("equal")
        if i == axes.shape[0] - 1:
            ax.set_xlabel(columns[0])
        if j == 0:
            ax.set_ylabel(columns[1])


def _panel_size(limits: np.ndarray, height: float) -> float:
    """The width of a panel of this ``height`` showing ``limits`` at equal aspect."""
    ratio = (limits[0, 1] - limits[0, 0]) / (limits[1, 1] - limits[1, 0])
    return height * float(np.clip(ratio, 0.5, 2.0))


def _names(columns, dim: int, prefix: str = "x") -> tuple[str, ...]:
    if columns is None:
        return tuple(f"{prefix}{j}" for j in range(dim))
    columns = tuple(str(c) for c in columns)
    if len(columns) != dim:
        raise ValueError(f"Expected {dim} column names; got {len(columns)}: {columns}.")
    return columns


def _short(name: str, limit: int = 16) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "…"


# ---------------------------------------------------------------- figures
def _zoom_range(curves: list[np.ndarray]) -> tuple[int, tuple[float, float]] | None:
    """``(first epoch, y range)`` of the later epochs when early ones dwarf them, else None.

    The first epochs' loss can be orders of magnitude above the rest, which then looks flat.
    """
    finite = [v[np.isfinite(v)] for v in curves]
    if sum(v.size for v in finite) <= 4:
        return None
    late = np.concatenate([v[len(v) // 5 :] for v in finite])
    lo, hi = min(v.min() for v in finite if v.size), late.max()
    if max(v.max() for v in finite if v.size) <= hi + 5 * (hi - lo):
        return None
    pad = 0.1 * (hi - lo or 1.0)
    top = hi + 4 * pad
    # The first epoch from which every curve stays on the zoomed scale.
    above = [np.flatnonzero(v > top) for v in curves]
    first = max(int(a[-1]) + 2 if a.size else 1 for a in above)
    return first, (lo - pad, top)


def learning_curve(history: Mapping[str, Sequence[float]], path=None, overwrite: bool = False):
    """The training (and validation) loss per epoch.

    Args:
        history: ``{"loss": [...], "val_loss": [...]}`` (``val_loss`` optional), e.g. a
            Keras ``History``'s ``.history``; the loss is the negative log-likelihood in nats.
        path: where to save the figure (``.png``, ``.pdf``, ``.svg``, ...); ``None``: don't.
        overwrite: replace an existing file at ``path``.

    Returns:
        The matplotlib ``Figure`` (one axes).

    Raises:
        ValueError: no non-empty ``"loss"`` in ``history``, or a bad ``path``.
        FileExistsError: ``path`` exists and ``overwrite`` is false.

    Example:
        >>> fig = learning_curve({"loss": [2.0, 1.5, 1.2], "val_loss": [2.1, 1.6, 1.4]})
        >>> fig.axes[0].get_ylabel()
        'negative log-likelihood (nats)'
    """
    history = getattr(history, "history", history)  # a keras.callbacks.History works too
    if not isinstance(history, Mapping) or len(history.get("loss", ())) == 0:
        raise ValueError(f"Expected a history with a non-empty 'loss' list; got {history!r}.")
    curves = {
        label: np.asarray(values, dtype=np.float64).ravel()
        for label, values in (
            ("train", history["loss"]),
            ("validation", history.get("val_loss", ())),
        )
        if len(values)
    }
    notes = [
        f"{label}: not finite at epoch {int(np.argmax(~np.isfinite(v))) + 1}"
        for label, v in curves.items()
        if not np.isfinite(v).all()
    ]
    zoom = _zoom_range(list(curves.values()))
    fig = _new_figure(11.0 if zoom else 6.0, 4.0)
    axes = fig.subplots(1, 2 if zoom else 1, squeeze=False)[0]
    for ax in axes:
        for label, values in curves.items():
            last = f"{values[-1]:.4g}" if np.isfinite(values[-1]) else str(values[-1])
            ax.plot(
                np.arange(1, values.size + 1),
                values,
                marker="." if values.size < 50 else None,
                label=f"{label} (last {last})",
            )
        validation = curves.get("validation")
        if validation is not None and np.isfinite(validation).any():
            best = int(np.nanargmin(np.where(np.isfinite(validation), validation, np.nan)))
            ax.axvline(
                best + 1, color="grey", linestyle=":", label=f"best validation: epoch {best + 1}"
            )
        ax.set_xlabel("epoch")
        ax.set_ylabel("negative log-likelihood (nats)")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
        ax.legend()
    axes[0].set_title("learning curve" + (f"\n({'; '.join(notes)})" if notes else ""))
    if zoom:
        first, (lo, hi) = zoom
        axes[1].set_xlim(first - 0.5, max(len(v) for v in curves.values()) + 0.5)
        axes[1].set_ylim(lo, hi)
        axes[1].set_title(f"zoom on epochs {first} to {axes[1].get_xlim()[1] - 0.5:.0f}")
    _save(fig, path, overwrite)
    return fig


def density_2d(
    flow,
    data=None,
    path=None,
    limits=None,
    resolution: int = 200,
    context=None,
    samples=None,
    columns=None,
    seed: int = 0,
    overwrite: bool = False,
):
    """A 2-D flow's density as a heat map, beside the data and the flow's samples.

    All panels share the same axes, so shapes line up across them.

    Args:
        flow: a built flow over 2 features.
        data: ``[N, 2]`` data to show (and to take the axes' limits from), or ``None``.
        path: where to save the figure; ``None``: don't.
        limits: ``(lo, hi)`` for both axes, ``((x_lo, x_hi), (y_lo, y_hi))``, or ``None``:
            the range of the data (or of the samples), ignoring the 0.5% most extreme values
            on each side.
        resolution: grid points per axis of the heat map.
        context: one context row ``[C]`` for a conditional flow.
        samples: ``[M, 2]`` samples to show; ``None`` draws as many as there are data rows
            (at most :data:`MAX_POINTS`, 2,000 without data).
        columns: the two axis labels (default ``"x0"``, ``"x1"``).
        seed: seed of the samples drawn and of the points picked for the scatter panels.
        overwrite: replace an existing file at ``path``.

    Returns:
        The matplotlib ``Figure``: panels "learned density", "data" (with data) and
        "samples", then the colour bar.

    Raises:
        ValueError: the flow is not built or not 2-D, arrays of the wrong shape, bad
            ``limits``, a missing or unwanted ``context``, or a bad ``path``.
        FileExistsError: ``path`` exists and ``overwrite`` is false.
    """
    if _event_dim(flow) != 2:
        raise ValueError(f"Expected a flow over 2 features; got {flow.event_dim}.")
    context_row = _context_rows(context, flow, count=1)
    context_row = None if context_row is None else context_row[0]
    data = None if data is None else _array(data, "data", 2)
    if samples is None:
        n = MAX_POINTS if data is None else min(len(data), MAX_POINTS)
        samples = _sample(flow, n if data is not None else 2000, context_row, seed)
    samples = _array(samples, "samples", 2)
    limits = _robust_limits(samples if data is None else data) if limits is None else limits
    limits = _limits_2d(limits)
    columns = _names(columns, 2)
    panels = ["learned density"] + (["data"] if data is not None else []) + ["samples"]
    fig = _new_figure(_panel_size(limits, 3.3) * len(panels) + 1.0, 3.9)
    axes = fig.subplots(1, len(panels), sharex=True, sharey=True, squeeze=False)
    xx, yy, density = _density_grid(flow, limits, resolution, context_row)
    _heat_map(axes[0, 0], xx, yy, density, "learned density")
    fig.colorbar(axes[0, 0].collections[0], ax=axes, shrink=0.8, label="density", pad=0.01)
    if data is not None:
        _scatter(axes[0, 1], data, DATA_COLOUR, "data", seed=seed)
    _scatter(axes[0, -1], samples, SAMPLE_COLOUR, "samples", seed=seed)
    _frame_2d(axes, limits, columns)
    if context_row is not None:
        fig.suptitle(f"context {np.array2string(context_row, precision=3)}")
    _save(fig, path, overwrite)
    return fig


def corner(data, samples, path=None, columns=None, max_dims: int = 6, overwrite: bool = False):
    """Pairwise marginals of data against samples: histograms on the diagonal, scatter below.

    Args:
        data: ``[N, D]`` data.
        samples: ``[M, D]`` samples from the flow.
        path: where to save the figure; ``None``: don't.
        columns: names of the ``D`` columns (default ``"x0"``, ...).
        max_dims: show at most the first ``max_dims`` columns.
        overwrite: replace an existing file at ``path``.

    Returns:
        The matplotlib ``Figure``; its first ``k * k`` axes are the grid, row by row
        (``k = min(D, max_dims)``), the cells above the diagonal hidden.

    Raises:
        ValueError: arrays of different widths, a bad ``max_dims`` or ``path``.
        FileExistsError: ``path`` exists and ``overwrite`` is false.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> fig = corner(rng.normal(size=(200, 3)), rng.normal(size=(200, 3)))
        >>> sum(ax.get_visible() for ax in fig.axes)
        6
    """
    data = _array(data, "data")
    samples = _array(samples, "samples", data.shape[1])
    if isinstance(max_dims, bool) or not isinstance(max_dims, int) or max_dims < 1:
        raise ValueError(f"Expected max_dims to be an integer >= 1; got {max_dims!r}.")
    names = _names(columns, data.shape[1])
    k = min(data.shape[1], max_dims)
    limits = _robust_limits(data[:, :k])
    size = max(1.6, min(2.4, 11.0 / k))
    fig = _new_figure(size * k + 0.4, size * k + 0.6)
    axes = fig.subplots(k, k, squeeze=False)
    # As many sample points as data points in the scatters, so their looks compare; all
    # samples go into the histograms.
    shown_data = _subsample(data)
    shown_samples = _subsample(samples, len(shown_data))
    size, alpha = _point_style(len(shown_data))
    bins = int(np.clip(1.5 * np.sqrt(len(data)), 10, 50))
    for i in range(k):
        for j in range(k):
            ax = axes[i, j]
            if j > i:
                ax.set_visible(False)
                continue
            if i == j:
                edges = np.linspace(*limits[i], bins + 1)
                ax.hist(data[:, i], edges, density=True, color=DATA_COLOUR, alpha=0.45)
                ax.hist(
                    samples[:, i],
                    edges,
                    density=True,
                    color=SAMPLE_COLOUR,
                    histtype="step",
                    linewidth=1.5,
                )
                ax.set_yticks([])
            else:
                for points, colour in ((shown_data, DATA_COLOUR), (shown_samples, SAMPLE_COLOUR)):
                    ax.scatter(
                        points[:, j], points[:, i], s=size, c=colour, alpha=alpha, linewidths=0
                    )
                ax.set_ylim(limits[i])
            ax.set_xlim(limits[j])
            ax.tick_params(labelsize=7)
            if i == k - 1:
                ax.set_xlabel(_short(names[j]), fontsize=8)
            else:
                ax.set_xticklabels([])
            if j == 0 and i > 0:
                ax.set_ylabel(_short(names[i]), fontsize=8)
            elif j > 0:
                ax.set_yticklabels([])
    from matplotlib.patches import Patch

    fig.legend(
        handles=[
            Patch(color=DATA_COLOUR, alpha=0.6, label=f"data ({len(data)})"),
            Patch(color=SAMPLE_COLOUR, label=f"samples ({len(samples)})"),
        ],
        loc="upper right",
        fontsize=9,
    )
    shown = f" (first {k} of {data.shape[1]} columns)" if k < data.shape[1] else ""
    fig.suptitle(f"pairwise marginals: data vs samples{shown}")
    _save(fig, path, overwrite)
    return fig


def _near(data_context: np.ndarray, row: np.ndarray, share: float) -> tuple[np.ndarray, str]:
    """The data rows whose context equals ``row`` (or else the nearest ``share`` of them)."""
    scale = data_context.std(axis=0)
    distance = np.linalg.norm((data_context - row) / np.where(scale > 0, scale, 1.0), axis=1)
    exact = np.flatnonzero(distance == 0)
    if len(exact) >= 10:
        return exact, "data"
    return np.argsort(distance)[: max(10, int(share * len(distance)))], "data near this context"


def _context_label(row: np.ndarray, names: Sequence[str]) -> str:
    return ", ".join(
        f"{_short(name, 12)} = {value:.3g}" for name, value in zip(names, row, strict=True)
    )


def conditional(
    flow,
    contexts,
    data=None,
    data_context=None,
    path=None,
    columns=None,
    context_columns=None,
    seed: int = 0,
    overwrite: bool = False,
):
    """A conditional flow at a few contexts, one column (2-D flow) or one row (D > 2) each.

    For a 2-D flow each context gets its density as a heat map, the data rows with that
    context (or the nearest 10%) and the flow's samples, all on the same axes. For more
    features each context gets the samples' marginal histograms of the first 4 columns
    against those data rows.

    Args:
        flow: a built conditional flow.
        contexts: ``[K, C]`` context rows (``[K]`` when ``C == 1``).
        data: ``[N, D]`` data, or ``None``.
        data_context: ``[N, C]`` context of each data row (needed with ``data``).
        path: where to save the figure; ``None``: don't.
        columns: names of the ``D`` value columns; context_columns: of the ``C`` context
            columns.
        seed: seed of the samples.
        overwrite: replace an existing file at ``path``.

    Returns:
        The matplotlib ``Figure``.

    Raises:
        ValueError: an unconditional or unbuilt flow, arrays of the wrong shapes, or a bad
            ``path``.
        FileExistsError: ``path`` exists and ``overwrite`` is false.
    """
    dim = _event_dim(flow)
    if getattr(flow, "context_dim", None) is None:
        raise ValueError("Expected a conditional flow (context_dim set); got one without context.")
    rows = _context_rows(contexts, flow)
    names = _names(columns, dim)
    context_names = _names(context_columns, rows.shape[1], prefix="c")
    if (data is None) != (data_context is None):
        raise ValueError("Expected data and data_context together (or neither).")
    if data is not None:
        data = _array(data, "data", dim)
        data_context = _array(data_context, "data_context", rows.shape[1])
        if len(data_context) != len(data):
            raise ValueError(
                f"Expected one data_context row per data row; got {len(data_context)} "
                f"for {len(data)}."
            )
    near, near_label = [None] * len(rows), ""
    if data is not None:
        picked = [_near(data_context, r, 0.1) for r in rows]
        near = [data[index] for index, _ in picked]
        near_label = picked[-1][1]
    counts = [1000 if x is None else int(np.clip(len(x), 1000, MAX_POINTS)) for x in near]
    samples = [_sample(flow, n, r, seed) for n, r in zip(counts, rows, strict=True)]
    if dim == 2:
        fig = _conditional_2d(flow, rows, near, near_label, samples, names, context_names)
    else:
        fig = _conditional_marginals(rows, near, near_label, samples, names, context_names)
    _save(fig, path, overwrite)
    return fig


def _conditional_2d(flow, rows, near, near_label, samples, names, context_names):
    pool = np.concatenate([x for x in near if x is not None] or samples)
    limits = _robust_limits(pool)
    has_data = near[0] is not None
    n_rows = 3 if has_data else 2
    fig = _new_figure(_panel_size(limits, 3.0) * len(rows) + 0.8, 3.0 * n_rows + 0.4)
    axes = fig.subplots(n_rows, len(rows), squeeze=False, sharex=True, sharey=True)
    for j, row in enumerate(rows):
        xx, yy, density = _density_grid(flow, limits, 150, row)
        _heat_map(axes[0, j], xx, yy, density, _context_label(row, context_names))
        shown = len(samples[j])
        if has_data:
            shown = min(len(near[j]), MAX_POINTS)
            _scatter(axes[1, j], near[j], DATA_COLOUR, f"{near_label}\n({len(near[j])} rows)")
        # As many sample points as data points, so the two scatters compare.
        _scatter(axes[-1, j], _subsample(samples[j], shown), SAMPLE_COLOUR, "samples")
    _frame_2d(axes, limits, names)
    fig.suptitle(
        "learned density at each context" + (", data near it" if has_data else "") + ", samples"
    )
    return fig


def _conditional_marginals(rows, near, near_label, samples, names, context_names):
    k = min(len(names), 4)
    pool = np.concatenate([x for x in near if x is not None] or samples)
    limits = _robust_limits(pool[:, :k])
    fig = _new_figure(2.8 * k + 0.4, 2.3 * len(rows) + 0.6)
    axes = fig.subplots(len(rows), k, squeeze=False)
    count = min(len(x) for x in near) if near[0] is not None else 1000
    # The axes span every context, where one context may fill a narrow part: finer bins.
    bins = int(np.clip(3 * np.sqrt(count), 15, 40))
    for i, row in enumerate(rows):
        for j in range(k):
            ax = axes[i, j]
            edges = np.linspace(*limits[j], bins + 1)
            if near[i] is not None:
                ax.hist(
                    near[i][:, j],
                    edges,
                    density=True,
                    color=DATA_COLOUR,
                    alpha=0.45,
                    label=f"{near_label} ({len(near[i])} rows)",
                )
            ax.hist(
                samples[i][:, j],
                edges,
                density=True,
                color=SAMPLE_COLOUR,
                histtype="step",
                linewidth=1.5,
                label="samples",
            )
            ax.set_yticks([])
            ax.set_xlim(limits[j])
            if i == len(rows) - 1:
                ax.set_xlabel(_short(names[j]))
            if j == 0:
                ax.set_ylabel(_context_label(row, context_names), fontsize=8)
    for ax in axes[:, -1]:
        ax.legend(fontsize=7, loc="best")
    shown = f" (first {k} of {len(names)} columns)" if k < len(names) else ""
    fig.suptitle(f"marginals at each context{shown}")
    return fig


def _pick_contexts(context: np.ndarray, count: int = 3) -> np.ndarray:
    """A few representative context rows: the distinct ones if few, else spread quantiles."""
    distinct = np.unique(context, axis=0)
    if len(distinct) <= 4:
        return distinct
    order = np.argsort(context[:, 0], kind="stable")
    picks = order[(np.linspace(0.1, 0.9, count) * (len(order) - 1)).astype(int)]
    return context[picks]


def run_figures(
    flow,
    out_dir,
    data,
    context=None,
    history=None,
    seed: int = 0,
    columns=None,
    context_columns=None,
    overwrite: bool = False,
) -> list[str]:
    """Makes the figures that fit ``flow`` in ``out_dir`` and returns their paths.

    ``learning_curve.png`` when ``history`` is given; then ``density.png`` for an
    unconditional 2-D flow, ``corner.png`` for an unconditional flow of another width, or
    ``conditional.png`` (at a few contexts picked from ``context``) for a conditional one.

    Args:
        flow: a built flow.
        out_dir: the folder (created if missing).
        data: ``[N, D]`` data, or a :class:`kflows.data.Table` (its values, context and
            column names then fill ``context``, ``columns`` and ``context_columns``).
        context: ``[N, C]`` context of the data rows for a conditional flow.
        history: ``{"loss": [...], "val_loss": [...]}``, or ``None``.
        seed: seed of the samples drawn.
        columns: names of the value columns; context_columns: of the context columns.
        overwrite: replace figures already in ``out_dir``.

    Returns:
        The paths written, in the order above.

    Raises:
        ValueError: see the figure functions.
        FileExistsError: a figure exists and ``overwrite`` is false (checked before any
            figure is drawn).
    """
    if isinstance(data, Table):
        context = data.context if context is None else context
        columns = data.columns if columns is None else columns
        context_columns = data.context_columns if context_columns is None else context_columns
        data = data.values
    dim = _event_dim(flow)
    data = _array(data, "data", dim)
    conditional_flow = getattr(flow, "context_dim", None) is not None
    if conditional_flow and context is None:
        raise ValueError("Expected the data's context for a conditional flow; got None.")
    main = "conditional" if conditional_flow else "density" if dim == 2 else "corner"
    names = (["learning_curve"] if history is not None else []) + [main]
    out_dir = os.fsdecode(os.fspath(out_dir))
    paths = [os.path.join(out_dir, f"{name}.png") for name in names]
    existing = [p for p in paths if os.path.exists(p)]
    if existing and not overwrite:
        raise FileExistsError(f"{existing} exist; pass overwrite=True to replace them.")
    os.makedirs(out_dir, exist_ok=True)
    options = {"path": paths[-1], "columns": columns, "overwrite": overwrite}
    if history is not None:
        learning_curve(history, paths[0], overwrite=overwrite)
    if main == "conditional":
        context = _array(context, "context", flow.context_dim)
        conditional(
            flow,
            _pick_contexts(context),
            data,
            context,
            seed=seed,
            context_columns=context_columns,
            **options,
        )
    elif main == "density":
        density_2d(flow, data, seed=seed, **options)
    else:
        # Enough samples for smooth histograms even when the table is small.
        samples = _sample(flow, int(np.clip(len(data), 2000, 5 * MAX_POINTS)), seed=seed)
        corner(data, samples, **options)
    return paths
