"""Figures (needs matplotlib: ``pip install kflows[plot]``)."""

from __future__ import annotations

import numpy as np


def density_2d(flow, data=None, path=None, limits=(-3.5, 3.5), resolution=200, context=None):
    """Plots a 2-D flow's density on a grid, next to data if given; saves to ``path``.

    Returns:
        The matplotlib figure.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("kflows.plot needs matplotlib: pip install 'kflows[plot]'") from err
    if flow.event_dim != 2:
        raise ValueError(f"Expected a flow over 2 features; got {flow.event_dim}.")
    grid = np.linspace(*limits, resolution)
    xx, yy = np.meshgrid(grid, grid)
    points = np.stack([xx.ravel(), yy.ravel()], axis=1).astype(np.float32)
    ctx = None if context is None else np.broadcast_to(context, (len(points), len(context)))
    density = np.exp(flow.log_prob(points, ctx).numpy()).reshape(xx.shape)
    ncols = 1 if data is None else 2
    fig, axes = plt.subplots(1, ncols, figsize=(5 * ncols, 5), squeeze=False)
    axes[0, 0].pcolormesh(xx, yy, density, shading="auto")
    axes[0, 0].set_title(f"{flow.name}: density")
    if data is not None:
        axes[0, 1].scatter(data[:, 0], data[:, 1], s=1, alpha=0.3)
        axes[0, 1].set_xlim(limits)
        axes[0, 1].set_ylim(limits)
        axes[0, 1].set_title("data")
    for ax in axes.ravel():
        ax.set_aspect("equal")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=100)
    return fig
