"""Built-in datasets and the reader of users' data files.

Nothing here downloads. The 2-D toy densities are generated with numpy; the real tables are
the ones that ship inside scikit-learn (the optional ``data`` extra). Every built-in dataset
has fixed ``"train"`` / ``"validation"`` / ``"test"`` splits (:func:`load`), and a user's CSV,
``.npy`` or ``.npz`` file reads into the same :class:`Table` (:func:`read_table`), so the CLI
and the examples treat both alike (:func:`table`).

Example:
    >>> sorted(DATASETS)[:3]
    ['breast_cancer', 'checkerboard', 'circles']
    >>> load("two_moons", "validation").shape
    (2000, 2)
"""

from __future__ import annotations

import csv
import os
import warnings
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

SUBSETS = ("train", "validation", "test", "all")
#: Shares of the rows in the fixed test and validation splits; the rest is for training.
TEST_FRACTION, VALIDATION_FRACTION = 0.2, 0.1
#: Rows generated for a toy dataset's fixed splits (14,000 / 2,000 / 4,000).
TOY_ROWS = 20_000


# ---------------------------------------------------------------- checks
def _check_int(name: str, value, low: int, allow_none: bool = False):
    """Returns ``value`` if it is an ``int >= low`` (never rounds or wraps a number)."""
    if value is None and allow_none:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"Expected {name} to be an integer >= {low}; got {value!r}.")
    if value < low:
        raise ValueError(f"Expected {name} >= {low}; got {value}.")
    return int(value)


def _rng(n, seed) -> np.random.Generator:
    _check_int("n", n, 1)
    return np.random.default_rng(_check_int("seed", seed, 0, allow_none=True))


def _rotate(points: np.ndarray, angle: np.ndarray) -> np.ndarray:
    cos, sin = np.cos(angle), np.sin(angle)
    x, y = points[:, 0], points[:, 1]
    return np.stack([cos * x - sin * y, sin * x + cos * y], axis=1)


def _on_circles(rng, n, radii, noise) -> np.ndarray:
    """Points spread uniformly over concentric circles of the given radii, plus noise."""
    radius = np.asarray(radii)[rng.integers(0, len(radii), n)]
    angle = rng.uniform(0.0, 2 * np.pi, n)
    points = radius[:, None] * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    return (points + noise * rng.standard_normal((n, 2))).astype(np.float32)


# ---------------------------------------------------------------- 2-D toys
def _moons(n, noise, seed) -> tuple[np.ndarray, np.ndarray]:
    rng = _rng(n, seed)
    upper = rng.random(n) < 0.5
    angle = rng.uniform(0.0, np.pi, n)
    x = np.where(upper, np.cos(angle), 1.0 - np.cos(angle))
    y = np.where(upper, np.sin(angle), 0.5 - np.sin(angle))
    points = np.stack([x, y], axis=1) + noise * rng.standard_normal((n, 2))
    points = (points - np.array([0.5, 0.25])) / np.array([0.87, 0.5])
    return points.astype(np.float32), (~upper).astype(np.float32)


def two_moons(n: int = 10_000, noise: float = 0.05, seed: int | None = 0) -> np.ndarray:
    """Two interleaving half circles, standardised roughly to zero mean and unit scale.

    Args:
        n: number of points.
        noise: standard deviation of the Gaussian noise added to each point.
        seed: numpy seed (``None``: fresh entropy).

    Returns:
        float32 array of shape ``[n, 2]``.

    Raises:
        TypeError, ValueError: ``n`` is not an integer >= 1, or ``seed`` not one >= 0.

    Example:
        >>> two_moons(3, seed=0).shape
        (3, 2)
    """
    return _moons(n, noise, seed)[0]


def eight_gaussians(n: int = 10_000, seed: int | None = 0) -> np.ndarray:
    """A mixture of 8 equal, narrow Gaussians with centres evenly spaced on a circle.

    Args:
        n: number of points.
        seed: numpy seed (``None``: fresh entropy).

    Returns:
        float32 array of shape ``[n, 2]`` with unit variance per coordinate.

    Raises:
        TypeError, ValueError: ``n`` is not an integer >= 1, or ``seed`` not one >= 0.

    Example:
        >>> x = eight_gaussians(4000)
        >>> bool(abs(x.std() - 1.0) < 0.05)
        True
    """
    rng = _rng(n, seed)
    # Radius r and noise r / 8 give variance r^2 / 2 + r^2 / 64 = 1 per coordinate.
    radius = (1.0 / (0.5 + 1.0 / 64)) ** 0.5
    angle = rng.integers(0, 8, n) * (np.pi / 4)
    centres = radius * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    return (centres + radius / 8 * rng.standard_normal((n, 2))).astype(np.float32)


def checkerboard(n: int = 10_000, seed: int | None = 0) -> np.ndarray:
    """Uniform over the 8 dark squares of a 4 x 4 board covering ``[-2, 2]^2``.

    Args:
        n: number of points.
        seed: numpy seed (``None``: fresh entropy).

    Returns:
        float32 array of shape ``[n, 2]``.

    Raises:
        TypeError, ValueError: ``n`` is not an integer >= 1, or ``seed`` not one >= 0.

    Example:
        >>> x = checkerboard(100)
        >>> bool((abs(x) <= 2).all())
        True
    """
    rng = _rng(n, seed)
    x = rng.uniform(-2.0, 2.0, n)
    # Within each column of squares, y falls in one of the two squares of x's colour.
    y = rng.uniform(0.0, 1.0, n) + 2.0 * rng.integers(0, 2, n) - 2.0 + np.floor(x) % 2
    return np.stack([x, y], axis=1).astype(np.float32)


def pinwheel(n: int = 10_000, seed: int | None = 0) -> np.ndarray:
    """Five curved blades around the origin (Johnson et al., 2016).

    Args:
        n: number of points.
        seed: numpy seed (``None``: fresh entropy).

    Returns:
        float32 array of shape ``[n, 2]``.

    Raises:
        TypeError, ValueError: ``n`` is not an integer >= 1, or ``seed`` not one >= 0.

    Example:
        >>> pinwheel(5).shape
        (5, 2)
    """
    rng = _rng(n, seed)
    blade = rng.integers(0, 5, n)
    points = rng.standard_normal((n, 2)) * np.array([0.3, 0.08]) + np.array([1.0, 0.0])
    # Each blade bends more the further its points are from the centre.
    angle = blade * (2 * np.pi / 5) + 0.25 * np.exp(points[:, 0])
    return (1.33 * _rotate(points, angle)).astype(np.float32)


def rings(n: int = 10_000, seed: int | None = 0) -> np.ndarray:
    """Four concentric rings of radii 0.5, 1, 1.5 and 2, each with the same share of points.

    Args:
        n: number of points.
        seed: numpy seed (``None``: fresh entropy).

    Returns:
        float32 array of shape ``[n, 2]``.

    Raises:
        TypeError, ValueError: ``n`` is not an integer >= 1, or ``seed`` not one >= 0.

    Example:
        >>> radius = np.hypot(*rings(1000).T)
        >>> bool(0.3 < radius.min() and radius.max() < 2.3)
        True
    """
    return _on_circles(_rng(n, seed), n, (0.5, 1.0, 1.5, 2.0), 0.05)


def circles(n: int = 10_000, seed: int | None = 0) -> np.ndarray:
    """Two concentric circles of radii 0.9 and 1.8 (scikit-learn's ``make_circles``, scaled).

    Args:
        n: number of points.
        seed: numpy seed (``None``: fresh entropy).

    Returns:
        float32 array of shape ``[n, 2]``.

    Raises:
        TypeError, ValueError: ``n`` is not an integer >= 1, or ``seed`` not one >= 0.

    Example:
        >>> circles(5).shape
        (5, 2)
    """
    return _on_circles(_rng(n, seed), n, (0.9, 1.8), 0.1)


def two_spirals(n: int = 10_000, seed: int | None = 0) -> np.ndarray:
    """Two interleaved spiral arms of one and a half turns each.

    Args:
        n: number of points.
        seed: numpy seed (``None``: fresh entropy).

    Returns:
        float32 array of shape ``[n, 2]``.

    Raises:
        TypeError, ValueError: ``n`` is not an integer >= 1, or ``seed`` not one >= 0.

    Example:
        >>> two_spirals(5).shape
        (5, 2)
    """
    rng = _rng(n, seed)
    # sqrt spreads the points evenly along the arm's length, not its angle.
    turn = np.sqrt(rng.uniform(0.0, 1.0, n)) * 3 * np.pi
    arm = np.where(rng.random(n) < 0.5, 1.0, -1.0)[:, None]
    points = arm * turn[:, None] * np.stack([-np.cos(turn), np.sin(turn)], axis=1)
    return ((points + 0.3 * rng.standard_normal((n, 2))) / 4.7).astype(np.float32)


def _labelled_moons(n: int, seed: int | None) -> np.ndarray:
    points, moon = _moons(n, 0.05, seed)
    return np.concatenate([points, moon[:, None]], axis=1)


# ---------------------------------------------------------------- the registry
@dataclass(frozen=True)
class Dataset:
    """A built-in dataset: what :func:`load` returns, column by column.

    Attributes:
        name: the key in :data:`DATASETS`.
        description: one line for ``kflows datasets``.
        kind: ``"toy"`` (generated 2-D density) or ``"table"`` (real data from scikit-learn).
        columns: names of all the columns :func:`load` returns, context columns last.
        context_columns: the columns a conditional flow takes as its context (empty for a
            dataset meant for an unconditional flow).
    """

    name: str
    description: str
    kind: str
    columns: tuple[str, ...]
    context_columns: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Source:
    """How a built-in dataset's rows are made; ``resolution`` > 0 marks dequantised columns."""

    make: Callable[[int], np.ndarray]
    resolution: tuple[float, ...] = ()


def _sklearn_table(loader: str, target: str | None = None, drop=(), **options):
    """All rows of a scikit-learn bundled table, target last, ``drop`` columns moved last."""

    def make(seed: int) -> np.ndarray:
        try:
            from sklearn import datasets
        except ImportError as err:
            raise ImportError(
                "The scikit-learn tables need scikit-learn: pip install 'kflows[data]'.",
                name="sklearn",
            ) from err
        bunch = getattr(datasets, loader)(**options)
        values = bunch.data.astype(np.float64)
        keep = [j for j in range(values.shape[1]) if j not in drop]
        parts = [values[:, keep]]
        if target is not None:
            parts.append(bunch.target.astype(np.float64)[:, None])
        return np.concatenate(parts + [values[:, list(drop)]], axis=1)

    return make


_XY = ("x", "y")
_TOYS = {
    "two_moons": (two_moons, "two interleaving half circles"),
    "eight_gaussians": (eight_gaussians, "8 Gaussians evenly spaced on a circle"),
    "checkerboard": (checkerboard, "uniform on the dark squares of a 4 x 4 checkerboard"),
    "pinwheel": (pinwheel, "five curved blades around the origin"),
    "rings": (rings, "four concentric rings"),
    "two_spirals": (two_spirals, "two interleaved spiral arms"),
    "circles": (circles, "two concentric circles"),
}
_BREAST_CANCER_FEATURES = (
    "radius texture perimeter area smoothness compactness concavity "
    "concave_points symmetry fractal_dimension"
).split()
_DIABETES = ("age", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6", "progression")

DATASETS: dict[str, Dataset] = {
    name: Dataset(name, f"2-D toy: {text}", "toy", _XY) for name, (_, text) in _TOYS.items()
}
_SOURCES: dict[str, _Source] = {
    name: _Source(lambda seed, make=make: make(TOY_ROWS, seed=seed))
    for name, (make, _) in _TOYS.items()
}
DATASETS["labelled_moons"] = Dataset(
    "labelled_moons",
    "2-D toy, conditional: two moons, context 'moon' = 0 (upper) or 1 (lower)",
    "toy",
    (*_XY, "moon"),
    ("moon",),
)
_SOURCES["labelled_moons"] = _Source(lambda seed: _labelled_moons(TOY_ROWS, seed))
DATASETS["wine"] = Dataset(
    "wine",
    "178 wines x 13 chemical measurements (scikit-learn)",
    "table",
    (
        "alcohol",
        "malic_acid",
        "ash",
        "alcalinity_of_ash",
        "magnesium",
        "total_phenols",
        "flavanoids",
        "nonflavanoid_phenols",
        "proanthocyanins",
        "color_intensity",
        "hue",
        "od280/od315_of_diluted_wines",
        "proline",
    ),
)
_SOURCES["wine"] = _Source(_sklearn_table("load_wine"))
DATASETS["breast_cancer"] = Dataset(
    "breast_cancer",
    "569 tumours x 30 cell-nucleus features: means, errors, worsts (scikit-learn)",
    "table",
    tuple(
        f"{stat}_{feature}"
        for stat in ("mean", "error", "worst")
        for feature in _BREAST_CANCER_FEATURES
    ),
)
_SOURCES["breast_cancer"] = _Source(_sklearn_table("load_breast_cancer"))
DATASETS["digits"] = Dataset(
    "digits",
    "1797 8 x 8 images of digits, pixel counts 0..16 dequantised (scikit-learn)",
    "table",
    tuple(f"pixel_{row}_{col}" for row in range(8) for col in range(8)),
)
_SOURCES["digits"] = _Source(_sklearn_table("load_digits"), (1.0,) * 64)
DATASETS["iris"] = Dataset(
    "iris",
    "conditional: 150 irises x 4 sizes in cm (dequantised), context 'species' 0/1/2 (scikit-learn)",
    "table",
    ("sepal_length", "sepal_width", "petal_length", "petal_width", "species"),
    ("species",),
)
_SOURCES["iris"] = _Source(_sklearn_table("load_iris", target="species"), (0.1,) * 4 + (0,))
DATASETS["diabetes"] = Dataset(
    "diabetes",
    "conditional: 442 patients x 9 measurements and disease progression (dequantised), "
    "context 'sex' 1/2 (scikit-learn)",
    "table",
    (*_DIABETES, "sex"),
    ("sex",),
)
_SOURCES["diabetes"] = _Source(
    _sklearn_table("load_diabetes", target="progression", drop=(1,), scaled=False),
    # age, s1, s6 and progression are integers; bmi and s2 have one decimal; s3 halves.
    (1.0, 0.1, 0, 1.0, 0.1, 0.5, 0, 0, 1.0, 1.0, 0),
)
DATASETS = dict(sorted(DATASETS.items()))


def _dataset(name: str) -> Dataset:
    if not isinstance(name, str) or name not in DATASETS:
        raise ValueError(
            f"Expected a built-in dataset name, one of {sorted(DATASETS)}; got {name!r}."
        )
    return DATASETS[name]


def _raw(name: str, seed: int) -> np.ndarray:
    """All rows of a built-in dataset as float64, dequantised (seeded) where marked."""
    source = _SOURCES[name]
    values = source.make(seed).astype(np.float64)
    if source.resolution:
        noise = np.random.default_rng(seed).uniform(size=values.shape)
        values = values + noise * np.asarray(source.resolution)
    return values


def _split_rows(n: int, seed: int) -> dict[str, np.ndarray]:
    """Row indices of the fixed splits: a seeded shuffle cut into test, validation, train."""
    order = np.random.default_rng(seed).permutation(n)
    n_test = max(1, int(round(TEST_FRACTION * n)))
    n_validation = max(1, int(round(VALIDATION_FRACTION * n)))
    parts = np.split(order, [n_test, n_test + n_validation])
    return dict(zip(("test", "validation", "train"), parts, strict=True))


def _standardise(values: np.ndarray, train: np.ndarray, columns: int) -> np.ndarray:
    """Standardises the first ``columns`` columns with the mean and std of ``train``."""
    mean, std = train[:, :columns].mean(axis=0), train[:, :columns].std(axis=0)
    std = np.where(std > 0, std, 1.0)  # a constant feature stays constant, not NaN
    out = values.copy()
    out[:, :columns] = (values[:, :columns] - mean) / std
    return out


def load(name: str, subset: str = "train", seed: int = 0) -> np.ndarray:
    """Rows of a built-in dataset, from its fixed splits.

    The rows are shuffled with ``seed`` and cut into 20% test, 10% validation and 70%
    train, so the same ``(name, subset, seed)`` gives the same rows on every call and the
    splits never share a row. A toy dataset has :data:`TOY_ROWS` rows generated with
    ``seed``. A table's value columns are standardised with the mean and standard
    deviation of its *train* split (context columns keep their values), after integer or
    rounded columns are dequantised with seeded uniform noise one step wide.

    Args:
        name: a key of :data:`DATASETS`.
        subset: ``"train"``, ``"validation"``, ``"test"`` or ``"all"`` (the three in that
            order).
        seed: the seed of the toy generator, the shuffle and the dequantisation noise.

    Returns:
        float32 array ``[N, len(DATASETS[name].columns)]``, context columns last.

    Raises:
        ValueError: unknown ``name`` or ``subset``, or ``seed`` < 0.
        TypeError: ``seed`` is not an integer.
        ImportError: a table needs scikit-learn and it is not installed.

    Example:
        >>> train, test = load("wine"), load("wine", "test")
        >>> train.shape, test.shape
        ((124, 13), (36, 13))
    """
    dataset = _dataset(name)
    if subset not in SUBSETS:
        raise ValueError(f"Expected subset in {SUBSETS}; got {subset!r}.")
    seed = _check_int("seed", seed, 0)
    values = _raw(name, seed)
    rows = _split_rows(len(values), seed)
    if dataset.kind == "table":
        num_values = len(dataset.columns) - len(dataset.context_columns)
        values = _standardise(values, values[rows["train"]], num_values)
    order = ("train", "validation", "test") if subset == "all" else (subset,)
    return values[np.concatenate([rows[part] for part in order])].astype(np.float32)


# ---------------------------------------------------------------- older helpers
def split(data: np.ndarray, test_fraction: float = 0.2, seed: int = 0):
    """Shuffles and splits rows into ``(train, test)``.

    Args:
        data: array ``[N, ...]``.
        test_fraction: share of the rows in the test part, in ``(0, 1)``.
        seed: seed of the shuffle.

    Returns:
        ``(train, test)``.

    Raises:
        ValueError: ``test_fraction`` outside ``(0, 1)``.

    Example:
        >>> train, test = split(np.arange(10).reshape(5, 2))
        >>> len(train), len(test)
        (4, 1)
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"Expected 0 < test_fraction < 1; got {test_fraction}.")
    order = np.random.default_rng(seed).permutation(len(data))
    n_test = max(1, int(round(test_fraction * len(data))))
    return data[order[n_test:]], data[order[:n_test]]


def load_array(path: str) -> np.ndarray:
    """Reads a ``[N, D]`` float32 array from a ``.npy``, ``.npz`` or ``.csv`` file.

    Same as ``read_table(path).values``; see :func:`read_table`.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file cannot be read as finite numbers of shape ``[N, D]``.
    """
    return read_table(path).values


def tabular(
    name: str = "wine", subset: str = "train", test_fraction: float = 0.2, seed: int = 0
) -> np.ndarray:
    """A real table with a two-way split (older API; :func:`load` adds a validation split).

    Rows are split into train and test with :func:`split` (``seed``), then every feature is
    standardised with the *training* mean and standard deviation, so the test rows are
    scored as unseen data. Integer-valued data (``"digits"``) is dequantised first by adding
    ``U(0, 1)`` noise (seeded), so that it has a density.

    Args:
        name: an unconditional table of :data:`DATASETS`: ``"wine"`` (178 x 13),
            ``"breast_cancer"`` (569 x 30) or ``"digits"`` (1797 x 64).
        subset: ``"train"``, ``"test"`` or ``"all"`` (both, train rows first).
        test_fraction: fraction of the rows in the test split.
        seed: seed of the split and of the dequantisation noise.

    Returns:
        float32 array of shape ``[N, D]``.

    Raises:
        ValueError: unknown ``name`` or ``subset``.
        ImportError: scikit-learn is not installed.

    Example:
        >>> train, test = tabular("wine"), tabular("wine", subset="test")
        >>> train.shape, test.shape
        ((142, 13), (36, 13))
    """
    names = sorted(k for k, d in DATASETS.items() if d.kind == "table" and not d.context_columns)
    if name not in names:
        raise ValueError(f"Expected a dataset name in {names}; got {name!r}.")
    if subset not in ("train", "test", "all"):
        raise ValueError(f"Expected subset 'train', 'test' or 'all'; got {subset!r}.")
    train, test = split(_raw(name, seed), test_fraction, seed)
    parts = {"train": [train], "test": [test], "all": [train, test]}[subset]
    return _standardise(np.concatenate(parts), train, train.shape[1]).astype(np.float32)


# ---------------------------------------------------------------- users' files
@dataclass(frozen=True, eq=False)
class Table:
    """Rows of data split into the values a flow models and its optional context.

    Attributes:
        values: float32 ``[N, D]``, the non-context columns.
        context: float32 ``[N, C]``, or ``None`` for an unconditional flow.
        columns: names of the ``D`` value columns (``"x0"``, ``"x1"``, ... without a header).
        context_columns: names of the ``C`` context columns (empty without context).
    """

    values: np.ndarray
    context: np.ndarray | None
    columns: tuple[str, ...]
    context_columns: tuple[str, ...] = ()

    def __repr__(self) -> str:
        context = None if self.context is None else list(self.context.shape)
        return (
            f"Table(values={list(self.values.shape)}, context={context}, "
            f"columns={self.columns}, context_columns={self.context_columns})"
        )


def _file_and_key(path) -> tuple[str, str | None]:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"Expected a file path (str or os.PathLike); got {path!r}.")
    path = os.fsdecode(os.fspath(path))
    base, _, key = path.rpartition(":")
    if not os.path.exists(path) and base.lower().endswith(".npz") and key:
        return base, key
    return path, None


def _check_numbers(array: np.ndarray, source: str) -> np.ndarray:
    """The ``[N, D]`` float32 copy of ``array``, refusing what is not finite numbers."""
    if array.dtype.kind not in "fiu":
        raise ValueError(f"Expected real numbers in {source}; got dtype {array.dtype}.")
    if array.ndim != 2 or 0 in array.shape:
        hint = " (reshape a single column with x.reshape(-1, 1))" if array.ndim == 1 else ""
        raise ValueError(
            f"Expected a non-empty 2-D [N, D] array in {source}; got shape {array.shape}{hint}."
        )
    with np.errstate(over="ignore"):  # reported below, with the place it happened
        single = array.astype(np.float32)
    for values, what in ((array, "NaN or infinite"), (single, "beyond float32")):
        bad = ~np.isfinite(values)
        if bad.any():
            row, col = np.argwhere(bad)[0]
            raise ValueError(
                f"Expected finite numbers in {source}; got {int(bad.sum())} {what} value(s), "
                f"the first in data row {row} (0-based), column {col}: {array[row, col]!r}."
            )
    return np.ascontiguousarray(single)


def _read_npy(path: str, key: str | None) -> np.ndarray:
    try:
        if path.lower().endswith(".npy"):
            return np.load(path, allow_pickle=False)
        with np.load(path, allow_pickle=False) as archive:
            names = list(archive.files)
            if key is None and len(names) == 1:
                key = names[0]
            if key not in names:
                raise KeyError(key)
            return archive[key]
    except KeyError:
        wanted = "a key" if key is None else f"a key in {names}; got {key!r}"
        raise ValueError(
            f"Expected {wanted} for {path!r} (as '{path}:KEY', arrays {names})."
        ) from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise ValueError(f"Could not read {path!r} as a numpy array file: {err}") from err


def _first_row(path: str) -> tuple[list[str], int]:
    """The first non-blank, non-comment CSV row and the number of lines it ends."""
    with open(path, newline="", encoding="utf-8-sig") as file:
        reader = csv.reader(file)
        for row in reader:
            if any(field.strip() for field in row) and not row[0].lstrip().startswith("#"):
                return [field.strip() for field in row], reader.line_num
    raise ValueError(f"Expected a CSV table with at least one row of numbers; {path!r} is empty.")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _csv_problem(path: str, skip: int, width: int) -> str | None:
    """Says which line of a CSV file is ragged or not numeric (only called on an error)."""
    with open(path, newline="", encoding="utf-8-sig") as file:
        reader = csv.reader(file)
        for row in reader:
            if reader.line_num <= skip or not any(f.strip() for f in row):
                continue
            if row[0].lstrip().startswith("#"):
                continue
            line = reader.line_num
            if len(row) != width:
                return f"line {line} has {len(row)} fields; expected {width}"
            for col, field in enumerate(row):
                if not _is_number(field.strip()):
                    return f"line {line}, column {col} holds {field!r}, not a number"
    return None


def _read_csv(path: str) -> tuple[np.ndarray, tuple[str, ...] | None]:
    first, line = _first_row(path)
    header = any(field and not _is_number(field) for field in first)
    if header:
        empty = [i for i, name in enumerate(first) if not name]
        if empty:
            raise ValueError(
                f"Expected a name for every column of the header of {path!r}; "
                f"column(s) {empty} have none."
            )
        if len(set(first)) < len(first):
            twice = sorted({name for name in first if first.count(name) > 1})
            raise ValueError(f"Expected distinct column names in {path!r}; got {twice} twice.")
    skip = line if header else line - 1
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # an empty table is reported below instead
            array = np.loadtxt(
                path,
                delimiter=",",
                skiprows=skip,
                ndmin=2,
                dtype=np.float64,
                quotechar='"',
                encoding="utf-8-sig",
            )
    except ValueError as err:
        raise ValueError(
            f"Expected a CSV table of numbers in {path!r}, "
            f"{'after a header row' if header else 'with no header'}; "
            f"{_csv_problem(path, skip, len(first)) or err}."
        ) from err
    if header and array.size and array.shape[1] != len(first):
        raise ValueError(
            f"Expected {len(first)} columns in every row of {path!r} (its header has "
            f"{len(first)} names); got {array.shape[1]}."
        )
    return array, tuple(first) if header else None


def read_table(path, context: Sequence[str | int] | str | int | None = None) -> Table:
    """Reads a user's data file into a :class:`Table`.

    Reads a CSV file (comma-separated; a first row holding any non-numeric field is its
    header; blank lines and lines starting with ``#`` are skipped), a ``.npy`` array or a
    ``.npz`` archive (one array, or name it as ``"file.npz:key"``). Arrays must be 2-D
    ``[N, D]`` real numbers, every one finite.

    Args:
        path: the file (``str`` or ``os.PathLike``).
        context: the columns that form the flow's context: names (from the header, or
            ``"x0"``, ``"x1"``, ... without one) or 0-based indices; a string of digits that
            is not a column's name is an index. ``None`` or empty: no context.

    Returns:
        A :class:`Table`; its ``values`` are the other columns, in the file's order.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is not a table of finite numbers (empty, ragged, text, NaN or
            inf, not 2-D, an unknown ``.npz`` key), or ``context`` names an unknown column,
            a column twice, or every column.
        TypeError: ``path`` or a ``context`` entry has the wrong type.

    Example:
        >>> import os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "t.csv")
        >>> _ = open(path, "w").write("a,b,label\\n1,2,0\\n3,4,1\\n")
        >>> t = read_table(path, context=["label"])
        >>> t.values.shape, t.columns, t.context_columns
        ((2, 2), ('a', 'b'), ('label',))
    """
    path, key = _file_and_key(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Expected a .csv, .npy or .npz data file; no file at {path!r}.")
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in (".csv", ".txt", ".npy", ".npz"):
        raise ValueError(f"Expected a .csv, .npy or .npz file; got {path!r}.")
    if key is not None and suffix != ".npz":
        raise ValueError(f"Only a .npz file holds named arrays; got a key {key!r} for {path!r}.")
    names = None
    if suffix in (".npy", ".npz"):
        array = _read_npy(path, key)
    else:
        try:
            array, names = _read_csv(path)
        except (OSError, UnicodeDecodeError) as err:
            raise ValueError(f"Could not read {path!r} as a CSV text file: {err}") from err
    array = _check_numbers(array, repr(path if key is None else f"{path}:{key}"))
    names = names or tuple(f"x{j}" for j in range(array.shape[1]))
    return _with_context(array, names, context, repr(path))


def _column_index(entry, names: tuple[str, ...], source: str) -> int:
    if isinstance(entry, str) and entry in names:
        return names.index(entry)
    if isinstance(entry, str) and entry.isdigit():
        entry = int(entry)
    if isinstance(entry, (bool, np.bool_)) or not isinstance(entry, (str, int, np.integer)):
        raise TypeError(f"Expected a context column name or 0-based index; got {entry!r}.")
    if isinstance(entry, str):
        raise ValueError(f"Expected a context column of {source} in {list(names)}; got {entry!r}.")
    if not 0 <= entry < len(names):
        raise ValueError(
            f"Expected a context column index in 0..{len(names) - 1} for {source}; got {entry}."
        )
    return int(entry)


def _with_context(array: np.ndarray, names: tuple[str, ...], context, source: str) -> Table:
    """Splits the columns of ``array`` into values and the ``context`` columns."""
    if context is None:
        context = ()
    elif isinstance(context, (str, int, np.integer)):
        context = (context,)
    chosen = [_column_index(entry, names, source) for entry in context]
    if len(set(chosen)) < len(chosen):
        raise ValueError(f"Expected distinct context columns; got {list(context)}.")
    if len(chosen) == len(names):
        raise ValueError(
            f"Expected some columns of {source} left for the flow; the context {list(context)} "
            f"takes all {len(names)}."
        )
    kept = [j for j in range(len(names)) if j not in chosen]
    return Table(
        values=np.ascontiguousarray(array[:, kept]),
        context=np.ascontiguousarray(array[:, chosen]) if chosen else None,
        columns=tuple(names[j] for j in kept),
        context_columns=tuple(names[j] for j in chosen),
    )


def table(
    name_or_path,
    context: Sequence[str | int] | str | int | None = None,
    subset: str = "all",
    seed: int = 0,
) -> Table:
    """A built-in dataset's fixed split, or a user's file, as a :class:`Table`.

    Args:
        name_or_path: a key of :data:`DATASETS`, or a file for :func:`read_table`.
        context: context columns (names or indices); for a built-in dataset ``None`` means
            the dataset's own ``context_columns``.
        subset: the split of a built-in dataset (see :func:`load`); a file has no fixed
            splits, so it must be ``"all"``.
        seed: the seed of a built-in dataset's split (see :func:`load`).

    Returns:
        A :class:`Table`.

    Raises:
        FileNotFoundError: neither a built-in name nor an existing file.
        ValueError: see :func:`load` and :func:`read_table`.

    Example:
        >>> t = table("labelled_moons", subset="test")
        >>> t.values.shape, t.context.shape, t.context_columns
        ((4000, 2), (4000, 1), ('moon',))
    """
    if isinstance(name_or_path, str) and name_or_path in DATASETS:
        dataset = DATASETS[name_or_path]
        array = load(name_or_path, subset, seed)
        chosen = dataset.context_columns if context is None else context
        return _with_context(array, dataset.columns, chosen, repr(name_or_path))
    if subset != "all":
        raise ValueError(
            f"Expected subset 'all' for a data file (fixed splits exist only for the built-in "
            f"datasets); got {subset!r}."
        )
    path, _ = _file_and_key(name_or_path)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"Expected a built-in dataset name ({', '.join(DATASETS)}) or a .csv, .npy or "
            f".npz file; got {name_or_path!r}, which is neither."
        )
    return read_table(name_or_path, context)
