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
            "realnvp",
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
