"""Built-in datasets."""

import builtins

import numpy as np
import pytest

from kflows import data


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


def test_tabular_without_sklearn_says_how_to_install(monkeypatch):
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name.startswith("sklearn"):
            raise ImportError("no sklearn")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ImportError, match=r"kflows\[data\]"):
        data.tabular("wine")
