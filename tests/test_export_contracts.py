"""Export contracts: versions claimed atomically across processes, dead writers' staging
directories removed, int64 versions, and NaN/inf rows in the exported ``log_prob``."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import perturb
from test_export import small_flow

import kflows
from kflows.serving import LOCK_FILE, MAX_VERSION

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir))
TIMEOUT = 480  # seconds for a subprocess that imports TensorFlow on a busy machine

#: Builds a tiny MAF with weights set by ``seed``, waits for ``go`` and exports it.
#: Modes: ``race`` exports with version=None then version=42 and prints the results as JSON;
#: ``hang`` touches ``go`` itself and stops for good inside the export, its SavedModel written.
EXPORTER = textwrap.dedent(
    """
    import json, os, sys, time
    import numpy as np
    import kflows

    mode, base, seed, ready, go = sys.argv[1:6]
    flow = kflows.maf(num_layers=1, hidden_units=(4,))
    flow.build((None, 2))
    rng = np.random.default_rng(int(seed))
    for v in flow.trainable_variables:
        v.assign(v.numpy() + 0.3 * rng.standard_normal(v.shape).astype(v.dtype))
    x = np.array([[0.5, -0.5], [1.0, 2.0]], np.float32)
    expected = flow.log_prob(x).numpy().tolist()
    if mode == "hang":
        def hang(*args, **kwargs):
            open(ready, "w").close()
            time.sleep(3600)
        sys.modules["kflows.serving"].write_warmup = hang
        kflows.export(flow, base, warmup=True)
        raise SystemExit("the export should have hung")
    open(ready, "w").close()
    deadline = time.monotonic() + 400
    while not os.path.exists(go):
        if time.monotonic() > deadline:
            raise SystemExit("never told to go")
        time.sleep(0.02)
    results = []
    for version in (None, 42):
        try:
            results.append(kflows.export(flow, base, version=version, warmup=False))
        except FileExistsError as err:
            results.append(f"FileExistsError: {err}")
    print(json.dumps({"expected": expected, "results": results}))
    """
)
X = np.array([[0.5, -0.5], [1.0, 2.0]], np.float32)


def start_exporter(tmp_path, mode, base, seed):
    script = tmp_path / "exporter.py"
    script.write_text(EXPORTER)
    ready = tmp_path / f"ready-{seed}"
    proc = subprocess.Popen(
        [sys.executable, str(script), mode, str(base), str(seed), str(ready), str(tmp_path / "go")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": ROOT},
    )
    return proc, ready


def wait_for(paths, procs, timeout=TIMEOUT):
    deadline = time.monotonic() + timeout
    while not all(os.path.exists(p) for p in paths):
        for proc in procs:
            if proc.poll() is not None:
                out, err = proc.communicate()
                pytest.fail(f"exporter exited with {proc.returncode}: {out[-2000:]}{err[-2000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {paths}")
        time.sleep(0.05)


def kill(procs):
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def loaded_log_prob(path, x=X):
    return tf.saved_model.load(path).signatures["log_prob"](x=tf.constant(x))["log_prob"].numpy()


def listing(base):
    return sorted(os.listdir(base))


# ---------------------------------------------------------------------- concurrent writers
@pytest.mark.slow
def test_concurrent_exports_get_distinct_versions_and_one_explicit_winner(tmp_path):
    base = tmp_path / "model"
    started = [start_exporter(tmp_path, "race", base, seed) for seed in range(4)]
    procs, readies = [p for p, _ in started], [r for _, r in started]
    try:
        wait_for(readies, procs)
        (tmp_path / "go").touch()  # all four export at once
        outputs = [proc.communicate(timeout=TIMEOUT) for proc in procs]
    finally:
        kill(procs)
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, out[-2000:] + err[-2000:]
    reports = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]

    # version=None: four distinct versions, each holding the model of the process that got it.
    auto = [r["results"][0] for r in reports]
    assert sorted(auto) == [str(base / str(v)) for v in (1, 2, 3, 4)]
    for report, path in zip(reports, auto, strict=True):
        np.testing.assert_allclose(loaded_log_prob(path), report["expected"], rtol=1e-5)

    # The same explicit version: one process gets it, the others a FileExistsError.
    explicit = [r["results"][1] for r in reports]
    winners = [i for i, result in enumerate(explicit) if result == str(base / "42")]
    assert len(winners) == 1, explicit
    losers = [r for i, r in enumerate(explicit) if i != winners[0]]
    assert all(r.startswith("FileExistsError") and "overwrite=True" in r for r in losers)
    np.testing.assert_allclose(
        loaded_log_prob(str(base / "42")), reports[winners[0]]["expected"], rtol=1e-5
    )
    assert listing(base) == [LOCK_FILE, "1", "2", "3", "4", "42"]


# ---------------------------------------------------------------------- dead writers
@pytest.mark.slow
def test_killed_exports_staging_is_removed_by_the_next_export_a_live_ones_kept(tmp_path):
    base = tmp_path / "model"
    base.mkdir()
    # What older kflows left behind when killed: staging and replaced versions, no lock file.
    (base / ".tmp-3-abcd1234").mkdir()
    (base / ".tmp-3-abcd1234" / "saved_model.pb").write_bytes(b"partial")
    (base / ".old-efgh5678" / "version").mkdir(parents=True)
    (base / ".tmp-orphan.lock").touch()  # a lock file whose writer died before its mkdir

    before = set(listing(base))
    proc, ready = start_exporter(tmp_path, "hang", base, seed=0)
    try:
        wait_for([ready], [proc])
        (live,) = [n for n in set(listing(base)) - before if os.path.isdir(base / n)]
        assert os.path.exists(base / live / "saved_model.pb")  # written, not yet published

        flow = small_flow()
        assert kflows.export(flow, base, warmup=False) == str(base / "1")
        # The live writer's staging and lock are kept; the dead writers' entries are gone.
        assert listing(base) == sorted([LOCK_FILE, "1", live, f"{live}.lock"])

        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        kill([proc])
    assert kflows.export(flow, base, warmup=False) == str(base / "2")
    assert listing(base) == [LOCK_FILE, "1", "2"]
    np.testing.assert_allclose(loaded_log_prob(str(base / "2")), flow.log_prob(X), rtol=1e-5)


LOCK_HOLDER = textwrap.dedent(
    """
    import fcntl, sys
    with open(sys.argv[1], "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        print("locked", flush=True)
        sys.stdin.read()  # holds the lock until stdin closes
    """
)


def test_staging_whose_lock_is_held_is_kept_and_free_ones_removed(tmp_path):
    base = tmp_path / "model"
    for name in (".tmp-live", ".tmp-dead", ".old-dead"):
        (base / name).mkdir(parents=True)
        (base / name / "saved_model.pb").write_bytes(b"partial")
    (base / ".tmp-dead.lock").touch()
    holder = subprocess.Popen(
        [sys.executable, "-c", LOCK_HOLDER, str(base / ".tmp-live.lock")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert kflows.export(small_flow(), base, warmup=False) == str(base / "1")
        assert listing(base) == [LOCK_FILE, ".tmp-live", ".tmp-live.lock", "1"]
    finally:
        holder.communicate(input="", timeout=60)  # closing stdin releases the lock
    assert kflows.export(small_flow(), base, warmup=False) == str(base / "2")
    assert listing(base) == [LOCK_FILE, "1", "2"]


# ---------------------------------------------------------------------- int64 versions
def test_versions_outside_int64_are_refused_naming_the_limit(tmp_path):
    flow = small_flow()
    assert MAX_VERSION == 2**63 - 1
    for bad in (2**70, 2**63, np.uint64(2**64 - 1), -1, True, False, 3.0, 2.5, "2"):
        with pytest.raises(ValueError, match=r"integer in \[0, 2\*\*63 - 1\].*int64.*got"):
            kflows.export(flow, tmp_path, version=bad, warmup=False)
    assert listing(tmp_path) == []  # refused before anything was written
    path = kflows.export(flow, tmp_path, version=np.int64(MAX_VERSION), warmup=False)
    assert path == str(tmp_path / str(MAX_VERSION))


def test_next_version_ignores_names_beyond_int64_and_refuses_to_overflow(tmp_path):
    flow = small_flow()
    base = tmp_path / "model"
    (base / "3").mkdir(parents=True)
    (base / str(2**64)).mkdir()  # not a version TF Serving can load
    assert kflows.export(flow, base, warmup=False) == str(base / "4")

    (base / str(MAX_VERSION)).mkdir()
    with pytest.raises(ValueError, match=r"2\*\*63 - 1.*int64.*got version 9223372036854775807"):
        kflows.export(flow, base, warmup=False)
    # An explicit free version still works.
    assert kflows.export(flow, base, version=5, warmup=False) == str(base / "5")


# ---------------------------------------------------------------------- NaN in, NaN out
def test_exported_log_prob_nan_and_inf_rows(tmp_path):
    keras.utils.set_random_seed(3)
    flow = kflows.maf(num_layers=2, hidden_units=(8, 8), context_dim=1)
    flow.build((None, 2))
    perturb(flow, seed=3)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 2)).astype(np.float32)
    c = rng.standard_normal((8, 1)).astype(np.float32)
    clean = flow.log_prob(x, c).numpy()
    # The context matters (so a lost NaN in it would show as a finite value).
    assert not np.allclose(flow.log_prob(x, c + 1.0), clean)

    bad_x, bad_c = x.copy(), c.copy()
    bad_x[1, 0] = np.nan  # NaN in x -> NaN
    bad_c[2, 0] = np.nan  # NaN in the context -> NaN
    bad_x[3, 1] = np.inf  # inf in x -> -inf
    bad_x[4, 0] = -np.inf
    bad_c[5, 0] = np.inf  # inf in the context -> NaN
    bad_x[6] = [3e38, -3e38]  # finite, but the computation overflows -> -inf
    loaded = tf.saved_model.load(kflows.export(flow, tmp_path / "cmaf", warmup=False))
    for name in ("log_prob", "serving_default"):
        out = loaded.signatures[name](x=tf.constant(bad_x), context=tf.constant(bad_c))
        out = out["log_prob"].numpy()
        assert np.isnan(out[[1, 2, 5]]).all(), out
        assert (out[[3, 4, 6]] == -np.inf).all(), out
        # The other rows are unaffected and equal to the in-process values.
        np.testing.assert_allclose(out[[0, 7]], clean[[0, 7]], rtol=1e-5, atol=1e-6)
    # The same answers as the flow's own guarded log-density, in-process.
    np.testing.assert_allclose(
        flow.log_prob(tf.constant(bad_x), tf.constant(bad_c)).numpy(), out, rtol=1e-5
    )
