"""Kill and resume: a training process SIGKILLed mid-epoch resumes with BackupAndRestore.

Two real processes (tests/scripts/resume.py) train a small RealNVP flow (lazily built, behind
an ActNorm initialised from data) on two moons, deterministically. The first kills itself with
SIGKILL in the middle of its second epoch; the second, given the same backup directory,
resumes from the backup, and then trains the same flow uninterrupted from scratch. Both
must end with the same weights.

The backup is taken every epoch (``save_freq="epoch"``). Keras 3's BackupAndRestore with a
batch count (``save_freq=N``) saves mid-epoch but restores only the epoch number: the
resumed run restarts that epoch from its first batch with the mid-epoch weights, training
those batches twice (its ``training_metadata.json`` records the batch; ``_load_model``
ignores it), so no flow, kflows or not, could match an uninterrupted run that way.
"""

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "scripts", "resume.py")
ROOT = os.path.dirname(HERE)

EPOCHS, BATCHES_PER_EPOCH = 3, 8  # as in the script
KILL_AFTER = BATCHES_PER_EPOCH + 5  # the 6th batch of the second epoch
TIMEOUT = 300  # seconds for one process that imports TensorFlow on a busy machine


def run_script(*args):
    # The checkout first, so the child imports this kflows even without an install.
    path = os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": path}
    return subprocess.run(
        [sys.executable, SCRIPT, *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=TIMEOUT,
    )


def weights(path):
    with np.load(path) as archive:
        return [archive[key] for key in sorted(archive.files, key=lambda k: int(k.split("_")[1]))]


def max_difference(a, b):
    return max(
        float(np.max(np.abs(x.astype(np.float64) - y.astype(np.float64))))
        for x, y in zip(a, b, strict=True)
    )


@pytest.mark.slow
def test_training_killed_mid_epoch_resumes_to_the_uninterrupted_weights(tmp_path):
    backup = tmp_path / "backup"
    killed_out, resumed_out = tmp_path / "killed", tmp_path / "resumed"
    killed_out.mkdir()
    resumed_out.mkdir()

    killed = run_script(backup, killed_out, "--kill-after", KILL_AFTER)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert (killed_out / "killed_after").read_text() == str(KILL_AFTER)
    assert not (killed_out / "final.npz").exists()  # it never finished
    metadata = json.loads((backup / "training_metadata.json").read_text())
    assert metadata["epoch"] == 1  # the backup of the first epoch's end, the second unfinished

    resumed = run_script(backup, resumed_out, "--reference", tmp_path / "reference_backup")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    result = json.loads(resumed.stdout.strip().splitlines()[-1])
    # It resumed (two epochs left), it did not start again, and the optimizer state came back.
    assert result["epochs_run"] == EPOCHS - 1
    assert result["reference_epochs_run"] == EPOCHS
    assert result["iterations"] == result["reference_iterations"] == EPOCHS * BATCHES_PER_EPOCH

    # Every variable (ActNorm's initialisation flag included) came back bit for bit.
    restored = weights(resumed_out / "start.npz")
    assert max_difference(restored, weights(killed_out / "epoch0.npz")) == 0.0
    assert max_difference(restored, weights(killed_out / "start.npz")) > 1e-3

    final, reference = weights(resumed_out / "final.npz"), weights(resumed_out / "reference.npz")
    assert max_difference(final, restored) > 1e-3  # it trained after the restore
    for a, b in zip(final, reference, strict=True):
        np.testing.assert_allclose(a.astype(np.float64), b, rtol=1e-6, atol=1e-7)
    assert not backup.exists()  # a finished run removes its backup
