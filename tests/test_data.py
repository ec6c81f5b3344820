"""Built-in datasets and the reader of users' data files."""

import builtins
import dataclasses

import numpy as np
import pytest

from kflows import data

TOYS = {
    "two_moons": data.two_moons,
    "eight_gaussians": data.eight_gaussians,
    "checkerboard": data.checkerboard,
    "pinwheel": data.pinwheel,
    "rings": data.rings,
    "two_spirals": data.two_spirals,
    "circles": data.circles,
}


def _rows(x: np.ndarray) -> set:
    return {row.tobytes() for row in x}


# ---------------------------------------------------------------- toys
@pytest.mark.parametrize("name", TOYS)
def test_toy_is_deterministic_and_roughly_standardised(name):
    make = TOYS[name]
    x = make(4000, seed=3)
    assert x.dtype == np.float32 and x.shape == (4000, 2)
    np.testing.assert_array_equal(x, make(4000, seed=3))
    assert not np.array_equal(x, make(4000, seed=4))
    assert np.all(np.abs(x.mean(axis=0)) < 0.2)
    assert np.all((0.7 < x.std(axis=0)) & (x.std(axis=0) < 1.3))


@pytest.mark.parametrize("name", TOYS)
def test_toy_refuses_counts_and_seeds_it_would_have_to_coerce(name):
    make = TOYS[name]
    for n in (0, -1):
        with pytest.raises(ValueError, match=rf"n >= 1; got {n}"):
            make(n)
    for n in (2.5, 10.0, True, "10"):
        with pytest.raises(TypeError, match="n to be an integer"):
            make(n)
    with pytest.raises(ValueError, match="seed >= 0"):
        make(10, seed=-1)
    with pytest.raises(TypeError, match="seed to be an integer"):
        make(10, seed=1.5)
    assert make(3, seed=None).shape == (3, 2)


def test_two_moons_keeps_its_values():
    # The values of the two_moons generator before the built-in data was extended.
    np.testing.assert_allclose(
        data.two_moons(3, seed=0),
        [[-0.49822104, 0.49090856], [-1.5724118, 0.48057112], [-1.7170535, 0.04546778]],
        rtol=1e-6,
    )
    np.testing.assert_allclose(
        data.two_moons(10_000).sum(axis=0), [65.393875, 47.120808], rtol=1e-5
    )


def test_toys_look_like_their_names():
    radius = np.hypot(*data.rings(4000).T)
    # Four rings: every point is near one of the radii, and each ring holds about a quarter.
    nearest = np.abs(radius[:, None] - np.array([0.5, 1.0, 1.5, 2.0])).argmin(axis=1)
    assert np.abs(radius - np.array([0.5, 1.0, 1.5, 2.0])[nearest]).max() < 0.25
    np.testing.assert_allclose(np.bincount(nearest) / 4000, 0.25, atol=0.03)
    radius = np.hypot(*data.circles(4000).T)
    assert np.abs(radius - np.where(radius < 1.35, 0.9, 1.8)).max() < 0.5
    board = data.checkerboard(4000)
    # Only squares of one colour: the floors of x and y always differ in parity by the same.
    assert len(np.unique((np.floor(board).sum(axis=1)) % 2)) == 1
    assert np.all(np.abs(board) <= 2.0)
    # 8 centres evenly spaced on a circle; nearly every point lies within 3 sigma of one.
    radius = (1 / (0.5 + 1 / 64)) ** 0.5
    angles = np.arange(8) * np.pi / 4
    centres = radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    distance = np.linalg.norm(data.eight_gaussians(4000)[:, None] - centres, axis=2)
    assert np.mean(distance.min(axis=1) < 3 * radius / 8) > 0.97
    np.testing.assert_allclose(np.bincount(distance.argmin(axis=1)) / 4000, 1 / 8, atol=0.02)
    moons = data.load("labelled_moons", "all")
    # The upper moon (context 0) lies mostly above the lower one (context 1).
    assert moons[moons[:, 2] == 0, 1].mean() > moons[moons[:, 2] == 1, 1].mean() + 1.0


# ---------------------------------------------------------------- the registry and load
def test_registry_describes_what_load_returns():
    toys = {name for name, d in data.DATASETS.items() if d.kind == "toy"}
    assert set(TOYS) <= toys
    assert {"wine", "breast_cancer", "digits", "iris", "diabetes"} <= set(data.DATASETS)
    assert list(data.DATASETS) == sorted(data.DATASETS)
    assert any(d.context_columns for d in data.DATASETS.values())
    for name, dataset in data.DATASETS.items():
        assert dataset.name == name and dataset.kind in ("toy", "table") and dataset.description
        assert len(set(dataset.columns)) == len(dataset.columns)
        num_context = len(dataset.context_columns)
        assert dataset.columns[len(dataset.columns) - num_context :] == dataset.context_columns
        x = data.load(name, "validation")
        assert x.dtype == np.float32 and x.shape[1] == len(dataset.columns)
        assert np.all(np.isfinite(x))
    with pytest.raises(dataclasses.FrozenInstanceError):
        data.DATASETS["wine"].name = "other"


def test_table_columns_match_scikit_learn():
    from sklearn import datasets

    assert data.DATASETS["wine"].columns == tuple(datasets.load_wine().feature_names)
    assert data.DATASETS["digits"].columns == tuple(datasets.load_digits().feature_names)
    names = []
    for name in datasets.load_breast_cancer().feature_names:
        words = str(name).split()
        stat = words[0] if words[0] in ("mean", "worst") else words[-1]
        feature = [w for w in words if w not in ("mean", "worst", "error")]
        names.append(f"{stat}_{'_'.join(feature)}")
    assert data.DATASETS["breast_cancer"].columns == tuple(names)


@pytest.mark.parametrize("name", ["two_moons", "wine", "iris", "labelled_moons"])
def test_splits_are_fixed_disjoint_and_complete(name):
    parts = {subset: data.load(name, subset, seed=2) for subset in data.SUBSETS}
    total = len(parts["all"])
    assert len(parts["test"]) == round(0.2 * total)
    assert len(parts["validation"]) == round(0.1 * total)
    np.testing.assert_array_equal(
        parts["all"], np.concatenate([parts["train"], parts["validation"], parts["test"]])
    )
    rows = [_rows(parts[s]) for s in ("train", "validation", "test")]
    assert not (rows[0] & rows[1] or rows[0] & rows[2] or rows[1] & rows[2])
    for subset, x in parts.items():
        np.testing.assert_array_equal(x, data.load(name, subset, seed=2))
    assert not np.array_equal(parts["test"], data.load(name, "test", seed=3))


def test_toys_have_their_generated_rows():
    assert len(data.load("rings", "all")) == data.TOY_ROWS
    assert _rows(data.load("rings", "all", seed=1)) == _rows(data.rings(data.TOY_ROWS, seed=1))


def test_tables_are_standardised_with_the_train_split_only():
    from sklearn import datasets

    train, test = data.load("wine", "train"), data.load("wine", "test")
    np.testing.assert_allclose(train.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(train.std(axis=0), 1.0, atol=1e-4)
    # Statistics of the other rows never enter: the test split maps back to raw rows with
    # the train split's mean and std.
    raw = datasets.load_wine().data
    rows = data._split_rows(len(raw), seed=0)
    mean, std = raw[rows["train"]].mean(axis=0), raw[rows["train"]].std(axis=0)
    np.testing.assert_allclose(test * std + mean, raw[rows["test"]], rtol=1e-5)
    assert np.abs(test.mean(axis=0)).max() > 1e-3
    # Context columns keep their values; value columns are dequantised (no ties).
    iris = data.load("iris", "all")
    assert set(np.unique(iris[:, -1])) == {0.0, 1.0, 2.0}
    assert np.unique(iris[:, 0]).size == len(iris)
    assert set(np.unique(data.load("diabetes", "all")[:, -1])) == {1.0, 2.0}


def test_load_rejects_bad_arguments():
    with pytest.raises(ValueError, match=r"one of \[.*'two_moons'.*\]; got 'moons'"):
        data.load("moons")
    with pytest.raises(ValueError, match=r"subset in .*'validation'.*; got 'val'"):
        data.load("wine", "val")
    with pytest.raises(TypeError, match="seed to be an integer"):
        data.load("wine", seed=0.5)
    with pytest.raises(ValueError, match="seed >= 0"):
        data.load("two_moons", seed=-2)


# ---------------------------------------------------------------- older helpers
@pytest.mark.parametrize("name, shape", [("wine", (178, 13)), ("digits", (1797, 64))])
def test_tabular_split_is_standardised_and_deterministic(name, shape):
    train, test = data.tabular(name), data.tabular(name, subset="test")
    assert train.dtype == np.float32 and test.dtype == np.float32
    assert train.shape[1] == test.shape[1] == shape[1]
    assert len(train) + len(test) == shape[0] and len(test) == round(0.2 * shape[0])
    np.testing.assert_allclose(train.mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(train.std(0), 1.0, atol=1e-4)
    assert np.all(np.isfinite(test)) and abs(test.mean()) < 0.5
    np.testing.assert_array_equal(train, data.tabular(name))
    assert not np.array_equal(train, data.tabular(name, seed=1))
    np.testing.assert_array_equal(data.tabular(name, subset="all")[: len(train)], train)
    # No row of the test split is in the training split.
    assert not (train[:, None, :] == test[None, :, :]).all(-1).any()


def test_digits_are_dequantised():
    digits = data.tabular("digits", subset="all")
    # Integer pixel values would repeat; uniform noise makes every value distinct.
    assert np.unique(digits[:, 10]).size > 0.99 * len(digits)


def test_tabular_rejects_unknown_names():
    with pytest.raises(ValueError, match="wine"):
        data.tabular("iris-typo")
    with pytest.raises(ValueError, match="subset"):
        data.tabular("wine", subset="validation")


def test_tables_without_sklearn_say_how_to_install(monkeypatch):
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name.startswith("sklearn"):
            raise ImportError("no sklearn")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    for load in (lambda: data.tabular("wine"), lambda: data.load("iris")):
        with pytest.raises(ImportError, match=r"kflows\[data\]") as info:
            load()
        assert info.value.name == "sklearn"
    assert data.load("two_moons").shape == (14_000, 2)  # the toys need no scikit-learn


# ---------------------------------------------------------------- read_table and table
def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_read_table_csv_with_and_without_header(tmp_path):
    path = _write(tmp_path, "h.csv", '\ufeff# made by hand\n"a", b ,label\n1,2,0\n\n3,4.5,1\n')
    table = data.read_table(path, context=["label"])
    np.testing.assert_array_equal(table.values, [[1, 2], [3, 4.5]])
    np.testing.assert_array_equal(table.context, [[0], [1]])
    assert table.values.dtype == table.context.dtype == np.float32
    assert (table.columns, table.context_columns) == (("a", "b"), ("label",))
    assert "values=[2, 2]" in repr(table)
    plain = data.read_table(_write(tmp_path, "n.csv", "1,2,0\n3,4,1\n"), context=0)
    assert plain.columns == ("x1", "x2") and plain.context_columns == ("x0",)
    np.testing.assert_array_equal(plain.values, [[2, 0], [4, 1]])
    # A header name, an index, a string of digits and a default name all select columns.
    for context in (["b", 0], [1, "0"], ("1", "a")):
        assert data.read_table(path, context).context_columns == ("b", "a")
    assert data.read_table(path, ["b", 0]).context_columns == ("b", "a")
    assert data.read_table(path, [2, "0"]).context_columns == ("label", "a")
    assert data.read_table(str(tmp_path / "n.csv"), "x2").context_columns == ("x2",)
    assert data.read_table(path).context is None and data.read_table(path, []).context is None
    one = data.read_table(_write(tmp_path, "one.csv", "v\n1\n2\n"))
    assert one.values.shape == (2, 1) and one.columns == ("v",)


def test_read_table_numpy_files(tmp_path):
    x = np.arange(12, dtype=np.float64).reshape(4, 3)
    np.save(tmp_path / "x.npy", x)
    np.savez(tmp_path / "one.npz", only=x)
    np.savez(tmp_path / "two.npz", a=x, b=x[:, :2])
    table = data.read_table(tmp_path / "x.npy", context=[2])
    np.testing.assert_array_equal(table.values, x[:, :2])
    assert table.columns == ("x0", "x1") and table.context_columns == ("x2",)
    np.testing.assert_array_equal(data.read_table(str(tmp_path / "one.npz")).values, x)
    np.testing.assert_array_equal(data.read_table(f"{tmp_path}/two.npz:b").values, x[:, :2])
    np.testing.assert_array_equal(data.load_array(str(tmp_path / "x.npy")), x)


BAD_FILES = {
    # name: (file contents (bytes, text, or an array to np.save), expected message)
    "empty.csv": ("", "is empty"),
    "blank.csv": ("\n  \n# only a comment\n", "is empty"),
    "header_only.csv": ("a,b\n", r"non-empty 2-D \[N, D\].*shape \(0"),
    "text.csv": ("a,b\n1,2\n3,x\n", r"line 3, column 1 holds 'x', not a number"),
    "missing.csv": ("1,2\n3,\n", r"line 2, column 1 holds '', not a number"),
    "ragged.csv": ("1,2\n3,4\n5\n", "line 3 has 1 fields; expected 2"),
    "wide.csv": ("a,b\n1,2,3\n", r"2 columns in every row .*header has 2 names\); got 3"),
    "nan.csv": ("a,b\n1,2\nnan,4\n", r"1 NaN or infinite value\(s\), the first in data row 1"),
    "inf.csv": ("1,inf\n", "NaN or infinite"),
    "huge.csv": ("1,1e300\n", "beyond float32"),
    "twice.csv": ("a,a\n1,2\n", r"distinct column names.*\['a'\] twice"),
    "unnamed.csv": (",b\n1,2\n", r"a name for every column.*\[0\]"),
    "binary.csv": (b"\xff\xfe\x00\x81", "Could not read"),
    "vector.npy": (np.arange(3.0), r"shape \(3,\) \(reshape a single column"),
    "cube.npy": (np.zeros((2, 2, 2)), r"shape \(2, 2, 2\)"),
    "words.npy": (np.array([["a"]]), "real numbers"),
    "flags.npy": (np.array([[True]]), "real numbers"),
    "objects.npy": (np.array([[1, None]], dtype=object), "Could not read"),
    "nan.npy": (np.array([[1.0, np.nan]]), "column 1: np.float64\\(nan\\)|column 1: nan"),
    "broken.npz": (b"not a zip file", "Could not read"),
    "data.json": ("[]", r"Expected a \.csv, \.npy or \.npz file"),
}


@pytest.mark.parametrize("name", BAD_FILES)
def test_read_table_refuses_bad_files_clearly(tmp_path, name):
    content, message = BAD_FILES[name]
    path = tmp_path / name
    if isinstance(content, np.ndarray):
        np.save(path, content)  # every array case is named *.npy
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    before = path.read_bytes()
    with pytest.raises(ValueError, match=message) as info:
        data.read_table(str(path))
    assert name in str(info.value)  # the message names the file
    assert path.read_bytes() == before  # and reading never changes it


def test_read_table_refuses_bad_paths_and_keys(tmp_path):
    with pytest.raises(FileNotFoundError, match="no file at .*absent.csv"):
        data.read_table(tmp_path / "absent.csv")
    with pytest.raises(TypeError, match="file path"):
        data.read_table(3)
    np.savez(tmp_path / "two.npz", a=np.zeros((2, 2)), b=np.ones((2, 2)))
    with pytest.raises(ValueError, match=r"Expected a key .*arrays \['a', 'b'\]"):
        data.read_table(tmp_path / "two.npz")
    with pytest.raises(ValueError, match=r"a key in \['a', 'b'\]; got 'c'"):
        data.read_table(f"{tmp_path}/two.npz:c")
    np.save(tmp_path / "x.npy", np.zeros((2, 2)))
    with pytest.raises(FileNotFoundError, match="no file at"):
        data.read_table(f"{tmp_path}/x.npy:a")


def test_read_table_refuses_bad_context_columns(tmp_path):
    path = _write(tmp_path, "t.csv", "a,b,c\n1,2,3\n4,5,6\n")
    cases = {
        ("z",): r"context column of .*t.csv.* in \['a', 'b', 'c'\]; got 'z'",
        (3,): r"index in 0..2 .*got 3",
        (-1,): r"index in 0..2 .*got -1",
        ("a", 0): r"distinct context columns; got \['a', 0\]",
        ("a", "b", "c"): "takes all 3",
    }
    for context, message in cases.items():
        with pytest.raises(ValueError, match=message):
            data.read_table(path, context=list(context))
    for context in ([True], [1.0], [None]):
        with pytest.raises(TypeError, match="context column name or 0-based index"):
            data.read_table(path, context=context)


def test_table_gives_builtin_splits_and_files_alike(tmp_path):
    iris = data.table("iris", subset="test", seed=1)
    assert iris.context_columns == ("species",) and iris.context.shape == (30, 1)
    np.testing.assert_array_equal(
        np.concatenate([iris.values, iris.context], axis=1), data.load("iris", "test", seed=1)
    )
    wine = data.table("wine")
    assert wine.context is None and wine.values.shape == (178, 13)
    chosen = data.table("wine", context=["alcohol", "proline"])
    assert chosen.context_columns == ("alcohol", "proline") and chosen.values.shape == (178, 11)
    assert data.table("labelled_moons", context=[]).values.shape == (20_000, 3)
    path = _write(tmp_path, "t.csv", "a,b\n1,2\n")
    assert data.table(path, context="b").context_columns == ("b",)
    with pytest.raises(ValueError, match="subset 'all' for a data file"):
        data.table(path, subset="train")
    with pytest.raises(FileNotFoundError, match=r"built-in dataset name \(.*two_moons.*nope"):
        data.table("nope")
