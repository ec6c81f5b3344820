"""The command line and data files, in real subprocesses and on real files."""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

import kflows
from kflows import cli, data, saving

TINY = ("--layers", "1", "--hidden", "4", "--epochs", "1")


def run_cli(*args, cwd, timeout=600):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run(
        [sys.executable, "-m", "kflows.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=timeout,
    )


def strict_json(line):
    """Parses one line of JSON, refusing NaN and Infinity (Python's json accepts them)."""

    def refuse(constant):
        raise ValueError(f"not strict JSON: {constant}")

    return json.loads(line, parse_constant=refuse)


def call(capsys, *args):
    """Runs ``kflows ARGS`` in this process: (exit status, stdout, stderr)."""
    code = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(err, *fragments):
    assert err.count("\n") == 1 and err.startswith("kflows: error: "), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, (fragment, err)


@pytest.fixture(scope="module")
def moons(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "moons.csv"
    np.savetxt(path, data.two_moons(300, seed=0), delimiter=",")
    return path


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A small two-feature flow saved as .keras."""
    path = tmp_path_factory.mktemp("model") / "flow.keras"
    kflows.maf(num_layers=1, hidden_units=(4,), event_dim=2).save(str(path))
    return path


# ---------------------------------------------------------------- end to end
@pytest.mark.slow
def test_train_evaluate_sample(tmp_path):
    x = data.two_moons(600, seed=0)
    np.savetxt(tmp_path / "moons.csv", x, delimiter=",")
    out = run_cli(
        "train", "--data", "moons.csv", "--layers", "2", "--hidden", "8", "8",
        "--epochs", "2", "--out", "m.keras", cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    result = strict_json(out.stdout.splitlines()[-1])
    assert np.isfinite(result["test_nll"]) and (tmp_path / result["model"]).is_file()
    np.save(tmp_path / "test.npy", x[:50])
    out = run_cli("evaluate", "m.keras", "--data", "test.npy", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert np.isfinite(strict_json(out.stdout.splitlines()[-1])["nll"])
    out = run_cli("sample", "m.keras", "-n", "7", "--out", "s.npy", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert np.load(tmp_path / strict_json(out.stdout.splitlines()[-1])["samples"]).shape == (7, 2)
    out = run_cli("evaluate", "m.keras", "--data", "missing.npy", cwd=tmp_path)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.splitlines()[-1].startswith("kflows: error: ") and "no file at" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.slow
@pytest.mark.parametrize("flow", cli.BUILDERS)
def test_every_builder_trains_from_the_cli(tmp_path, moons, flow):
    out = run_cli("train", "--data", moons, "--flow", flow, *TINY, "--out", "m.keras", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    result = strict_json(out.stdout.splitlines()[-1])
    assert np.isfinite(result["test_nll"]) and result["model"] == "m.keras"
    loaded = saving.load(tmp_path / "m.keras")
    assert np.all(np.isfinite(loaded.log_prob(data.two_moons(8, seed=1)).numpy()))


# ---------------------------------------------------------------- validation
TRAIN_ERRORS = [
    ("--lr", "nan", "expected a finite number > 0"),
    ("--lr", "0", "expected a finite number > 0"),
    ("--lr", "-1", "expected a finite number > 0"),
    ("--lr", "inf", "expected a finite number > 0"),
    ("--lr", "fast", "expected a finite number > 0"),
    ("--epochs", "0", "expected an integer >= 1"),
    ("--batch-size", "0", "expected an integer >= 1"),
    ("--layers", "0", "expected an integer >= 1"),
    ("--layers", "2.5", "expected an integer >= 1"),
    ("--hidden", "0", "expected an integer >= 1"),
    ("--seed", "-1", "expected an integer in [0, 2147483647]"),
    ("--out", "m.h5", "saves only in the Keras v3 '.keras' format"),
]


@pytest.mark.parametrize("option, value, expected", TRAIN_ERRORS)
def test_invalid_train_values_exit_2_naming_option_range_and_value(
    capsys, tmp_path, moons, option, value, expected
):
    out = tmp_path / "m.keras"
    code, stdout, err = call(
        capsys, "train", "--data", moons, *TINY, "--out", out, option, value
    )  # the last value of an option wins
    assert code == 2 and stdout == ""
    assert_one_line_error(err, f"argument {option}", expected, repr(value))
    assert not out.exists() and not (tmp_path / "m.h5").exists()


@pytest.mark.parametrize(
    "option, value, expected",
    [
        ("-n", "-1", "expected an integer >= 1"),
        ("-n", "0", "expected an integer >= 1"),
        ("--seed", "-3", "expected an integer in [0,"),
        ("--out", "samples", "expected a path ending in .npy or .csv"),
    ],
)
def test_invalid_sample_values_exit_2_naming_option_range_and_value(
    capsys, tmp_path, model, option, value, expected
):
    code, stdout, err = call(capsys, "sample", model, "--out", tmp_path / "s.npy", option, value)
    assert code == 2 and stdout == ""
    assert_one_line_error(err, "argument", option, expected, repr(value))
    assert not list(tmp_path.iterdir())


# ---------------------------------------------------------------- results and files
def test_diverged_training_exits_1_prints_no_json_and_saves_nothing(capsys, tmp_path):
    np.save(tmp_path / "huge.npy", np.full((200, 2), 1e20, np.float32))  # NLL overflows
    out = tmp_path / "m.keras"
    code, stdout, err = call(capsys, "train", "--data", tmp_path / "huge.npy", *TINY, "--out", out)
    assert code == 1 and stdout == ""
    assert_one_line_error(err, "training diverged at batch 0 of epoch 0", "not saved", "--lr")
    assert not out.exists() and os.listdir(tmp_path) == ["huge.npy"]


def test_non_finite_evaluation_exits_1_and_prints_no_json(capsys, tmp_path, model):
    np.save(tmp_path / "huge.npy", np.full((20, 2), 1e20, np.float32))
    code, stdout, err = call(capsys, "evaluate", model, "--data", tmp_path / "huge.npy")
    assert code == 1 and stdout == ""
    assert_one_line_error(err, "NLL", "not finite", "huge.npy")


def test_evaluate_prints_strict_json(capsys, tmp_path, model, moons):
    code, stdout, err = call(capsys, "evaluate", model, "--data", moons)
    assert code == 0, err
    result = strict_json(stdout)
    assert set(result) == {"nll", "bits_per_dim"} and all(map(math.isfinite, result.values()))


@pytest.mark.slow
def test_an_existing_model_is_refused_before_training(tmp_path, moons):
    (tmp_path / "m.keras").write_bytes(b"precious")
    # A million epochs: the refusal must come before any training starts.
    out = run_cli(
        "train", "--data", moons, "--epochs", "1000000", "--out", "m.keras",
        cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.splitlines()[-1] == (
        "kflows: error: --out 'm.keras' exists; pass --overwrite to replace it."
    )
    assert (tmp_path / "m.keras").read_bytes() == b"precious"


def test_train_overwrites_with_overwrite_and_prints_only_json(capsys, tmp_path, moons):
    out = tmp_path / "m.keras"
    out.write_bytes(b"precious")
    code, stdout, err = call(
        capsys, "train", "--data", moons, *TINY, "--out", out, "--overwrite", "--verbose", "2"
    )
    assert code == 0, err
    assert stdout.count("\n") == 1 and strict_json(stdout)["model"] == str(out)
    assert "loss" in err  # the progress went to stderr
    assert saving.load(out).event_dim == 2
    assert sorted(os.listdir(tmp_path)) == ["m.keras"]  # no temporary file left behind


@pytest.mark.parametrize("suffix", [".npy", ".csv"])
def test_sample_writes_the_path_it_reports_and_overwrites_only_when_asked(
    capsys, tmp_path, model, suffix
):
    out = tmp_path / f"s{suffix}"
    code, stdout, err = call(capsys, "sample", model, "-n", "5", "--out", out)
    assert code == 0, err
    result = strict_json(stdout)
    assert result == {"samples": str(out), "shape": [5, 2]}
    written = np.load(out) if suffix == ".npy" else np.loadtxt(out, delimiter=",", ndmin=2)
    expected = saving.load(model).sample(5, seed=0).numpy()
    np.testing.assert_allclose(written, expected, rtol=1e-6)

    code, stdout, err = call(capsys, "sample", model, "-n", "3", "--out", out)
    assert code == 2 and stdout == ""
    assert_one_line_error(err, "exists", "--overwrite")
    assert len(np.load(out) if suffix == ".npy" else np.loadtxt(out, delimiter=",")) == 5

    code, _, err = call(capsys, "sample", model, "-n", "3", "--out", out, "--overwrite")
    assert code == 0, err
    assert len(np.load(out) if suffix == ".npy" else np.loadtxt(out, delimiter=",")) == 3
    assert os.listdir(tmp_path) == [out.name]


def _bad_model(tmp_path, model):
    (tmp_path / "bad.keras").write_bytes(model.read_bytes()[:500])
    return tmp_path / "bad.keras"


@pytest.mark.parametrize(
    "command, fragments",
    [
        (
            lambda t, m, d: ["train", "--data", t / "missing.csv", "--out", t / "m.keras"],
            ["no file at", "missing.csv"],
        ),
        (
            lambda t, m, d: ["train", "--data", t / "bad.csv", "--out", t / "m.keras"],
            ["Could not read", "bad.csv"],
        ),
        (lambda t, m, d: ["evaluate", m, "--data", t / "bad.csv"], ["Could not read"]),
        (lambda t, m, d: ["evaluate", t / "no.keras", "--data", d], ["no file at", "no.keras"]),
        (
            lambda t, m, d: ["evaluate", _bad_model(t, m), "--data", d],
            ["bad.keras", "not a valid .keras file (truncated or corrupt"],
        ),
        (lambda t, m, d: ["sample", d, "--out", t / "s.npy"], [".keras", "moons.csv"]),
        (
            lambda t, m, d: ["sample", m, "--out", t / "nowhere" / "s.npy"],
            ["Expected an existing directory for --out", "nowhere"],
        ),
        (
            lambda t, m, d: ["evaluate", m, "--data", t / "three.npy"],
            ["features"],
        ),
    ],
)
def test_expected_failures_are_one_line_errors_with_status_2(
    capsys, tmp_path, model, moons, command, fragments
):
    (tmp_path / "bad.csv").write_text("1,2\nfoo,bar\n")
    np.save(tmp_path / "three.npy", np.zeros((4, 3), np.float32))
    code, stdout, err = call(capsys, *command(tmp_path, model, moons))
    assert code == 2 and stdout == ""
    assert_one_line_error(err, *fragments)


# ---------------------------------------------------------------- data files
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
