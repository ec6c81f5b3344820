"""The benchmark harness runs end to end on a tiny configuration (kflows and raw TFP only).

Nothing here is about speed: the checks are that every framework process reports, and that
the ratio table has the rows and columns it promises, so that the harness cannot rot.
"""

import json
import math
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "benchmarks")


def run(args, tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("KFLOWS_BENCH_TORCH_PYTHON", None)
    env.pop("KFLOWS_BENCH_JAX_PYTHON", None)
    proc = subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.slow
def test_run_prints_the_ratio_table(tmp_path):
    tiny = {"window": 2, "eval_batch": 64, "throughput_reps": 1, "latency_reps": 2}
    out_json = tmp_path / "results.json"
    stdout = run(
        [
            os.path.join(BENCH, "run.py"),
            "--flows",
            "maf",
            "--dim",
            "2",
            "--hidden",
            "16",
            "--batch",
            "64",
            "--layers",
            "2",
            "--steps",
            "6",
            "--num-train",
            "512",
            "--num-test",
            "128",
            "--extra",
            json.dumps(tiny),
            "--json",
            str(out_json),
        ],
        tmp_path,
    )
    header = "| config | metric | kflows | / raw TFP | / zuko | / FlowJAX |"
    assert header in stdout
    sys.path.insert(0, BENCH)
    from run import METRICS

    for flow in ("maf",):
        rows = [
            line for line in stdout.splitlines() if line.startswith(f"| {flow} D=2 H=16 B=64 |")
        ]
        # One ratio row and one absolute row per metric.
        assert len(rows) == 2 * len(METRICS), rows
        ratios = rows[: len(METRICS)]
        for line, (_, label, how) in zip(ratios, METRICS, strict=True):
            cells = [c.strip() for c in line.strip("|").split("|")]
            assert cells[1] == label
            float(cells[2].replace(",", ""))  # kflows' own value
            # raw TFP ran (ratio or difference); zuko and FlowJAX have no interpreter here.
            assert cells[3].endswith("x") if how == "ratio" else cells[3][0] in "+-", cells
            assert cells[4] == cells[5] == "not run"
    results = json.loads(out_json.read_text())["results"]
    for entry in results:
        assert entry["results"]["kflows"]["framework"] == "kflows"
        for framework in ("kflows", "tfp"):
            assert math.isfinite(entry["results"][framework]["test_nll"])


@pytest.mark.slow
def test_stream_reports_peak_memory(tmp_path):
    stdout = run(
        [
            os.path.join(BENCH, "stream.py"),
            "--rows",
            "4096",
            "1024",
            "--dim",
            "2",
            "--batch",
            "512",
            "--chunk-rows",
            "1000",
        ],
        tmp_path,
    )
    assert "| 4,096 | 2 |" in stdout and "| 1,024 | 2 |" in stdout
    assert "Peak RSS grows by" in stdout


@pytest.mark.slow
def test_catalog_runs_each_builder_and_reports_the_missing(tmp_path):
    out_json = tmp_path / "catalog.json"
    stdout = run(
        [
            os.path.join(BENCH, "catalog.py"),
            "--quick",
            "--frameworks",
            "kflows",
            "--builders",
            "maf",
            "no_such_builder",
            "--steps",
            "8",
            "--json",
            str(out_json),
            "--markdown",
            str(tmp_path / "catalog.md"),
        ],
        tmp_path,
    )
    assert "| builder | two_moons kflows |" in stdout
    assert "Not run, no such kflows builder (yet): no_such_builder." in stdout
    report = json.loads(out_json.read_text())
    maf = report["results"]["two_moons"]["kflows"]["maf"]
    assert "error" not in maf, maf
    assert math.isfinite(maf["test_nll"]) and maf["params"] > 0
    assert maf["first_step_s"] > 0 and maf["train_ms_per_step"] > 0
    assert (tmp_path / "catalog.md").read_text().startswith("### Test NLL")


def test_catalog_tables_show_errors_and_missing_counterparts():
    sys.path.insert(0, BENCH)
    import catalog

    ok = {
        "test_nll": 1.25,
        "train_ms_per_step": 2.0,
        "first_step_s": 0.5,
        "params": 1234,
        "config": "maf()",
        "note": "",
    }
    report = {
        "spec": {
            "steps": 1,
            "batch": 2,
            "lr": 1e-3,
            "seed": 0,
            "layers": 1,
            "hidden": [4],
            "ode_test_rows": 0,
            "ode_tol": 1e-5,
            "trace": "exact",
            "layer_overrides": {"ffjord": 1},
        },
        "frameworks": ["kflows", "zuko"],
        "builders": ["maf", "glow"],
        "missing": [],
        "skipped": ["ffjord", "zuko:glow"],
        "datasets": [{"name": "two_moons", "dim": 2, "train_rows": 9, "test_rows": 3, "batch": 2}],
        "results": {
            "two_moons": {
                "kflows": {"maf": ok, "glow": {"builder": "glow", "error": "ValueError: bad"}},
                "zuko": {
                    "maf": {**ok, "test_nll": float("inf"), "nonfinite_rows": 1, "eval_rows": 3}
                },
            }
        },
        "children": {"two_moons": {"kflows": {}, "zuko": {"not_run": "no interpreter"}}},
    }
    text = catalog.tables(report)
    assert "| maf | 1.250 | inf (1/3 rows non-finite) |" in text
    assert "| glow | error [1] | — |" in text  # zuko has no Glow
    assert "1. ValueError: bad" in text and "Skipped (--skip): ffjord, zuko:glow." in text
    assert "| maf | 1,234 | 1,234 |" in text


def test_catalog_reports_a_child_that_dies_before_its_models(tmp_path):
    sys.path.insert(0, BENCH)
    import catalog

    args = catalog.parse(["--model-timeout", "60"])
    spec = {"dataset": "toy", "data": str(tmp_path / "missing.npz"), "models": ["maf", "nsf"]}
    info, results = {}, {}
    catalog.run_child("zuko", sys.executable, spec, args, info, results)
    assert sorted(results) == ["maf", "nsf"]
    for result in results.values():
        assert result["error"].startswith("child failed (rc 1)"), result
        assert "missing.npz" in result["error"]
