"""Shared helpers of the test suite."""

import keras
import numpy as np
import tensorflow as tf
from registry import CIRCULAR, LAYERS, UNIFORM_ANGLES

import kflows


def perturb(model, scale=0.3, seed=0):
    """Moves every trainable weight away from its (identity) initial value."""
    rng = np.random.default_rng(seed)
    for v in model.trainable_variables:
        v.assign(v.numpy() + scale * rng.standard_normal(v.shape).astype(v.dtype))


def make_flow(name, dtype="float32", dim=3, context_dim=None, perturbed=True, seed=0):
    """A built one-layer flow around the registry's layer ``name``, the same on every call."""
    keras.utils.set_random_seed(seed)  # initializers draw from the global seed
    layer = LAYERS[name](dtype, dim)
    base = kflows.Fixed(UNIFORM_ANGLES) if name in CIRCULAR else None  # density on the torus
    flow = kflows.Flow([layer], base=base, context_dim=context_dim, dtype=dtype)
    flow.build((None, dim))
    if perturbed:
        perturb(flow, seed=seed)
    if flow.needs_data_init:
        x, c = data(dtype, dim, context_dim, n=64, seed=seed + 1)
        flow.initialize(x, c)
    return flow, layer


def data(dtype, dim, context_dim=None, n=16, seed=1):
    """Normal data in ``dtype``; a mixed policy's data is in its variable dtype (float32)."""
    dtype = keras.dtype_policies.get(dtype).variable_dtype
    rng = np.random.default_rng(seed)
    x = tf.constant(rng.standard_normal((n, dim)), dtype=dtype)
    c = None if context_dim is None else tf.constant(rng.standard_normal((n, context_dim)), dtype)
    return x, c
