"""tf.distribute: a MirroredStrategy over two logical CPUs trains like one device."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

SCRIPT = os.path.join(os.path.dirname(__file__), "scripts", "mirrored.py")


@pytest.mark.slow
def test_mirrored_strategy_matches_single_device():
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    out = subprocess.run(
        [sys.executable, SCRIPT], capture_output=True, text=True, env=env, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["replicas"] == 2
    # Same data, same order, same start: the two replicas' gradients add up to one device's.
    assert result["max_weight_diff"] < 1e-4
    np.testing.assert_allclose(result["loss_mirrored"], result["loss_single"], rtol=1e-4)
    # The reported loss is the mean NLL, not a per-replica sum.
    np.testing.assert_allclose(result["after"], result["nll"], rtol=1e-4)
    assert result["after"] < result["before"]
