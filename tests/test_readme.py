"""Every code block of README.md runs as written (or says, in a marker, why it cannot)."""

import ast
import json
import os
import re
import shlex
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir))
README = os.path.join(ROOT, "README.md")
FENCE = re.compile(r"(?:<!-- not run: (?P<why>.*?) -->\n)?```(?P<lang>\w+)\n(?P<code>.*?)```", re.S)
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}


def blocks(lang=None):
    text = open(README, encoding="utf-8").read()
    found = []
    for m in FENCE.finditer(text):
        line = text.count("\n", 0, m.start("code")) + 1
        if lang is None or m["lang"] == lang:
            found.append((m["lang"], m["code"], m["why"], line))
    return found


def commands(code):
    """Shell commands of a block, with backslash continuations joined, comments dropped."""
    joined = code.replace("\\\n", " ")
    return [c.split("  #")[0].strip() for c in joined.splitlines() if c.strip()]


def run(args, cwd, timeout=900):
    out = subprocess.run(args, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{args}\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}"
    return out.stdout


PYTHON = [b for b in blocks("python") if b[2] is None]


def test_every_block_is_run_or_says_why_not():
    # json: payloads, run by tests/test_export.py; text: what a command printed (checked below)
    runnable = {"python", "bash", "json", "text"}
    skipped = [(lang, why) for lang, _, why, _ in blocks() if why is not None]
    assert all(lang in runnable for lang, *_ in blocks())
    # docker/curl and gRPC need a TF Serving server; two hosts need two machines
    assert len(skipped) == 3, skipped
    assert len(PYTHON) >= 5


@pytest.mark.slow
@pytest.mark.parametrize("block", PYTHON, ids=[f"line{b[3]}" for b in PYTHON])
def test_python_block_runs(block, tmp_path):
    _, code, _, _ = block
    run([sys.executable, "-c", code], cwd=tmp_path)


def test_not_run_python_blocks_compile_and_import():
    for _, code, why, _ in blocks("python"):
        if why is None:
            continue
        tree = ast.parse(code)
        imports = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
        exec(compile(ast.Module(imports, type_ignores=[]), "README", "exec"), {})


@pytest.mark.slow
def test_shell_blocks_run(tmp_path):
    """The set-up command's main job, then the CLI and saved_model_cli blocks on its run folder."""
    shell = [b for b in blocks("bash") if b[2] is None]
    setup, *rest = shell
    first, tests = commands(setup[1])
    assert first.startswith("pip install")
    assert tests == "python -m pytest -q -n auto --durations=25 tests"
    # CI runs the pip install and the tests (.ci/run); the main job runs here, as written.
    main_job = shlex.split(first.split("&&", 1)[1])
    assert main_job[:3] == ["kflows", "train", "two_moons"]
    printed = run(main_job, cwd=tmp_path)
    (shown,) = [code for lang, code, _, _ in blocks("text")]

    def test_nll(text):  # the last column of the "NLL (nats)" row
        (row,) = [line for line in text.splitlines() if line.startswith("NLL (nats)")]
        return float(row.split()[-1])

    # Training is not bit-reproducible across machines; the README's figure is one run's.
    assert abs(test_nll(printed) - test_nll(shown)) < 0.1, printed
    folder = tmp_path / "runs" / "two_moons"
    summary = json.loads((folder / "summary.json").read_text())
    assert np.isfinite(summary["nll"]["test"]["nats"]) and summary["nll"]["test"]["nats"] < 1.5
    assert (folder / "model.keras").is_file() and (folder / "history.csv").is_file()
    assert (folder / "plots" / "density.png").is_file()
    np.save(tmp_path / "test.npy", _moons(200))  # the CLI block scores a test.npy
    for _, code, _, _ in rest:
        for command in commands(code):
            run(shlex.split(command), cwd=tmp_path)
    assert np.load(tmp_path / "samples.npy").shape == (1000, 2)
    assert len(np.loadtxt(tmp_path / "scores.csv", delimiter=",", skiprows=1, ndmin=1)) == 200
    # The README's REST answers of the unconditional flow are this export's, rounded.
    check_rest_values(folder / "export" / "1", conditional=False)


def check_rest_values(path, conditional):
    """Runs the README's REST requests through the export at ``path``; compares the values."""
    import tensorflow as tf
    from test_export import decode_request, readme_payloads

    loaded = tf.saved_model.load(str(path))
    checked = 0
    for request, response in readme_payloads():
        if ("context" in json.dumps(request)) != conditional:
            continue
        signature = loaded.signatures[request["signature_name"]]
        outputs = {k: v.numpy() for k, v in signature(**decode_request(request, signature)).items()}
        documented = response.get("predictions", response.get("outputs"))
        if not isinstance(documented, dict):
            (name,) = outputs
            documented = {name: documented}
        for name, value in outputs.items():
            np.testing.assert_allclose(
                documented[name], value, atol=0.011, err_msg=name
            )  # rounded to 0.01
        checked += 1
    assert checked >= 2


def test_rest_values_of_the_untrained_conditional_flow(tmp_path):
    import kflows

    flow = kflows.maf(context_dim=1, event_dim=2)  # as the README says: the identity map
    check_rest_values(kflows.export(flow, tmp_path / "cmaf", warmup=False), conditional=True)


def _moons(n):
    from kflows import data

    return data.two_moons(n, seed=1)
