"""The command line and data files, in real subprocesses and on real files."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from kflows import data


def run_cli(*args, cwd):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run(
        [sys.executable, "-m", "kflows.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=600,
    )


@pytest.mark.slow
def test_train_evaluate_sample(tmp_path):
    x = data.two_moons(600, seed=0)
    np.savetxt(tmp_path / "moons.csv", x, delimiter=",")
    out = run_cli(
        "train", "--data", "moons.csv", "--layers", "2", "--hidden", "8", "8",
        "--epochs", "2", "--out", "m.keras", cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert np.isfinite(json.loads(out.stdout.splitlines()[-1])["test_nll"])
    np.save(tmp_path / "test.npy", x[:50])
    out = run_cli("evaluate", "m.keras", "--data", "test.npy", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert np.isfinite(json.loads(out.stdout.splitlines()[-1])["nll"])
    out = run_cli("sample", "m.keras", "-n", "7", "--out", "s.npy", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert np.load(tmp_path / "s.npy").shape == (7, 2)
    out = run_cli("evaluate", "m.keras", "--data", "missing.npy", cwd=tmp_path)
    assert out.returncode == 2 and "no file at" in out.stderr


def test_load_array_reads_npy_and_csv(tmp_path):
    x = np.arange(12, dtype=np.float64).reshape(4, 3)
    np.save(tmp_path / "a.npy", x)
    np.savetxt(tmp_path / "a.csv", x, delimiter=",")
    for name in ("a.npy", "a.csv"):
        loaded = data.load_array(str(tmp_path / name))
        assert loaded.dtype == np.float32
        np.testing.assert_array_equal(loaded, x)


@pytest.mark.parametrize(
    "name, content, error, message",
    [
        ("missing.npy", None, FileNotFoundError, "no file at"),
        ("bad.npy", b"not a numpy file", ValueError, "Could not read"),
        ("bad.csv", b"1,2\nfoo,bar\n", ValueError, "Could not read"),
        ("empty.csv", b"", ValueError, "non-empty"),
        ("a.parquet", b"x", ValueError, ".npy or .csv"),
    ],
)
def test_load_array_errors(tmp_path, name, content, error, message):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(error, match=message):
        data.load_array(str(path))


def test_one_dimensional_npy_is_refused(tmp_path):
    np.save(tmp_path / "v.npy", np.zeros(5))
    with pytest.raises(ValueError, match=r"\[N, D\]"):
        data.load_array(str(tmp_path / "v.npy"))
