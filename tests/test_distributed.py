"""tf.distribute.MultiWorkerMirroredStrategy: two workers on 127.0.0.1 train like one device.

tests/scripts/multi_worker.py is the README's command (``python
tests/scripts/multi_worker.py``); here its launcher runs in the test process: it starts the
two worker processes (each the script with its own ``TF_CONFIG``), trains the reference
flow on one device meanwhile, and compares the weights. Every worker is stopped when it
fails, when the other fails, or at the deadline.
"""

import importlib.util
import os
import time

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "tests", "scripts", "multi_worker.py")
#: The workers import the working tree's kflows, whatever is installed.
ENV = {
    "TF_CPP_MIN_LOG_LEVEL": "2",
    "PYTHONPATH": os.pathsep.join([ROOT, *filter(None, [os.environ.get("PYTHONPATH")])]),
}


def _script():
    spec = importlib.util.spec_from_file_location("multi_worker", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_two_workers_end_with_the_weights_of_one_device():
    script = _script()
    args = script.parse_args(["--timeout", "240"])
    result = script.compare(args, ["--timeout", "240"], env=ENV)
    assert result["workers"] == 2 and result["replicas"] == [2, 2], result
    # The workers apply the same all-reduced updates: identical weights, moving averages too.
    assert result["max_diff_between_workers"] < 1e-6, result
    # Each trained on its half of every global batch; together they match one device
    # trained on the whole batch (weights, BatchNorm's moving averages, ActNorm's init).
    assert result["max_diff_vs_single"] < 1e-5, result
    assert result["max_change_in_training"] > 1e-3, result  # training moved the weights
    for losses in result["loss_workers"]:
        np.testing.assert_allclose(losses, result["loss_single"], rtol=1e-5)
    # evaluate under the strategy reports the mean NLL over all rows, as one device does.
    np.testing.assert_allclose(result["evaluate_workers"], result["evaluate_single"], rtol=1e-5)


def test_a_failing_worker_stops_the_launch_with_its_output(tmp_path):
    script = _script()
    started = time.monotonic()
    # Both workers refuse the option before importing TensorFlow.
    procs, logs = script.start_workers(["--rows", "many"], str(tmp_path), ENV)
    with pytest.raises(RuntimeError, match=r"worker \d exited with status 2(.|\n)*invalid int"):
        script.wait_workers(procs, logs, str(tmp_path), started + 60)
    assert all(p.poll() is not None for p in procs)


def test_workers_past_the_deadline_are_stopped(tmp_path):
    script = _script()
    procs, logs = script.start_workers([], str(tmp_path), ENV)
    with pytest.raises(RuntimeError, match="did not finish in time"):
        script.wait_workers(procs, logs, str(tmp_path), time.monotonic() + 0.5)
    assert all(p.poll() is not None for p in procs)  # killed, not left running


def test_the_readme_command_is_this_script():
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    section = text.split("## Scaling out: several GPUs and several hosts", 1)[1]
    section = section.split("\n## ", 1)[0]
    assert "```bash\npython tests/scripts/multi_worker.py\n" in section
    assert os.path.exists(SCRIPT)
