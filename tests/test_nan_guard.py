"""The NaN guard of Flow.fit: a non-finite step is never applied, and the error says why."""

import os
import tempfile

import keras
import numpy as np
import pytest
import tensorflow as tf

import kflows


def tiny(**kwargs):
    return kflows.maf(num_layers=1, hidden_units=(8,), **kwargs)


def moons_with_overflow(batch, bad_batch, n=256):
    """Two moons whose batch ``bad_batch`` holds rows so far out that the NLL overflows."""
    x = kflows.data.two_moons(n, seed=0)
    x[bad_batch * batch + 3 : bad_batch * batch + 5] = 1e20
    return x


class Snapshots(keras.callbacks.Callback):
    """Every weight and optimizer variable before each batch of the first epoch."""

    def __init__(self):
        super().__init__()
        self.before = []

    def on_train_batch_begin(self, batch, logs=None):
        if len(self.before) == batch:
            state = [*self.model.weights, *self.model.optimizer.variables]
            self.before.append([np.array(v.numpy()) for v in state])

    def now(self):
        return [np.array(v.numpy()) for v in [*self.model.weights, *self.model.optimizer.variables]]


def assert_same(a, b):
    assert len(a) == len(b)
    for u, v in zip(a, b, strict=True):
        np.testing.assert_array_equal(u, v)


@pytest.mark.slow
def test_adam_10_on_two_moons_stops_with_finite_weights_from_before_the_bad_step(tmp_path):
    # Without the guard this run trains every remaining epoch on NaN weights, silently.
    keras.utils.set_random_seed(0)
    x = kflows.data.two_moons(512, seed=0)
    flow = kflows.realnvp()
    flow.compile(optimizer=keras.optimizers.Adam(10.0))
    snapshots = Snapshots()
    with pytest.raises(kflows.NonFiniteError) as info:
        flow.fit(x, epochs=5, batch_size=128, verbose=0, callbacks=[snapshots], nan_guard=tmp_path)
    err = info.value
    message = str(err)
    assert f"batch {err.batch} of epoch {err.epoch}" in message
    assert err.path in message and os.path.dirname(err.path) == str(tmp_path)
    assert "not applied" in message and "nan_guard=False" in message
    assert err.epoch == 0 and len(err.history.history["loss"]) == 1  # no epoch after it
    now = snapshots.now()
    assert all(np.isfinite(v).all() for v in now)
    assert_same(now, snapshots.before[err.batch])  # the state from before the bad step
    assert err.batch >= 1  # the steps before it were applied
    assert any(not np.array_equal(a, b) for a, b in zip(now, snapshots.before[0], strict=True))
    assert np.load(err.path)["x"].shape == (128, 2)
    assert err.report is not None and err.report.first_non_finite is not None
    assert str(err.report.first_non_finite) in message


def test_the_bad_batch_is_named_saved_and_never_overwrites(tmp_path):
    x = moons_with_overflow(batch=32, bad_batch=2)
    flow = tiny()
    flow.compile()
    snapshots = Snapshots()
    with pytest.raises(kflows.NonFiniteError, match="batch 2 of epoch 0") as info:
        flow.fit(x, epochs=3, batch_size=32, shuffle=False, verbose=0, callbacks=[snapshots],
                 nan_guard=str(tmp_path))  # fmt: skip
    err = info.value
    assert (err.epoch, err.batch) == (0, 2)
    assert "got loss=inf" in str(err)
    saved = np.load(err.path)
    assert sorted(saved.files) == ["x"]
    np.testing.assert_array_equal(saved["x"], x[64:96])
    assert_same(snapshots.now(), snapshots.before[2])
    # Again in the same directory, with larger batches (the buffer grows to hold them): a
    # new file, the first one untouched.
    first = open(err.path, "rb").read()
    x = moons_with_overflow(batch=48, bad_batch=1, n=96)
    with pytest.raises(kflows.NonFiniteError) as again:
        flow.fit(x, epochs=1, batch_size=48, shuffle=False, verbose=0, nan_guard=str(tmp_path))
    assert again.value.path != err.path
    np.testing.assert_array_equal(np.load(again.value.path)["x"], x[48:96])
    assert open(err.path, "rb").read() == first
    assert len(os.listdir(tmp_path)) == 2


def test_the_layer_that_made_the_first_nan_is_named(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where new temp dirs go
    # LULinear's inverse divides by exp(-85) ~ 1e-37: a row of size 1e3 overflows there.
    flow = kflows.Flow([kflows.Coupling(conditioner={"hidden_units": (8,)}), kflows.LULinear()])
    flow.build((None, 2))
    flow.flow_layers[1].lower_upper.assign(np.diag([-85.0, 0.0]).astype("float32"))
    x = np.full((64, 2), 1e-20, np.float32)
    x[40] = 1e3
    flow.compile(optimizer=keras.optimizers.SGD(0.0))
    with pytest.raises(kflows.NonFiniteError) as info:
        flow.fit(x, batch_size=64, verbose=0)
    found = info.value.report.first_non_finite
    assert (found.stage, found.index, found.count) == ("value", 1, 1)
    name = flow.flow_layers[1].name
    assert f"layer 1 {name!r} (LULinear): NaN or inf in its output" in str(info.value)
    # By default the batch goes to a new temporary directory.
    directory = os.path.dirname(info.value.path)
    assert os.path.dirname(directory) == str(tmp_path)
    assert os.path.basename(directory).startswith("kflows-nonfinite-")


def test_guard_off_trains_on_as_keras_does():
    x = moons_with_overflow(batch=32, bad_batch=1)
    flow = tiny()
    flow.compile()
    history = flow.fit(x, epochs=2, batch_size=32, shuffle=False, verbose=0, nan_guard=False)
    assert len(history.history["loss"]) == 2
    assert not np.isfinite(history.history["loss"]).any()


def test_batch_norm_statistics_moved_by_the_bad_step_are_restored():
    x = moons_with_overflow(batch=32, bad_batch=1)
    flow = kflows.Flow([kflows.Coupling(conditioner={"hidden_units": (8,)}), kflows.BatchNorm()])
    flow.compile()
    snapshots = Snapshots()
    with pytest.raises(kflows.NonFiniteError):
        flow.fit(x, batch_size=32, shuffle=False, verbose=0, callbacks=[snapshots])
    layer = flow.flow_layers[1]
    assert np.isfinite(layer.moving_variance.numpy()).all()
    assert_same(snapshots.now(), snapshots.before[1])


def test_context_and_sample_weights_are_saved_with_the_batch(tmp_path):
    x = moons_with_overflow(batch=16, bad_batch=1, n=64)
    context = np.arange(64, dtype=np.float32)[:, None]
    weights = np.linspace(0.5, 1.5, 64).astype(np.float32)
    flow = tiny(context_dim=1)
    flow.compile()
    dataset = tf.data.Dataset.from_tensor_slices(
        {"x": x, "context": context, "sample_weight": weights}
    ).batch(16)
    with pytest.raises(kflows.NonFiniteError, match="batch 1 of epoch 0") as info:
        flow.fit(dataset, epochs=2, verbose=0, nan_guard=tmp_path)
    saved = np.load(info.value.path)
    assert sorted(saved.files) == ["context", "sample_weight", "x"]
    np.testing.assert_array_equal(saved["x"], x[16:32])
    np.testing.assert_array_equal(saved["context"], context[16:32])
    np.testing.assert_array_equal(saved["sample_weight"], weights[16:32])


def test_loss_scaling_skips_its_own_steps_without_tripping_the_guard():
    # A loss scale so large that the scaled gradients overflow (data of size 20 gives
    # gradients of that size): the LossScaleOptimizer skips those steps and halves its scale
    # by design; the (unscaled) loss stays finite, so the guard lets it be.
    flow = tiny()
    optimizer = keras.optimizers.LossScaleOptimizer(
        keras.optimizers.Adam(1e-2), initial_scale=2.0**127
    )
    flow.compile(optimizer=optimizer)
    x = kflows.data.two_moons(256) * 20.0
    history = flow.fit(x, epochs=2, batch_size=32, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert float(optimizer.dynamic_scale.numpy()) < 2.0**120  # it did skip steps
    assert int(optimizer.iterations.numpy()) > 0  # and then applied some


@pytest.mark.slow
def test_guard_works_under_xla():
    x = moons_with_overflow(batch=32, bad_batch=3)
    flow = tiny()
    flow.compile(jit_compile=True)
    snapshots = Snapshots()
    with pytest.raises(kflows.NonFiniteError, match="batch 3 of epoch 0") as info:
        flow.fit(x, batch_size=32, shuffle=False, verbose=0, callbacks=[snapshots])
    np.testing.assert_array_equal(np.load(info.value.path)["x"], x[96:128])
    assert_same(snapshots.now(), snapshots.before[3])


@pytest.mark.parametrize("option", [1, 0.0, None, ["dir"]])
def test_nan_guard_option_is_checked(option):
    flow = tiny()
    flow.compile()
    with pytest.raises(TypeError, match="Expected nan_guard=True, False or a directory"):
        flow.fit(kflows.data.two_moons(32), verbose=0, nan_guard=option)


def test_guard_state_is_not_saved_with_the_flow(tmp_path):
    flow = tiny()
    flow.compile()
    flow.fit(kflows.data.two_moons(64), batch_size=32, verbose=0)
    names = {v.name for v in flow.variables}
    path = tf.train.Checkpoint(flow=flow).write(str(tmp_path / "ckpt"))
    saved = [name for name, _ in tf.train.list_variables(path)]
    assert not any("tripped" in n or "bad_" in n for n in saved)
    assert not any("tripped" in n for n in names)
