"""The fixed-step numerical inverse that the one-way transforms share."""

import numpy as np
import pytest
import tensorflow as tf

from kflows.bijectors.root import invert_increasing


@pytest.mark.parametrize("dtype, tol", [(tf.float32, 1e-5), (tf.float64, 1e-12)])
def test_inverts_to_the_dtype_precision(dtype, tol):
    y = tf.constant([-1e6, -30.0, -1.0, 0.0, 1e-3, 2.5, 700.0, 1e6], dtype)
    x = invert_increasing(lambda t: t + t**3, y)
    np.testing.assert_allclose(x + x**3, y, rtol=tol, atol=tol)


def test_gradients_are_the_implicit_ones():
    # f(x) = a * sinh(x) + b: x = asinh((y - b) / a), differentiated by hand.
    a = tf.Variable(1.7, dtype=tf.float64)
    b = tf.Variable(-0.3, dtype=tf.float64)
    y = tf.constant([-4.0, 0.2, 3.0], tf.float64)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(y)
        x = invert_increasing(lambda t: a * tf.sinh(t) + b, y)
        expected = tf.asinh((y - b) / a)
    for source in (a, b, y):
        np.testing.assert_allclose(
            tape.gradient(x, source), tape.gradient(expected, source), rtol=1e-9
        )


def test_non_finite_values_come_back_as_they_came():
    y = tf.constant([np.nan, np.inf, -np.inf, 1.0])
    x = invert_increasing(lambda t: 2.0 * t, y).numpy()
    assert np.isnan(x[0]) and x[1] == np.inf and x[2] == -np.inf and x[3] == pytest.approx(0.5)


def test_runs_under_xla_with_broadcast_parameters():
    scale = tf.constant([[1.0], [3.0]])

    @tf.function(jit_compile=True)
    def inverse(y):
        return invert_increasing(lambda t: scale * (t + tf.tanh(t)), y)

    y = tf.constant([[0.5, -2.0], [9.0, 0.1]])
    x = inverse(y)
    np.testing.assert_allclose(scale * (x + tf.tanh(x)), y, rtol=1e-5, atol=1e-6)


def test_a_zero_or_infinite_slope_falls_back_to_the_bisection_midpoint():
    y = tf.constant([0.3, -2.0])
    for slope in (lambda t: 0.0 * t, lambda t: np.inf + 0.0 * t):
        x = invert_increasing(lambda t: t, y, derivative=slope)
        np.testing.assert_allclose(x, y, atol=1e-6)
