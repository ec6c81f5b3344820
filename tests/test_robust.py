"""Every builder trains on hostile data without NaN, or stops with the NaN guard's message.

Heavy tails (Neal's funnel, Student-t with 2 degrees of freedom, 1% of rows at 1e4) and
unscaled data (values around 1e3, std 1e2), each with a learning rate ten times too large
(Adam(1e-2) where 1e-3 is the default). A silent NaN fails; finite losses pass, and so does
training stopped by the guard with its message and finite weights.
"""

import tempfile

import keras
import numpy as np
import pytest

import kflows

LEARNING_RATE = 1e-2  # ten times the default Adam(1e-3)


def funnel(rng, n):
    """Neal's funnel: v ~ N(0, 3^2), x | v ~ N(0, exp(v))."""
    v = rng.normal(0.0, 3.0, n)
    return np.column_stack([v, rng.normal(0.0, 1.0, n) * np.exp(v / 2)])


def student_t2(rng, n):
    return rng.standard_t(2.0, (n, 2))


def outliers_1e4(rng, n):
    x = rng.normal(size=(n, 2))
    x[rng.choice(n, max(1, n // 100), replace=False)] = 1e4
    return x


def unscaled(rng, n):
    return rng.normal(1e3, 1e2, (n, 2))


@pytest.fixture(autouse=True)
def _batches_saved_under_tmp_path(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where a guard stop saves


CONDITIONS = {f.__name__: f for f in (funnel, student_t2, outliers_1e4, unscaled)}
SMALL = {"num_layers": 2, "hidden_units": (8,)}
#: Spline flows take one layer: tracing a spline's train step costs seconds per layer, and
#: outside its bound a spline is the identity, so a second one adds no new arithmetic.
BUILDERS = {
    "maf": lambda: kflows.maf(**SMALL),
    "realnvp": lambda: kflows.realnvp(**SMALL),
    "nsf": lambda: kflows.nsf(num_layers=1, hidden_units=(8,), bins=4),
    "nsf_coupling": lambda: kflows.nsf_coupling(num_layers=1, hidden_units=(8,), bins=4),
    "glow": lambda: kflows.glow(**SMALL),
}


def train(flow, x, epochs=2):
    """``"finite"`` or ``"guard"`` (stopped with its message); fails on a silent NaN."""
    try:
        history = flow.fit(x, epochs=epochs, batch_size=128, verbose=0)
    except kflows.NonFiniteError as err:
        assert "Training stopped at batch" in str(err) and err.path in str(err)
        assert all(np.isfinite(w).all() for w in flow.get_weights())
        return "guard"
    losses = history.history["loss"]
    assert np.isfinite(losses).all(), losses
    assert all(np.isfinite(w).all() for w in flow.get_weights())
    assert np.isfinite(flow.log_prob(x[:64]).numpy()).all()
    return "finite"


@pytest.mark.slow
@pytest.mark.parametrize("builder", sorted(BUILDERS))
def test_builder_survives_heavy_tails_unscaled_data_and_a_large_learning_rate(builder):
    keras.utils.set_random_seed(0)
    flow = BUILDERS[builder]()
    flow.build((None, 2))
    optimizer = keras.optimizers.Adam(LEARNING_RATE)
    flow.compile(optimizer=optimizer)
    optimizer.build(flow.trainable_variables)
    start = [w.copy() for w in flow.get_weights()], [v.numpy() for v in optimizer.variables]
    outcomes = {}
    for name, make in CONDITIONS.items():
        # The same fresh start for every condition (and one traced step for them all).
        flow.set_weights(start[0])
        for variable, value in zip(optimizer.variables, start[1], strict=True):
            variable.assign(value)
        x = make(np.random.default_rng(0), 256).astype("float32")
        outcomes[name] = train(flow, x)
    assert set(outcomes.values()) <= {"finite", "guard"}, outcomes
    assert len(outcomes) == len(CONDITIONS)


@pytest.mark.slow
def test_ffjord_survives_heavy_tails_at_a_large_learning_rate():
    keras.utils.set_random_seed(0)
    flow = kflows.ffjord(hidden_units=(8,), rtol=1e-3, atol=1e-3)
    flow.compile(optimizer=keras.optimizers.Adam(LEARNING_RATE))
    x = student_t2(np.random.default_rng(0), 128).astype("float32")  # one step: ODEs are slow
    assert train(flow, x, epochs=1) in ("finite", "guard")
