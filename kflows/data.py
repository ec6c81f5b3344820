"""Built-in datasets: toy 2-D densities generated on the fly, and small tabular data.

Nothing here downloads: the toy densities are generated with numpy and the tabular data
ships with scikit-learn (the optional ``data`` extra).
"""

from __future__ import annotations

import os
import warnings

import numpy as np


def two_moons(n: int = 10_000, noise: float = 0.05, seed: int | None = 0) -> np.ndarray:
    """Two interleaving half circles, standardised roughly to zero mean and unit scale.

    Args:
        n: number of points.
        noise: standard deviation of the Gaussian noise added to each point.
        seed: numpy seed.

    Returns:
        float32 array of shape ``[n, 2]``.
    """
    if n <= 0:
        raise ValueError(f"Expected n > 0; got {n}.")
    rng = np.random.default_rng(seed)
    upper = rng.random(n) < 0.5
    angle = rng.uniform(0.0, np.pi, n)
    x = np.where(upper, np.cos(angle), 1.0 - np.cos(angle))
    y = np.where(upper, np.sin(angle), 0.5 - np.sin(angle))
    points = np.stack([x, y], axis=1) + noise * rng.standard_normal((n, 2))
    points = (points - np.array([0.5, 0.25])) / np.array([0.87, 0.5])
    return points.astype(np.float32)


def split(data: np.ndarray, test_fraction: float = 0.2, seed: int = 0):
    """Shuffles and splits rows into ``(train, test)``."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"Expected 0 < test_fraction < 1; got {test_fraction}.")
    order = np.random.default_rng(seed).permutation(len(data))
    n_test = max(1, int(round(test_fraction * len(data))))
    return data[order[n_test:]], data[order[:n_test]]


def load_array(path: str) -> np.ndarray:
    """Reads a ``[N, D]`` float32 array from a ``.npy`` or ``.csv`` file.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file cannot be read as numbers of shape ``[N, D]``.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Expected a .npy or .csv data file; no file at {path!r}.")
    suffix = os.path.splitext(path)[1].lower()
    try:
        if suffix == ".npy":
            array = np.load(path, allow_pickle=False)
        elif suffix in (".csv", ".txt"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # an empty file is reported below instead
                array = np.loadtxt(path, delimiter=",", ndmin=2, dtype=np.float64)
        else:
            raise ValueError(f"Expected a .npy or .csv file; got {path!r}.")
    except (OSError, ValueError, EOFError) as err:
        raise ValueError(f"Could not read {path!r} as a numeric {suffix} array: {err}") from err
    if array.dtype.kind not in "fiu":
        raise ValueError(f"Expected numbers in {path!r}; got dtype {array.dtype}.")
    if array.ndim != 2 or array.shape[0] == 0:
        raise ValueError(f"Expected a non-empty [N, D] array in {path!r}; got shape {array.shape}.")
    return array.astype(np.float32)


#: scikit-learn's bundled tabular datasets: loader name and whether the values are integers.
TABULAR = {
    "wine": ("load_wine", False),  # 178 x 13 chemical measurements
    "breast_cancer": ("load_breast_cancer", False),  # 569 x 30 cell-nucleus features
    "digits": ("load_digits", True),  # 1797 x 64 pixel counts in 0..16
}


def tabular(
    name: str = "wine", subset: str = "train", test_fraction: float = 0.2, seed: int = 0
) -> np.ndarray:
    """A small real tabular dataset shipped with scikit-learn (nothing is downloaded).

    Rows are split into train and test with :func:`split` (``seed``), then every feature is
    standardised with the *training* mean and standard deviation, so the test rows are
    scored as unseen data. Integer-valued data (``"digits"``) is dequantised first by adding
    ``U(0, 1)`` noise (seeded), so that it has a density.

    Args:
        name: ``"wine"`` (178 x 13), ``"breast_cancer"`` (569 x 30) or ``"digits"``
            (1797 x 64).
        subset: ``"train"``, ``"test"`` or ``"all"`` (both, train rows first).
        test_fraction: fraction of the rows in the test split.
        seed: seed of the split and of the dequantisation noise.

    Returns:
        float32 array of shape ``[N, D]``.

    Example:
        >>> train, test = data.tabular("wine"), data.tabular("wine", subset="test")
        >>> train.shape, test.shape
        ((142, 13), (36, 13))
    """
    if name not in TABULAR:
        raise ValueError(f"Expected a dataset name in {sorted(TABULAR)}; got {name!r}.")
    if subset not in ("train", "test", "all"):
        raise ValueError(f"Expected subset 'train', 'test' or 'all'; got {subset!r}.")
    try:
        from sklearn import datasets
    except ImportError as err:
        raise ImportError(
            "kflows.data.tabular needs scikit-learn: pip install 'kflows[data]'."
        ) from err
    loader, discrete = TABULAR[name]
    values = getattr(datasets, loader)().data.astype(np.float64)
    if discrete:
        values = values + np.random.default_rng(seed).uniform(size=values.shape)
    train, test = split(values, test_fraction, seed)
    mean, std = train.mean(axis=0), train.std(axis=0)
    std = np.where(std > 0, std, 1.0)  # a constant feature stays constant, not NaN
    parts = {"train": [train], "test": [test], "all": [train, test]}[subset]
    return ((np.concatenate(parts) - mean) / std).astype(np.float32)
