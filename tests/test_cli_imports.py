"""``import kflows`` is lazy and quiet: TensorFlow loads on first use, without start-up lines."""

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import kflows
from kflows import _quiet, bases, builders, cli, layers, matching, nan_guard, saving, serving

ROOT = Path(__file__).resolve().parents[1]


def test_the_public_names_are_those_of_the_subpackages():
    expected = {
        *(set(layers.__all__) - {"FAST_DIRECTIONS", "INITIALISATIONS"}),
        *bases.__all__,
        *builders.__all__,
        *("Conditioner", "MADE", "MLP", "Flow", "export", "load"),
        *("bijectors", "data", "diagnostics", "inputs", "networks", "transforms"),
        *nan_guard.__all__,
        *matching.__all__,
    }
    assert kflows.__all__ == sorted(expected)
    for name in [*kflows.__all__, "layers", "bases", "builders", "flow", "ode"]:
        assert getattr(kflows, name) is not None
        assert name in dir(kflows)
    assert kflows.Flow is kflows.flow.Flow and kflows.FFJORD is layers.FFJORD
    assert kflows.load is saving.load and kflows.export is serving.export
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        kflows.nope  # noqa: B018


def test_the_lazy_names_are_the_type_checking_imports():
    """The names the docs and type checkers see are those ``__getattr__`` serves."""
    tree = ast.parse(Path(kflows.__file__).read_text())
    (block,) = [
        n for n in tree.body if isinstance(n, ast.If) and ast.unparse(n.test) == "TYPE_CHECKING"
    ]
    imported = {
        alias.name: node.module.removeprefix("kflows.")
        for node in block.body
        for alias in node.names
    }
    assert imported == kflows._NAMES


def test_the_cli_offers_every_builder():
    assert cli.BUILDERS == tuple(builders.__all__)
    assert cli.DEFAULT_FLOW in cli.BUILDERS


@pytest.mark.slow
def test_import_kflows_is_lazy_and_tensorflow_starts_quietly(tmp_path):
    script = (
        "import json, os, sys\n"
        "import kflows, kflows.cli, kflows.data\n"
        "lazy = {'version': kflows.__version__, 'listed': 'maf' in dir(kflows),\n"
        "        'loaded': sorted({'tensorflow', 'keras'} & set(sys.modules))}\n"
        "flow = kflows.maf(num_layers=1, event_dim=2)\n"
        "flow.log_prob([[0.0, 0.0]])\n"
        "print(json.dumps([lazy, os.environ['TF_CPP_MIN_LOG_LEVEL']]))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path,
        env=env, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lazy, level = json.loads(done.stdout)
    assert lazy == {"version": kflows.__version__, "listed": True, "loaded": []}
    assert level == "2"  # set for TensorFlow, as the user had not
    assert done.stderr == ""  # no oneDNN, CUDA, cpu_feature_guard or absl lines


START_UP = [
    b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n",
    b"I0000 00:00:1795928347.002912   15188 port.cc:153] oneDNN custom operations are on.\n",
    b"E0000 00:00:1795928389.954407   17688 cuda_platform.cc:52] failed call to cuInit\n",
    b"W1107 12:01:02.123456   42 cuda_dnn.cc:8310] Unable to register cuDNN factory\n",
]
OTHER = [b"a warning of the user's own\n", b"F0000 00:00:17.1 1 x.cc:1] fatal lines stay\n"]


def test_start_up_lines_are_dropped_and_the_rest_is_kept(capfd):
    with _quiet._start_up_lines_dropped():
        for line in (*START_UP, *OTHER):
            os.write(2, line)
    assert capfd.readouterr().err == b"".join(OTHER).decode()


def test_when_the_import_fails_every_line_is_shown(capfd):
    with pytest.raises(ImportError), _quiet._start_up_lines_dropped():
        os.write(2, START_UP[1])
        raise ImportError("no tensorflow")
    assert capfd.readouterr().err == START_UP[1].decode()
