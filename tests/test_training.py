"""Every trainable layer of the registry learns: fit lowers the NLL on two moons."""

import keras
import numpy as np
import pytest
from registry import CIRCULAR, FIXED, LAYERS

import kflows
from kflows import data


@pytest.fixture(scope="module")
def moons():
    # Scaled and shifted, so that element-wise and linear layers have something to learn too.
    return data.two_moons(1024, seed=3) * 2.0 + 1.0


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(set(LAYERS) - FIXED))
def test_fit_lowers_nll_on_two_moons(name, moons):
    keras.utils.set_random_seed(0)
    flow = kflows.Flow([LAYERS[name]("float32", 2), kflows.Reverse(), LAYERS[name]("float32", 2)])
    flow.compile(optimizer=keras.optimizers.Adam(5e-3))
    flow.build((None, 2))
    if name in CIRCULAR:  # maps of the circle learn angles: the moons wrapped onto it
        moons = np.mod(moons + np.pi, 2 * np.pi) - np.pi
    before = flow.evaluate(moons, batch_size=1024, verbose=0, return_dict=True)["loss"]
    history = flow.fit(moons, epochs=4, batch_size=128, verbose=0)
    after = flow.evaluate(moons, batch_size=1024, verbose=0, return_dict=True)["loss"]
    assert np.isfinite(history.history["loss"]).all()
    assert after < before - 0.1, (before, after)
