"""The command line on real files: real subprocesses where the process itself is tested.

One tiny training run (a conditional flow on a CSV file) in a subprocess makes the run
folder that the sample, score, evaluate, export, info and plot tests share; those commands
run through ``cli.main`` in this process, which imports TensorFlow once instead of once per
command. Bad input caught before TensorFlow starts runs in subprocesses (they take a
fraction of a second), and so do the checks of exit statuses and of a quiet stderr.
"""

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import kflows
from kflows import _quiet, cli, data, saving

ROOT = Path(__file__).resolve().parents[1]
TINY = ("--flow", "maf", "--layers", "1", "--hidden", "8", "--epochs", "1")
PNG = b"\x89PNG\r\n\x1a\n"


def _environment(**extra):
    """This environment, kflows importable from anywhere, and no TF_CPP_MIN_LOG_LEVEL.

    conftest.py sets TF_CPP_MIN_LOG_LEVEL for the tests; a user usually has not, and the
    command line must then hide TensorFlow's start-up lines itself.
    """
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return {**env, **extra}


def run_cli(*args, cwd):
    """Runs ``python -m kflows.cli ARGS`` in ``cwd``; checks that stderr is free of TF noise."""
    done = subprocess.run(
        [sys.executable, "-m", "kflows.cli", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=_environment(),
        timeout=600,
    )
    lines = done.stderr.splitlines()
    noise = [line for line in lines if _quiet._START_UP_LINE.match(line.encode())]
    assert not noise, noise
    return done


def strict_json(text):
    """Parses exactly one line of JSON, refusing NaN and Infinity (Python's json takes them)."""

    def refuse(constant):
        raise ValueError(f"not strict JSON: {constant}")

    assert text.count("\n") == 1, text
    return json.loads(text, parse_constant=refuse)


def assert_one_line_error(err, *fragments):
    assert err.count("\n") == 1 and err.startswith("kflows: error: "), err
    for fragment in fragments:
        assert fragment in err, (fragment, err)


def call(capsys, *args):
    """Runs ``kflows ARGS`` in this process: (exit status, stdout, stderr)."""
    code = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def call_in(folder, capsys, monkeypatch, *args):
    """``call`` with ``folder`` as the working directory.

    Subcommands that load a model run in this process (TensorFlow is imported once for the
    module, not once per command); the shared training run above is the subprocess that
    checks a real process' exit status and quiet stderr.
    """
    monkeypatch.chdir(folder)
    return call(capsys, *args)


def write_csv(path, rows, header):
    np.savetxt(path, rows, delimiter=",", header=",".join(header), comments="")
    return path


# ---------------------------------------------------------------- the shared run
@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A folder with moons.csv: 400 rows of x, y and the moon (0 or 1) each comes from."""
    folder = tmp_path_factory.mktemp("cli")
    write_csv(folder / "moons.csv", data.load("labelled_moons", "all")[:400], ("x", "y", "moon"))
    return folder


@pytest.fixture(scope="module")
def run(work):
    """``kflows train moons.csv --context moon`` (1 epoch of a tiny MAF): (folder, result)."""
    done = run_cli("train", "moons.csv", "--context", "moon", *TINY, "--out", "run", "--json",
                   cwd=work)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "val_loss:" in done.stderr  # Keras' progress (a line per epoch off a terminal)
    return work / "run", strict_json(done.stdout)


def moons(work):
    table = data.read_table(work / "moons.csv", context=["moon"])
    return table.values, table.context


@pytest.mark.slow
def test_train_writes_a_complete_run_folder(run):
    folder, result = run
    summary = json.loads((folder / "summary.json").read_text())
    assert result == {"run": "run", **summary}
    assert summary["command"] == (
        "kflows train moons.csv --context moon --flow maf --layers 1 --hidden 8 --epochs 1 "
        "--out run --json"
    )
    assert summary["flow"] == "maf" and summary["event_dim"] == 2 and summary["context_dim"] == 1
    assert summary["data"]["columns"] == ["x", "y"]
    assert summary["data"]["context_columns"] == ["moon"]
    assert summary["data"]["rows"] == {"train": 280, "validation": 40, "test": 80}
    flow = saving.load(folder / "model.keras")
    assert summary["parameters"] == flow.count_params() > 0
    for split in ("train", "validation", "test"):
        nll = summary["nll"][split]
        assert math.isfinite(nll["nats"])
        assert nll["bits_per_dim"] == pytest.approx(nll["nats"] / (2 * math.log(2)), rel=1e-5)
    assert summary["training"]["epochs_run"] == 1 and summary["training"]["wall_time_s"] > 0
    assert set(summary["versions"]) >= {"kflows", "tensorflow", "keras", "numpy"}
    assert summary["plots"] == ["plots/conditional.png", "plots/learning_curve.png"]
    for plot in summary["plots"]:
        assert (folder / plot).read_bytes()[:8] == PNG
    history = (folder / "history.csv").read_text().splitlines()
    assert history[0].startswith("epoch,loss,val_loss") and len(history) == 2
    assert (folder / "export" / "1" / "saved_model.pb").is_file()
    assert not [p for p in os.listdir(folder.parent) if p.startswith(".run")]  # no staging left


@pytest.mark.slow
def test_sample_with_a_context_writes_rows_led_by_it(run, work, capsys, monkeypatch):
    folder, _ = run
    args = ("sample", "run", "-n", "5", "--context", "1", "--seed", "3", "-o", "s.csv")
    code, out, err = call_in(work, capsys, monkeypatch, *args)
    assert code == 0, err
    assert "5 samples" in out
    lines = (work / "s.csv").read_text().splitlines()
    assert lines[0] == "moon,x,y" and len(lines) == 6
    written = np.loadtxt(work / "s.csv", delimiter=",", skiprows=1)
    expected = saving.load(folder / "model.keras").sample(5, context=[1.0], seed=3).numpy()
    np.testing.assert_array_equal(written[:, 0], 1.0)
    np.testing.assert_allclose(written[:, 1:], expected, rtol=1e-6)
    # An existing file is kept without --overwrite, and the refusal comes before TensorFlow.
    done = run_cli("sample", "run", "-n", "2", "--context", "0", "-o", "s.csv", cwd=work)
    assert done.returncode == 2 and done.stdout == ""
    assert_one_line_error(done.stderr, "'s.csv' exists", "--overwrite")
    assert len((work / "s.csv").read_text().splitlines()) == 6


@pytest.mark.slow
def test_score_writes_the_log_density_of_each_row(run, work, capsys, monkeypatch):
    folder, _ = run
    args = ("score", "run", "moons.csv", "-o", "scores.csv")
    code, out, err = call_in(work, capsys, monkeypatch, *args)
    assert code == 0, err
    assert "log-density of 400 rows" in out
    lines = (work / "scores.csv").read_text().splitlines()
    assert lines[0] == "log_prob" and len(lines) == 401
    x, context = moons(work)  # the run folder remembers the context column
    expected = saving.load(folder / "model.keras").log_prob(x, context).numpy()
    np.testing.assert_allclose(np.loadtxt(work / "scores.csv", skiprows=1), expected, rtol=1e-5)


@pytest.mark.slow
def test_evaluate_prints_the_mean_nll(run, work, capsys, monkeypatch):
    code, out, err = call_in(work, capsys, monkeypatch, "evaluate", "run", "moons.csv", "--json")
    assert code == 0, err
    result = strict_json(out)
    assert result["rows"] == 400
    flow = saving.load(run[0] / "model.keras")
    nll = -float(np.mean(flow.log_prob(*moons(work)).numpy()))
    assert result["nll"] == pytest.approx(nll, rel=1e-5)
    assert result["bits_per_dim"] == pytest.approx(nll / (2 * math.log(2)), rel=1e-5)


@pytest.mark.slow
def test_export_then_info_shows_the_signatures(run, work, tmp_path, capsys, monkeypatch):
    code, _, err = call_in(tmp_path, capsys, monkeypatch, "export", work / "run", "served")
    assert code == 0, err
    assert (tmp_path / "served" / "1" / "saved_model.pb").is_file()
    code, out, err = call(capsys, "info", "served", "--json")  # the base path: its latest
    assert code == 0, err
    result = strict_json(out)
    assert result["kind"] == "export" and result["path"].endswith(os.path.join("served", "1"))
    signatures = result["signatures"]
    assert set(signatures) == {"log_prob", "sample", "sample_and_log_prob", "serving_default"}
    assert signatures["log_prob"]["inputs"] == {
        "context": {"dtype": "float32", "shape": [None, 1]},
        "x": {"dtype": "float32", "shape": [None, 2]},
    }
    assert signatures["log_prob"]["outputs"] == {"log_prob": {"dtype": "float32", "shape": [None]}}
    assert set(signatures["sample"]["inputs"]) == {"num_samples", "seed", "context"}


@pytest.mark.slow
def test_info_describes_the_model(capsys, run):
    code, out, err = call(capsys, "info", run[0])
    assert code == 0, err
    assert "2 features, 1 context features, float32" in out
    assert "one pass for: density" in out and "MaskedAutoregressive" in out
    assert "trained with: kflows train moons.csv" in out


@pytest.mark.slow
def test_plot_remakes_the_figures_of_a_run(run, work, tmp_path, capsys, monkeypatch):
    # A copy, so that other tests keep theirs; the run reads its data relative to itself.
    shutil.copytree(work / "run", tmp_path / "run")
    shutil.copy(work / "moons.csv", tmp_path / "moons.csv")
    shutil.rmtree(tmp_path / "run" / "plots")
    code, _, err = call_in(tmp_path, capsys, monkeypatch, "plot", "run")
    assert code == 0, err
    for name in ("conditional.png", "learning_curve.png"):
        assert (tmp_path / "run" / "plots" / name).read_bytes()[:8] == PNG
    assert sorted(os.listdir(tmp_path / "run")) == sorted(os.listdir(work / "run"))


def test_datasets_lists_the_built_in_data(tmp_path):
    done = run_cli("datasets", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    rows = {row["name"]: row for row in strict_json(done.stdout)["datasets"]}
    assert list(rows) == list(data.DATASETS)
    assert rows["two_moons"]["shape"] == [data.TOY_ROWS, 2]
    assert rows["labelled_moons"]["context_columns"] == ["moon"]
    assert rows["wine"]["shape"] == [178, 13] and rows["wine"]["kind"] == "table"
    done = run_cli("datasets", cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.count("\n") == len(rows) + 1
    assert done.stdout.splitlines()[1].split()[:5] == ["breast_cancer", "table", "569", "x", "30"]


# ---------------------------------------------------------------- built-in data, no plots
@pytest.mark.slow
def test_train_on_built_in_data_without_matplotlib_then_plot(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "r").mkdir()  # an older run, replaced
    (tmp_path / "r" / "summary.json").write_text("{}")
    (tmp_path / "r" / "stale.txt").write_text("")
    with monkeypatch.context() as blocked:
        blocked.setitem(sys.modules, "matplotlib", None)  # import matplotlib fails
        code, out, err = call(capsys, "train", "two_moons", *TINY, "--out", "r", "--overwrite")
        assert code == 0, err
        assert "Trained maf on two_moons" in out and "NLL (nats)" in out
        assert "kflows: note: no plots: matplotlib is not installed" in err
        assert sorted(os.listdir(tmp_path)) == ["r"]
        assert sorted(os.listdir(tmp_path / "r")) == [
            "export", "history.csv", "model.keras", "summary.json"
        ]  # fmt: skip
        summary = json.loads((tmp_path / "r" / "summary.json").read_text())
        assert summary["plots"] == [] and "matplotlib" in summary["plots_skipped"]
        assert summary["data"]["rows"] == {"train": 14000, "validation": 2000, "test": 4000}
        code, out, err = call(capsys, "plot", "r")
        assert code == 2
        assert_one_line_error(err, "kflows plot needs matplotlib", "kflows[plot]")
    # The fixed test split gives the same NLL again.
    code, out, err = call(capsys, "evaluate", "r", "two_moons", "--json")
    assert code == 0, err
    assert strict_json(out)["nll"] == pytest.approx(summary["nll"]["test"]["nats"], abs=1e-5)
    code, out, err = call(capsys, "plot", "r")
    assert code == 0, err
    for name in ("density.png", "learning_curve.png"):
        assert (tmp_path / "r" / "plots" / name).read_bytes()[:8] == PNG
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["plots"] == ["plots/density.png", "plots/learning_curve.png"]
    assert "plots_skipped" not in summary


# ---------------------------------------------------------------- bad input, before TensorFlow
def _bad_inputs(folder):
    """Files for the bad-input cases."""
    (folder / "bad.csv").write_text("x,y\n1,2\nfoo,bar\n")
    (folder / "nan.csv").write_text("x,y\n1,2\nnan,3\n")
    (folder / "few.csv").write_text("x,y\n1,2\n3,4\n")
    (folder / "old").mkdir()
    (folder / "old" / "summary.json").write_text("{}")
    (folder / "mine").mkdir()
    (folder / "mine" / "notes.txt").write_text("precious")
    (folder / "taken.csv").write_text("precious")


BEFORE_TENSORFLOW = [
    # train: data
    (["train", "moons", "--out", "r"], ["built-in dataset", "'moons'", "two_moons"]),
    (["train", "missing.csv", "--out", "r"], ["no file at", "missing.csv"]),
    (["train", "bad.csv", "--out", "r"], ["bad.csv", "'foo', not a number"]),
    (["train", "nan.csv", "--out", "r"], ["nan.csv", "NaN"]),
    (["train", "few.csv", "--out", "r"], ["few.csv", "has 2 rows"]),
    (["train", "moons.csv", "--context", "colour", "--out", "r"], ["'colour'", "moon"]),
    (["train", "moons.csv", "--context", "7", "--out", "r"], ["index", "7"]),
    (["train", "two_moons", "--validation-split", "0.2", "--out", "r"], ["fixed splits"]),
    # train: the run folder
    (["train", "moons.csv", "--out", "old"], ["'old' exists and is not empty", "--overwrite"]),
    (["train", "moons.csv", "--out", "mine", "--overwrite"], ["'mine' has no summary.json"]),
    (["train", "moons.csv", "--out", "taken.csv"], ["'taken.csv' is a file"]),
    # train: values
    (["train", "moons.csv", "--out", "r", "--lr", "nan"], ["--lr", "finite number > 0", "'nan'"]),
    (["train", "moons.csv", "--out", "r", "--epochs", "0"], ["--epochs", "integer >= 1"]),
    (["train", "moons.csv", "--out", "r", "--epochs", "2.5"], ["--epochs", "'2.5'"]),
    (["train", "moons.csv", "--out", "r", "--batch-size", "0"], ["--batch-size"]),
    (["train", "moons.csv", "--out", "r", "--hidden", "8,0"], ["--hidden", "'8,0'"]),
    (["train", "moons.csv", "--out", "r", "--seed", "2147483648"], ["[0, 2147483647]"]),
    (["train", "moons.csv", "--out", "r", "--validation-split", "1"], ["number in (0, 1)"]),
    (["train", "moons.csv", "--out", "r", "--flow", "vae"], ["--flow", "invalid choice"]),
    (["train", "moons.csv"], ["--out"]),
    # sample
    (["sample", "run", "-n", "0", "-o", "s.csv"], ["-n", "integer >= 1", "'0'"]),
    (["sample", "run", "-n", "5", "--seed", "-3", "-o", "s.csv"], ["--seed", "'-3'"]),
    (["sample", "run", "-n", "5", "-o", "samples"], ["ending in .csv or .npy"]),
    (["sample", "run", "-n", "5", "-o", "taken.csv"], ["'taken.csv' exists"]),
    (["sample", "run", "-n", "5", "-o", "nowhere/s.csv"], ["existing directory", "nowhere"]),
    (["sample", "run", "-n", "5", "--context", "inf", "-o", "s.csv"], ["--context", "finite"]),
    (
        ["sample", "run", "-n", "1", "--context", "1", "--context-file", "f.csv", "-o", "s.csv"],
        ["not allowed with"],
    ),  # fmt: skip
    (["sample", "moons.csv", "-n", "5", "-o", "s.csv"], ["run folder", ".keras", "moons.csv"]),
    (["sample", "no.keras", "-n", "5", "-o", "s.csv"], ["no file at", "no.keras"]),
    (["sample", "mine", "-n", "5", "-o", "s.csv"], ["'mine'", "without model.keras"]),
    # score, evaluate, export, info, plot
    (["score", "run", "moons.csv", "-o", "taken.csv"], ["'taken.csv' exists"]),
    (["evaluate", "run", "moons.csv", "--subset", "test"], ["--subset", "is a file"]),
    (["evaluate", "run", "moons.csv", "--context", "colour"], ["'colour'"]),
    (["export", "no.keras", "served"], ["no file at", "no.keras"]),
    (["info", "moons.csv"], ["run folder", ".keras", "moons.csv"]),
    (["plot", "mine"], ["run folder", "'mine'"]),
]


@pytest.mark.parametrize("args, fragments", BEFORE_TENSORFLOW, ids=lambda v: " ".join(v)[:60])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(run_or_fake, args, fragments):
    folder = run_or_fake
    before = sorted(os.listdir(folder))
    done = run_cli(*args, cwd=folder)
    assert done.returncode == 2 and done.stdout == ""
    assert_one_line_error(done.stderr, *fragments)
    assert sorted(os.listdir(folder)) == before
    assert (folder / "mine" / "notes.txt").read_text() == "precious"
    assert (folder / "taken.csv").read_text() == "precious"


@pytest.fixture(scope="module")
def run_or_fake(tmp_path_factory, work):
    """A folder for the bad-input cases: moons.csv, a model-less 'run' and the bad files.

    These cases never reach the model, so a model-less stand-in for the run (its
    summary.json and an empty model.keras) keeps them independent of training.
    """
    folder = tmp_path_factory.mktemp("bad")
    shutil.copy(work / "moons.csv", folder / "moons.csv")
    (folder / "run").mkdir()
    (folder / "run" / "model.keras").write_bytes(b"")
    (folder / "run" / "summary.json").write_text(
        json.dumps({"data": {"context_columns": ["moon"]}})
    )
    _bad_inputs(folder)
    return folder


def test_help_and_argument_errors_do_not_import_tensorflow(tmp_path):
    calls = [
        ["--help"],
        ["train", "--help"],
        ["sample", "--help"],
        ["train", "two_moons", "--out", "r", "--lr", "-1"],
        ["train", "nope", "--out", "r"],
        ["sample", "r.keras", "-n", "0", "-o", "s.csv"],
    ]
    script = (
        "import json, sys\n"
        "from kflows import cli\n"
        f"codes = [cli.main(a) for a in {calls!r}]\n"
        "cli.parser().parse_args(['train', 'two_moons', '--out', 'r'])\n"
        "print(json.dumps([codes, sorted({'tensorflow', 'keras'} & set(sys.modules))]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path,
        env=_environment(), timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    codes, imported = json.loads(done.stdout.splitlines()[-1])
    assert codes == [0, 0, 0, 2, 2, 2] and imported == []
    assert "usage: kflows train [-h]" in done.stdout and "--context COLUMNS" in done.stdout
    assert not list(tmp_path.iterdir())


# ---------------------------------------------------------------- bad input that needs the model
@pytest.fixture(scope="module")
def plain_model(tmp_path_factory):
    """An unconditional two-feature flow saved as a bare .keras file."""
    path = tmp_path_factory.mktemp("plain") / "flow.keras"
    kflows.maf(num_layers=1, hidden_units=(4,), event_dim=2).save(str(path))
    return path


@pytest.mark.slow
def test_mismatched_models_and_data_are_refused(capsys, run, work, plain_model, tmp_path):
    folder = run[0]
    write_csv(tmp_path / "three.csv", np.zeros((4, 4)), ("a", "b", "c", "moon"))
    (tmp_path / "bad.keras").write_bytes(plain_model.read_bytes()[:500])
    write_csv(tmp_path / "contexts.csv", np.ones((2, 2)), ("c0", "c1"))
    cases = [
        (["score", folder, tmp_path / "three.csv", "-o", tmp_path / "s.csv"],
         ["models 2 columns", "3 value columns"]),
        (["evaluate", folder / "model.keras", work / "moons.csv"],
         ["models 2 columns", "3 value columns (x, y, moon)"]),
        (["evaluate", folder, tmp_path / "three.csv", "--context", "c,moon"],
         ["conditional on 1 context columns", "names 2 (c, moon)"]),
        (["evaluate", plain_model, work / "moons.csv", "--context", "moon"],
         ["is unconditional", "context columns (moon)"]),
        (["sample", folder, "-n", "3", "-o", tmp_path / "s.csv"],
         ["conditional on 1 context values", "--context"]),
        (["sample", folder, "-n", "3", "--context", "1,2", "-o", tmp_path / "s.csv"],
         ["--context gives 2"]),
        (["sample", folder, "-n", "3", "--context-file", tmp_path / "contexts.csv",
          "-o", tmp_path / "s.csv"], ["--context-file gives 2"]),
        (["sample", plain_model, "-n", "3", "--context", "1", "-o", tmp_path / "s.csv"],
         ["is unconditional; got --context"]),
        (["info", tmp_path / "bad.keras"], ["bad.keras", "not a valid .keras file"]),
    ]  # fmt: skip
    for args, fragments in cases:
        code, out, err = call(capsys, *args)
        assert code == 2 and out == "", (args, err)
        assert_one_line_error(err, *fragments)
    assert not (tmp_path / "s.csv").exists()


@pytest.mark.slow
def test_sample_from_a_file_of_contexts(capsys, run, tmp_path):
    folder = run[0]
    write_csv(tmp_path / "contexts.csv", [[0.0], [1.0]], ["moon"])
    out_path = tmp_path / "s.npy"
    code, out, err = call(capsys, "sample", folder, "-n", "3", "--context-file",
                          tmp_path / "contexts.csv", "-o", out_path, "--json")  # fmt: skip
    assert code == 0, err
    assert strict_json(out) == {"samples": str(out_path), "shape": [6, 3],
                                "columns": ["moon", "x", "y"]}  # fmt: skip
    written = np.load(out_path)
    np.testing.assert_array_equal(written[:, 0], [0, 0, 0, 1, 1, 1])
    flow = saving.load(folder / "model.keras")
    expected = flow.sample(3, context=[[0.0], [1.0]], seed=0).numpy()  # [n, B, D]
    np.testing.assert_allclose(written[3:, 1:], expected[:, 1], rtol=1e-6)
    assert os.listdir(tmp_path) == ["contexts.csv", "s.npy"]  # no temporary file left


@pytest.mark.slow
def test_non_finite_results_exit_1_and_save_nothing(capsys, run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    np.save(tmp_path / "huge.npy", np.full((200, 2), 1e20, np.float32))  # the NLL overflows
    code, out, err = call(capsys, "train", "huge.npy", *TINY, "--out", "r")
    assert code == 1 and out == ""
    assert_one_line_error(err.splitlines()[-1] + "\n", "training diverged", "not saved", "--lr")
    assert os.listdir(tmp_path) == ["huge.npy"]  # no run folder, no staging folder
    write_csv(tmp_path / "huge.csv", np.full((20, 3), 1e20), ("x", "y", "moon"))
    code, out, err = call(capsys, "evaluate", run[0], "huge.csv")
    assert code == 1 and out == ""
    assert_one_line_error(err, "NLL", "not finite", "huge.csv")


@pytest.mark.slow
def test_overwrite_replaces_a_run_folder_only_when_the_new_run_is_complete(
    capsys, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "summary.json").write_text('{"old": true}')
    np.save(tmp_path / "huge.npy", np.full((200, 2), 1e20, np.float32))
    code, _, _ = call(capsys, "train", "huge.npy", *TINY, "--out", "r", "--overwrite")
    assert code == 1  # diverged: the old run stays
    assert os.listdir(tmp_path / "r") == ["summary.json"]
    assert sorted(os.listdir(tmp_path)) == ["huge.npy", "r"]
