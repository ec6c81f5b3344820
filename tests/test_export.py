"""SavedModel export: signatures, fidelity over the registry, versions, errors, serving."""

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import data, make_flow, perturb
from registry import LAYERS

import kflows
from kflows.serving import LOCK_FILE, WARMUP_FILE

DIM, CONTEXT_DIM, CONTEXT_ROWS = 3, 2, 4
#: Layers that solve an ODE each way (see test_exported_log_prob_matches_in_process).
ODE = {"ffjord"}
NUM_SAMPLES, SEED = 5, (7, 11)
#: Every registry layer in a one-layer flow, without and with a context.
CASES = [(name, ctx) for name in sorted(LAYERS) for ctx in (None, CONTEXT_DIM)]
SIGNATURES = {"log_prob", "sample", "sample_and_log_prob", "serving_default"}
README = os.path.join(os.path.dirname(__file__), os.pardir, "README.md")


def case_id(case):
    name, ctx = case
    return f"{name}-{'context' if ctx else 'plain'}"


def close(actual, expected):
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """``exported(case) -> (flow, version_dir)``, exporting each case once per test run.

    Exporting (tracing four signatures) is what costs here, and ``make_flow`` builds the
    same flow in every process: so pytest-xdist's workers share one folder of exports in
    this run's base temporary folder. Each export is written to a private folder and
    renamed into place; a worker that finds a case there rebuilds its flow and reuses it.
    """
    worker = os.environ.get("PYTEST_XDIST_WORKER")  # None outside pytest-xdist
    base = tmp_path_factory.getbasetemp()
    root = (base if worker is None else base.parent) / "shared_exports"
    root.mkdir(exist_ok=True)
    cache = {}

    def get(case):
        if case not in cache:
            name, ctx = case
            flow, _ = make_flow(name, dim=DIM, context_dim=ctx)
            final = root / case_id(case)
            if not final.exists():
                private = root / f"{case_id(case)}.{worker}.partial"
                kflows.export(flow, private, warmup=False)
                try:
                    os.rename(private, final)
                except OSError:  # another worker published the same case first
                    shutil.rmtree(private)
            (version,) = [p for p in final.iterdir() if p.name.isdigit()]
            cache[case] = flow, str(version)
        return cache[case]

    return get


@pytest.fixture(scope="module")
def loaded(exported):
    """``loaded(case) -> (flow, tf.saved_model.load of its export)``, loaded once per case."""
    cache = {}

    def get(case):
        if case not in cache:
            flow, path = exported(case)
            cache[case] = flow, tf.saved_model.load(path)
        return cache[case]

    return get


def sample_inputs(flow):
    """Inputs of the sampling signatures, and the context passed in-process."""
    inputs = {"num_samples": tf.constant(NUM_SAMPLES), "seed": tf.constant(SEED)}
    if flow.context_dim is None:
        return inputs, None
    context = data("float32", DIM, CONTEXT_DIM, n=CONTEXT_ROWS, seed=5)[1]
    return {**inputs, "context": context}, context


def log_prob_inputs(flow, n):
    x, context = data("float32", DIM, flow.context_dim, n=n, seed=n)
    return ({"x": x} if context is None else {"x": x, "context": context}), context


# ---------------------------------------------------------------------- fidelity
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_exported_log_prob_matches_in_process(case, loaded):
    flow, saved = loaded(case)
    assert set(saved.signatures) == SIGNATURES
    # A large batch as well, but an ODE solve of 4,096 rows costs tens of seconds.
    for n in (1, 7, 256 if case[0] in ODE else 4096):
        inputs, context = log_prob_inputs(flow, n)
        expected = flow.log_prob(inputs["x"], context)
        for name in ("log_prob", "serving_default"):
            out = saved.signatures[name](**inputs)
            assert set(out) == {"log_prob"} and out["log_prob"].shape == (n,)
            close(out["log_prob"], expected)


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_same_seed_same_samples_in_process_after_reload_and_exported(case, loaded, tmp_path):
    flow, saved = loaded(case)
    inputs, context = sample_inputs(flow)
    expected = flow.sample(NUM_SAMPLES, context, seed=list(SEED))
    batch = () if context is None else (CONTEXT_ROWS,)
    assert expected.shape == (NUM_SAMPLES, *batch, DIM)

    flow.save(tmp_path / "flow.keras")
    reloaded = keras.models.load_model(tmp_path / "flow.keras")
    close(reloaded.sample(NUM_SAMPLES, context, seed=list(SEED)), expected)

    close(saved.signatures["sample"](**inputs)["samples"], expected)
    out = saved.signatures["sample_and_log_prob"](**inputs)
    samples, log_prob = flow.sample_and_log_prob(NUM_SAMPLES, context, seed=list(SEED))
    close(out["samples"], samples)
    close(out["log_prob"], log_prob)
    assert out["log_prob"].shape == (NUM_SAMPLES, *batch)
    # An int seed s in-process is the stateless seed [0, s].
    zero_s = saved.signatures["sample"](**{**inputs, "seed": tf.constant([0, 3])})
    close(zero_s["samples"], flow.sample(NUM_SAMPLES, context, seed=3))
    # The seed drives the draws: another seed, other samples.
    other = saved.signatures["sample"](**{**inputs, "seed": tf.constant([8, 11])})
    assert not np.allclose(other["samples"], expected)


def test_signature_inputs_and_outputs_are_named_and_shaped(exported):
    for ctx in (None, CONTEXT_DIM):
        _, path = exported(("maf_affine", ctx))
        sigs = tf.saved_model.load(path).signatures
        context = {} if ctx is None else {"context": ((None, ctx), tf.float32)}
        draws = {"num_samples": ((), tf.int32), "seed": ((2,), tf.int32), **context}
        expected_inputs = {
            "log_prob": {"x": ((None, DIM), tf.float32), **context},
            "serving_default": {"x": ((None, DIM), tf.float32), **context},
            "sample": draws,
            "sample_and_log_prob": draws,
        }
        for name, expected in expected_inputs.items():
            specs = sigs[name].structured_input_signature[1]
            assert {k: (tuple(s.shape), s.dtype) for k, s in specs.items()} == expected
        assert set(sigs["sample"].structured_outputs) == {"samples"}
        assert set(sigs["sample_and_log_prob"].structured_outputs) == {"samples", "log_prob"}
        assert set(sigs["log_prob"].structured_outputs) == {"log_prob"}


# ---------------------------------------------------------------------- errors
def expect_error(fn, *fragments):
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
        fn()
    for fragment in fragments:
        assert fragment in str(info.value)


def test_signature_boundary_errors(exported):
    _, path = exported(("maf_affine", CONTEXT_DIM))
    sigs = tf.saved_model.load(path).signatures
    log_prob, sample = sigs["log_prob"], sigs["sample"]
    c = tf.zeros([4, CONTEXT_DIM])
    expect_error(lambda: log_prob(x=tf.zeros([4, 2]), context=c), "x must have D=3 features")
    expect_error(
        lambda: log_prob(x=tf.zeros([4, DIM]), context=tf.zeros([4, 5])),
        "context must have C=2 features",
    )
    expect_error(
        lambda: log_prob(x=tf.zeros([5, DIM]), context=c),
        "x and context must have the same number of rows",
    )
    expect_error(lambda: log_prob(x=tf.zeros([DIM]), context=c), "Shape of tensor x [3]")
    # The signature's dtype refuses other dtypes and says which it expected.
    expect_error(lambda: log_prob(x=tf.zeros([4, DIM], tf.float64), context=c), "float", "double")
    expect_error(lambda: log_prob(x=tf.zeros([4, DIM], tf.int32), context=c), "float", "int32")
    draws = {"seed": tf.constant([1, 2]), "context": c}
    expect_error(lambda: sample(num_samples=tf.constant(-1), **draws), "num_samples must be >= 0")
    expect_error(lambda: sample(num_samples=tf.constant(2, tf.int64), **draws), "int32", "int64")
    with pytest.raises(TypeError, match="context"):
        log_prob(x=tf.zeros([4, DIM]))
    # Edge cases that are not errors: empty batches, zero samples, a NaN row (NaN out).
    assert sample(num_samples=tf.constant(0), **draws)["samples"].shape == (0, 4, DIM)
    assert log_prob(x=tf.zeros([0, DIM]), context=c[:0])["log_prob"].shape == (0,)
    x = tf.constant([[np.nan, 0.0, 0.0], [0.0, 0.0, 0.0]])
    out = log_prob(x=x, context=c[:2])["log_prob"].numpy()
    assert np.isnan(out[0]) and np.isfinite(out[1])


def test_export_argument_errors(tmp_path):
    with pytest.raises(TypeError, match="kflows.Flow"):
        kflows.export(keras.Sequential([]), tmp_path)
    with pytest.raises(ValueError, match="not built"):
        kflows.export(kflows.Flow([kflows.Reverse()]), tmp_path)
    flow, _ = make_flow("reverse", dim=2)
    for bad in (-1, 1.5, "2", True):
        with pytest.raises(ValueError, match="version"):
            kflows.export(flow, tmp_path, version=bad, warmup=False)


# ---------------------------------------------------------------------- layout
def small_flow(context_dim=None, seed=0):
    """A cheap 2-D flow (one coupling layer: quick to trace) with non-trivial weights."""
    flow = kflows.Flow(
        [kflows.Coupling(conditioner={"hidden_units": (8,)})], context_dim=context_dim
    )
    flow.build((None, 2))
    perturb(flow, seed=seed)
    return flow


def test_versions_are_numbered_refused_and_overwritten_atomically(tmp_path, monkeypatch):
    base = tmp_path / "model"
    flow = small_flow()
    assert flow.export(base, warmup=False) == str(base / "1")
    assert kflows.export(flow, base, warmup=False) == str(base / "2")
    assert kflows.export(flow, base, version=7, warmup=False) == str(base / "7")
    assert kflows.export(flow, base, warmup=False) == str(base / "8")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        kflows.export(flow, base, version=7, warmup=False)

    other = small_flow(seed=1)
    x = tf.constant([[0.5, -0.5]])
    assert kflows.export(other, base, version=7, overwrite=True, warmup=False) == str(base / "7")
    close(
        tf.saved_model.load(str(base / "7")).signatures["log_prob"](x=x)["log_prob"],
        other.log_prob(x),
    )
    assert not np.allclose(other.log_prob(x), flow.log_prob(x))
    # No temporary directories left; the lock file stays (removing it would break the lock).
    assert sorted(os.listdir(base)) == [LOCK_FILE, "1", "2", "7", "8"]
    assert not os.path.exists(base / "1" / WARMUP_FILE)  # warmup=False

    # A version readable by a server running as another user: mkdir's usual permissions.
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(base / "1").st_mode & 0o777 == 0o777 & ~umask

    # A failure while writing publishes nothing and leaves nothing behind.
    def fail(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(sys.modules["kflows.serving"], "write_warmup", fail)
    with pytest.raises(RuntimeError, match="disk full"):
        kflows.export(flow, base, warmup=True)
    assert sorted(os.listdir(base)) == [LOCK_FILE, "1", "2", "7", "8"]


def test_flow_export_other_formats_go_to_keras(tmp_path):
    with pytest.raises(ValueError, match="format"):
        small_flow().export(tmp_path / "m", format="no-such-format")


def decode_tensor_proto(proto):
    return tf.constant(tf.make_ndarray(proto))


def test_warmup_file_replays_through_every_signature(tmp_path):
    from tensorflow_serving.apis import prediction_log_pb2

    flow = small_flow(context_dim=1)
    path = kflows.export(flow, tmp_path / "cmaf", warmup=True)
    sigs = tf.saved_model.load(path).signatures
    seen = set()
    for record in tf.data.TFRecordDataset(os.path.join(path, WARMUP_FILE)):
        log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        request = log.predict_log.request
        assert request.model_spec.name == "cmaf"
        inputs = {k: decode_tensor_proto(v) for k, v in request.inputs.items()}
        outputs = sigs[request.model_spec.signature_name](**inputs)
        assert all(np.all(np.isfinite(v)) for v in outputs.values())
        seen.add(request.model_spec.signature_name)
    assert seen == {"log_prob", "sample", "sample_and_log_prob"}
    # warmup=None writes it when tensorflow-serving-api is installed (it is in the tests).
    assert os.path.exists(os.path.join(kflows.export(flow, tmp_path / "cmaf"), WARMUP_FILE))


# ---------------------------------------------------------------------- README
def readme_payloads():
    """``(request, response)`` pairs of the JSON blocks in the README's Serving section."""
    text = open(README, encoding="utf-8").read()
    section = text.split("## Serving", 1)[1].split("\n## ", 1)[0]
    blocks = [json.loads(b) for b in re.findall(r"```json\n(.*?)```", section, re.S)]
    return list(zip(blocks[0::2], blocks[1::2], strict=True))


def decode_request(body, signature):
    """Turns a REST ``:predict`` body into tensors as TF Serving does.

    Columnar ``inputs``: one value per named input (or a bare value for a single input).
    Row ``instances``: a list of rows, each a value or ``{name: value}``, stacked on axis 0.
    Values take the signature's dtypes.
    """
    specs = signature.structured_input_signature[1]
    if "inputs" in body:
        values = body["inputs"]
        if not isinstance(values, dict):
            (only,) = specs
            values = {only: values}
    else:
        rows = body["instances"]
        if isinstance(rows[0], dict):
            values = {k: [row[k] for row in rows] for k in rows[0]}
        else:
            (only,) = specs
            values = {only: rows}
    assert set(values) == set(specs)
    return {k: tf.constant(np.asarray(v), dtype=specs[k].dtype) for k, v in values.items()}


def check_response(outputs, documented, columnar):
    outputs = {k: v.numpy() for k, v in outputs.items()}
    if columnar:
        body = documented["outputs"]
        if len(outputs) == 1:  # TF Serving drops the name of a single output
            body = {next(iter(outputs)): body}
        assert set(body) == set(outputs)
        for key, value in outputs.items():
            assert np.shape(body[key]) == value.shape, key
    else:
        rows = documented["predictions"]
        assert len(rows) == len(next(iter(outputs.values())))
        if len(outputs) == 1:
            assert np.shape(rows) == next(iter(outputs.values())).shape
        else:
            assert set(rows[0]) == set(outputs)


def test_readme_payloads_run_through_the_loaded_signatures(tmp_path):
    pairs = readme_payloads()
    assert len(pairs) >= 4
    plain = tf.saved_model.load(kflows.export(small_flow(), tmp_path / "maf", warmup=False))
    conditional = tf.saved_model.load(
        kflows.export(small_flow(context_dim=1), tmp_path / "cmaf", warmup=False)
    )
    documented = set()
    for request, response in pairs:
        uses_context = "context" in json.dumps(request)
        loaded = conditional if uses_context else plain
        name = request.get("signature_name", "serving_default")
        signature = loaded.signatures[name]
        outputs = signature(**decode_request(request, signature))
        check_response(outputs, response, columnar="inputs" in request)
        documented.add((name, uses_context))
    assert {("log_prob", False), ("sample", False), ("sample_and_log_prob", False)} <= documented
    assert {("log_prob", True), ("sample", True)} <= documented


# ---------------------------------------------------------------------- serving without kflows
BLOCKED_RUNNER = textwrap.dedent(
    """
    import json, sys
    import numpy as np

    BLOCKED = ("kflows", "tensorflow_probability", "keras", "tf_keras")
    # None in sys.modules makes `import keras` fail and find_spec("keras") return None,
    # as if the package were not installed (TensorFlow probes for Keras at import).
    for name in BLOCKED:
        sys.modules[name] = None
    import tensorflow as tf

    for name in BLOCKED:
        try:
            __import__(name)
        except ImportError:
            pass
        else:
            raise SystemExit(f"{name} could still be imported")

    cases = json.load(open(sys.argv[1]))
    for case in cases:
        loaded = tf.saved_model.load(case["path"])
        arrays = np.load(case["arrays"])
        for signature, spec in case["calls"].items():
            inputs = {k: tf.constant(arrays[v]) for k, v in spec["inputs"].items()}
            outputs = loaded.signatures[signature](**inputs)
            assert set(outputs) == set(spec["outputs"]), (case["path"], signature)
            for key, ref in spec["outputs"].items():
                np.testing.assert_allclose(
                    outputs[key].numpy(), arrays[ref], rtol=1e-5, atol=1e-6,
                    err_msg=f"{case['path']} {signature} {key}",
                )
    leaked = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED and sys.modules[m])
    if leaked:
        raise SystemExit(f"blocked modules were loaded: {leaked}")
    print(f"OK {len(cases)}")
    """
)


def expected_calls(flow):
    """Inputs and in-process outputs of every signature: ``(arrays, calls)``."""
    lp_inputs, context = log_prob_inputs(flow, 7)
    draws, draw_context = sample_inputs(flow)
    samples, log_prob = flow.sample_and_log_prob(NUM_SAMPLES, draw_context, seed=list(SEED))
    arrays = {
        **{f"lp_{k}": v.numpy() for k, v in lp_inputs.items()},
        **{f"draw_{k}": v.numpy() for k, v in draws.items()},
        "log_prob": flow.log_prob(lp_inputs["x"], context).numpy(),
        "samples": flow.sample(NUM_SAMPLES, draw_context, seed=list(SEED)).numpy(),
        "sl_samples": samples.numpy(),
        "sl_log_prob": log_prob.numpy(),
    }
    density = {"inputs": {k: f"lp_{k}" for k in lp_inputs}, "outputs": {"log_prob": "log_prob"}}
    draw = {k: f"draw_{k}" for k in draws}
    calls = {
        "log_prob": density,
        "serving_default": density,
        "sample": {"inputs": draw, "outputs": {"samples": "samples"}},
        "sample_and_log_prob": {
            "inputs": draw,
            "outputs": {"samples": "sl_samples", "log_prob": "sl_log_prob"},
        },
    }
    return arrays, calls


@pytest.mark.slow
def test_every_export_runs_where_kflows_tfp_and_keras_cannot_be_imported(exported, tmp_path):
    cases = []
    for case in CASES:
        flow, path = exported(case)
        arrays, calls = expected_calls(flow)
        npz = tmp_path / f"{case_id(case)}.npz"
        np.savez(npz, **arrays)
        cases.append({"path": path, "arrays": str(npz), "calls": calls})
    manifest = tmp_path / "cases.json"
    manifest.write_text(json.dumps(cases))
    script = tmp_path / "run_blocked.py"
    script.write_text(BLOCKED_RUNNER)
    # One subprocess for all exports: importing TensorFlow is the slow part.
    result = subprocess.run(
        [sys.executable, str(script), str(manifest)],
        capture_output=True,
        text=True,
        cwd=tmp_path,  # keep the repository (and kflows) off sys.path
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": ""},
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == f"OK {len(CASES)}"


def saved_model_cli(*args, cwd):
    exe = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    return subprocess.Popen(
        [exe, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )


@pytest.mark.slow
def test_saved_model_cli_shows_and_runs_every_signature(exported, tmp_path):
    flow, path = exported(("maf_affine", CONTEXT_DIM))
    arrays, calls = expected_calls(flow)
    for key, value in arrays.items():
        np.save(tmp_path / f"{key}.npy", value)
    procs = {"show": saved_model_cli("show", "--dir", path, "--all", cwd=tmp_path)}
    for signature, spec in calls.items():
        feeds = ";".join(f"{k}={tmp_path / v}.npy" for k, v in spec["inputs"].items())
        procs[signature] = saved_model_cli(
            "run", "--dir", path, "--tag_set", "serve", "--signature_def", signature,
            "--inputs", feeds, "--outdir", str(tmp_path / signature),
            cwd=tmp_path,
        )  # fmt: skip
    # The five processes run side by side: each spends most of its time importing TF.
    results = {name: (p.communicate(timeout=600), p.returncode) for name, p in procs.items()}
    for name, ((out, err), code) in results.items():
        assert code == 0, f"{name}: {out[-2000:]}{err[-2000:]}"
    shown = results["show"][0][0]
    for signature in SIGNATURES:
        assert f"signature_def['{signature}']" in shown
    for name in ("x", "context", "num_samples", "seed", "log_prob", "samples"):
        assert f"['{name}'] tensor_info" in shown
    for signature, spec in calls.items():
        for key, ref in spec["outputs"].items():
            close(np.load(tmp_path / signature / f"{key}.npy"), arrays[ref])
