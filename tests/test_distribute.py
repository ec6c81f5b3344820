"""tf.distribute: a MirroredStrategy over two logical CPUs trains like one device.

One subprocess (logical devices must be configured before TensorFlow initialises) runs
tests/scripts/mirrored.py: ``fit`` of a flow holding a BatchNorm, BatchNorm's synchronised
statistics on their own, and variational inference with a flow made in the strategy.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "tests", "scripts", "mirrored.py")


@pytest.mark.slow
def test_mirrored_strategy_matches_single_device():
    env = {
        **os.environ,
        "TF_CPP_MIN_LOG_LEVEL": "2",
        # The working tree's kflows, whatever is installed.
        "PYTHONPATH": os.pathsep.join([ROOT, *filter(None, [os.environ.get("PYTHONPATH")])]),
    }
    out = subprocess.run(
        [sys.executable, SCRIPT], capture_output=True, text=True, env=env, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["replicas"] == 2
    # Same data, same order, same start: the two replicas' gradients add up to one device's,
    # and BatchNorm normalises each half with the whole batch's statistics.
    assert result["max_weight_diff"] < 1e-5, result
    assert result["moving_mean_replica_diff"] == 0.0, result
    np.testing.assert_allclose(result["loss_mirrored"], result["loss_single"], rtol=1e-5)
    # The reported loss is the mean NLL, not a per-replica sum.
    np.testing.assert_allclose(result["after"], result["nll"], rtol=1e-5)
    assert result["after"] < result["before"]

    # BatchNorm (float64), a batch split over two replicas vs one device on the whole batch:
    # the halves' own means are 0.26 away from the batch's; synchronised, nothing differs.
    batch_norm = result["batch_norm"]
    assert batch_norm["half_vs_batch_mean"] > 0.1
    for key in ("u", "ildj", "moving_mean", "moving_variance"):
        assert batch_norm[key] < 1e-12, (key, batch_norm)

    # VI under the strategy (README recipe): each replica's samples, one update everywhere.
    variational = result["variational"]
    np.testing.assert_allclose(variational["loss"], variational["loss_single"], rtol=1e-5)
    assert variational["max_weight_diff"] < 1e-5, variational
    assert variational["replica_diff"] == 0.0, variational
    assert np.mean(variational["loss"][-3:]) < variational["loss"][0] - 2.0, variational
