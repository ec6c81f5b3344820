"""Figures: panels, matched axes, files, and clear errors (tiny untrained flows)."""

import builtins

import numpy as np
import pytest

import kflows
from kflows import data, plot

pytest.importorskip("matplotlib")

PNG = b"\x89PNG\r\n\x1a\n"


def _flow(dim, context_dim=None):
    flow = kflows.maf(num_layers=1, hidden_units=(8,), context_dim=context_dim)
    flow.build((None, dim) if context_dim is None else ((None, dim), (None, context_dim)))
    return flow


@pytest.fixture(scope="module")
def flow2():
    return _flow(2)


@pytest.fixture(scope="module")
def flow3():
    return _flow(3)


@pytest.fixture(scope="module")
def conditional2():
    return _flow(2, context_dim=1)


def _is_png(path):
    with open(path, "rb") as file:
        return file.read(8) == PNG


def test_density_2d_panels_share_the_axes_and_ignore_outliers(flow2, tmp_path):
    x = data.two_moons(500)
    outlier = np.concatenate([x, [[1000.0, -1000.0]]]).astype(np.float32)
    path = tmp_path / "d.png"
    fig = plot.density_2d(flow2, outlier, path, resolution=16)  # the older positional call
    assert _is_png(path)
    panels = fig.axes[:3]
    assert [ax.get_title() for ax in panels] == ["learned density", "data", "samples"]
    assert fig.axes[3].get_ylabel() == "density"  # the colour bar
    limits = {(ax.get_xlim(), ax.get_ylim()) for ax in panels}
    assert len(limits) == 1
    (x_lo, x_hi), (y_lo, y_hi) = limits.pop()
    # The bulk of the data fills the panel; the one far outlier does not stretch it.
    assert -2.5 < x_lo < x.min(0)[0] + 0.1 and x.max(0)[0] - 0.1 < x_hi < 2.5
    assert -2.5 < y_lo < -1.0 and 1.0 < y_hi < 2.5
    assert all(ax.get_aspect() == 1.0 for ax in panels)
    assert panels[0].collections[0].get_array().size == 16 * 16
    # The samples panel shows the flow's samples: as many as data rows (up to a limit).
    assert len(panels[2].collections[0].get_offsets()) == len(outlier)


def test_density_2d_options(flow2):
    samples = np.zeros((10, 2), np.float32)
    fig = plot.density_2d(flow2, samples=samples, limits=(-1, 3), resolution=8, columns=["a", "b"])
    assert [ax.get_title() for ax in fig.axes[:2]] == ["learned density", "samples"]
    assert fig.axes[0].get_xlim() == (-1.0, 3.0) and fig.axes[1].get_ylim() == (-1.0, 3.0)
    assert fig.axes[0].get_xlabel() == "a" and fig.axes[0].get_ylabel() == "b"
    fig = plot.density_2d(flow2, samples=samples, limits=((0, 1), (2, 5)), resolution=8)
    assert fig.axes[0].get_xlim() == (0.0, 1.0) and fig.axes[0].get_ylim() == (2.0, 5.0)


def test_density_2d_refuses_bad_input(flow2, flow3, conditional2):
    x = data.two_moons(20)
    cases = [
        (lambda: plot.density_2d(flow3, x), "flow over 2 features; got 3"),
        (lambda: plot.density_2d(flow2, x[:, :1]), r"data with 2 columns; got shape \(20, 1\)"),
        (lambda: plot.density_2d(flow2, x, limits=(1, 0)), "finite lo < hi; got"),
        (lambda: plot.density_2d(flow2, x, limits=(0, np.nan)), "finite lo < hi"),
        (lambda: plot.density_2d(flow2, x, resolution=1), "resolution to be an integer >= 2"),
        (lambda: plot.density_2d(flow2, x, resolution=20.0), "resolution to be an integer"),
        (lambda: plot.density_2d(flow2, x, context=[1.0]), "has no context"),
        (lambda: plot.density_2d(conditional2, x), "conditional .*pass a context"),
        (lambda: plot.density_2d(conditional2, x, context=[1.0, 2.0]), r"one context row"),
        (lambda: plot.density_2d(kflows.maf(num_layers=1), x), "Expected a built flow"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message):
            call()


def test_density_2d_at_a_context(conditional2):
    fig = plot.density_2d(conditional2, data.two_moons(50), resolution=8, context=[0.5])
    assert "context [0.5]" in fig.get_suptitle()


def test_corner_grid_and_limits():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 4)).astype(np.float32)
    samples = np.concatenate([rng.normal(size=(500, 4)), [[1e4, 0, 0, 0]]])
    fig = plot.corner(x, samples, columns=["a", "b", "c", "d"], max_dims=3)
    grid = np.array(fig.axes[:9]).reshape(3, 3)
    assert [ax.get_visible() for ax in grid.ravel()] == [
        True, False, False, True, True, False, True, True, True
    ]  # fmt: skip
    assert "first 3 of 4 columns" in fig.get_suptitle()
    assert [ax.get_xlabel() for ax in grid[-1]] == ["a", "b", "c"]
    assert [grid[i, 0].get_ylabel() for i in (1, 2)] == ["b", "c"]
    for j in range(3):
        column = {grid[i, j].get_xlim() for i in range(j, 3)}
        assert len(column) == 1  # a column shares its x range down the grid
        lo, hi = column.pop()
        assert -5 < lo < x[:, j].min() + 0.5 and x[:, j].max() - 0.5 < hi < 5  # outlier ignored
    for i in range(1, 3):
        assert {grid[i, j].get_ylim() for j in range(i)} == {grid[i, i].get_xlim()}
    # As many sample points as data points in a scatter.
    assert [len(c.get_offsets()) for c in grid[1, 0].collections] == [300, 300]
    one = plot.corner(x[:, :1], samples[:, :1])
    assert len(one.axes) == 1 and one.get_suptitle().endswith("data vs samples")


def test_corner_refuses_bad_input(tmp_path):
    x = np.zeros((5, 3))
    for call, message in [
        (lambda: plot.corner(x, np.zeros((5, 2))), r"samples with 3 columns; got shape \(5, 2\)"),
        (lambda: plot.corner(x[0], x), r"data as a non-empty \[N, D\] array; got shape \(3,\)"),
        (lambda: plot.corner(x, x, columns=["a"]), "3 column names; got 1"),
        (lambda: plot.corner(x, x, max_dims=0), "max_dims to be an integer >= 1"),
        (lambda: plot.corner(x, x, path=tmp_path / "c.txt"), r"ending in one of \[.*'png'"),
    ]:
        with pytest.raises(ValueError, match=message):
            call()
    with pytest.raises(FileNotFoundError, match="existing folder"):
        plot.corner(x, x, path=tmp_path / "no" / "c.png")


def test_learning_curve():
    history = {"loss": [900.0, 3.0, 2.0, 1.5, 1.4, 1.3], "val_loss": [5, 3, 2, 2.5, 2.2, 2]}
    fig = plot.learning_curve(history)
    full, zoom = fig.axes
    assert [line.get_label() for line in full.lines] == [
        "train (last 1.3)",
        "validation (last 2)",
        "best validation: epoch 3",
    ]
    assert full.get_ylabel() == "negative log-likelihood (nats)" and full.get_xlabel() == "epoch"
    assert full.get_ylim()[1] > 900  # every epoch in the first panel
    # The first epoch's 900 would flatten the rest; a second panel shows the later epochs.
    assert zoom.get_ylim()[1] < 5 and zoom.get_xlim()[0] == 1.5
    assert zoom.get_title() == "zoom on epochs 2 to 6"
    assert len(plot.learning_curve({"loss": [3.0, 2.0, 1.5, 1.4, 1.3]}).axes) == 1
    fig = plot.learning_curve({"loss": [2.0, float("nan"), 1.0]})
    assert len(fig.axes[0].lines) == 1 and "not finite at epoch 2" in fig.axes[0].get_title()
    assert fig.axes[0].lines[0].get_label() == "train (last 1)"
    for bad in ({}, {"loss": []}, {"val_loss": [1.0]}, [1.0, 2.0]):
        with pytest.raises(ValueError, match="non-empty 'loss'"):
            plot.learning_curve(bad)


def test_conditional_2d_and_marginals(conditional2):
    table = data.table("labelled_moons", subset="validation")
    fig = plot.conditional(
        conditional2, [0.0, 1.0], table.values, table.context, context_columns=["moon"]
    )
    assert len(fig.axes) == 6  # density, data near the context, samples x 2 contexts
    assert [ax.get_title() for ax in fig.axes[:2]] == ["moon = 0", "moon = 1"]
    assert fig.axes[2].get_title() == f"data\n({int((table.context == 0).sum())} rows)"
    assert len({(ax.get_xlim(), ax.get_ylim()) for ax in fig.axes}) == 1
    alone = plot.conditional(conditional2, [[0.0], [0.5], [1.0]])
    assert len(alone.axes) == 6 and alone.axes[0].get_title() == "c0 = 0"
    flow = _flow(3, context_dim=2)
    rng = np.random.default_rng(0)
    x, context = rng.normal(size=(200, 3)), rng.uniform(size=(200, 2))
    fig = plot.conditional(flow, context[:2], x, context, columns=["a", "b", "c"])
    assert len(fig.axes) == 2 * 3  # one row per context, one marginal per column
    assert fig.axes[0].get_ylabel().startswith("c0 = ") and fig.axes[-1].get_xlabel() == "c"


def test_conditional_refuses_bad_input(flow2, conditional2):
    x, c = np.zeros((4, 2)), np.zeros((4, 1))
    for call, message in [
        (lambda: plot.conditional(flow2, [0.0]), "Expected a conditional flow"),
        (lambda: plot.conditional(conditional2, [[0.0, 1.0]]), r"C = 1; got shape \(1, 2\)"),
        (lambda: plot.conditional(conditional2, [0.0], x), "data and data_context together"),
        (lambda: plot.conditional(conditional2, [0.0], x, c[:3]), "one data_context row per"),
    ]:
        with pytest.raises(ValueError, match=message):
            call()


def test_run_figures_writes_the_figures_that_fit(flow2, flow3, conditional2, tmp_path):
    history = {"loss": [2.0, 1.5], "val_loss": [2.1, 1.7]}
    paths = plot.run_figures(flow2, tmp_path / "a", data.two_moons(200), history=history)
    assert paths == [
        str(tmp_path / "a" / "learning_curve.png"),
        str(tmp_path / "a" / "density.png"),
    ]
    assert all(_is_png(p) for p in paths)
    paths = plot.run_figures(flow3, tmp_path / "b", np.random.default_rng(0).normal(size=(50, 3)))
    assert paths == [str(tmp_path / "b" / "corner.png")] and _is_png(paths[0])
    table = data.table("labelled_moons", subset="validation")
    paths = plot.run_figures(conditional2, tmp_path / "c", table)
    assert paths == [str(tmp_path / "c" / "conditional.png")] and _is_png(paths[0])
    with pytest.raises(ValueError, match="data's context for a conditional flow"):
        plot.run_figures(conditional2, tmp_path / "d", table.values)


def test_existing_figures_are_kept_unless_overwrite(flow2, tmp_path):
    out = tmp_path / "plots"
    out.mkdir()
    (out / "density.png").write_bytes(b"mine")
    x = data.two_moons(100)
    with pytest.raises(FileExistsError, match=r"density.png'\] exist; pass overwrite=True"):
        plot.run_figures(flow2, out, x, history={"loss": [1.0]})
    # Checked before drawing anything: no learning curve was written either.
    assert sorted(p.name for p in out.iterdir()) == ["density.png"]
    assert (out / "density.png").read_bytes() == b"mine"
    with pytest.raises(FileExistsError, match="pass overwrite=True"):
        plot.learning_curve({"loss": [1.0]}, path=out / "density.png")
    assert (out / "density.png").read_bytes() == b"mine"
    plot.run_figures(flow2, out, x, overwrite=True)
    assert _is_png(out / "density.png")
    assert sorted(p.name for p in out.iterdir()) == ["density.png"]  # no partial files left


def test_figures_stay_out_of_pyplot(flow2):
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    for _ in range(3):
        plot.density_2d(flow2, data.two_moons(50), resolution=8)
        plot.learning_curve({"loss": [1.0, 0.5]})
    assert plt.get_fignums() == before


def test_missing_matplotlib_says_how_to_install(monkeypatch):
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError("no matplotlib")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ImportError, match=r"pip install 'kflows\[plot\]'") as info:
        plot.learning_curve({"loss": [1.0]})
    assert info.value.name == "matplotlib"
