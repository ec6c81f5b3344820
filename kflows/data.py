"""Built-in datasets: toy 2-D densities generated on the fly, and small tabular data.

Nothing here downloads: the toy densities are generated with numpy.
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
