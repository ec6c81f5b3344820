"""Numerical inverses of increasing element-wise maps, in a fixed number of steps.

Several transforms (deep sigmoidal, monotonic networks, polynomials, Gaussianization, the
radial and planar flows along one direction) are explicit one way only. Their other
direction is a root search: find ``x`` with ``f(x) = y`` for an increasing ``f``. The search
here runs a fixed number of steps (graph mode, XLA, no data-dependent loop counts):

1. **Bracket**: from ``[-1, 1]``, each end doubles away from zero until it passes ``y``
   (``bracket_steps`` doublings reach ``2**bracket_steps``).
2. **Bisection**: ``steps`` halvings of the bracket.
3. **Newton**: one step from the bisection's midpoint, written so that autodiff gives the
   implicit-function gradient ``dx = (dy - df_theta) / f'(x)``: the loop above carries no
   gradient, and the Newton step on its stopped result carries the exact first-order one.

``y`` that is NaN gives NaN; ``y = +-inf`` gives ``+-inf`` (for an ``f`` onto the real line).
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf

#: Bisection steps per dtype: enough to shrink a bracket of width 2**10 below the dtype's
#: resolution near one, before the final Newton step.
DEFAULT_STEPS = {tf.float16: 24, tf.bfloat16: 20, tf.float32: 40, tf.float64: 70}


def invert_increasing(
    fn: Callable[[tf.Tensor], tf.Tensor],
    y: tf.Tensor,
    derivative: Callable[[tf.Tensor], tf.Tensor] | None = None,
    steps: int | None = None,
    bracket_steps: int = 40,
) -> tf.Tensor:
    """``x`` with ``fn(x) = y``, element-wise, for an increasing ``fn`` onto the real line.

    Args:
        fn: an element-wise, strictly increasing map (it may close over parameters that
            broadcast against ``y``); called on tensors of ``y``'s shape.
        y: the values to invert.
        derivative: ``fn``'s derivative (element-wise); by default from autodiff.
        steps: bisection steps (default: :data:`DEFAULT_STEPS` for ``y``'s dtype).
        bracket_steps: doublings of each end of the initial bracket ``[-1, 1]``.

    Returns:
        ``x`` of ``y``'s shape and dtype; gradients flow to ``y`` and to whatever ``fn``
        closes over, as the implicit function theorem gives them.
    """
    y = tf.convert_to_tensor(y)
    if steps is None:
        steps = DEFAULT_STEPS.get(y.dtype, 40)
    target = tf.stop_gradient(y)

    def stopped(x):
        return tf.stop_gradient(fn(x))

    one = tf.ones_like(target)

    def widen(_, low, high):
        low = tf.where(stopped(low) > target, 2.0 * low, low)
        high = tf.where(stopped(high) < target, 2.0 * high, high)
        return _ + 1, low, high

    _, low, high = tf.while_loop(
        lambda i, *_: i < bracket_steps, widen, (tf.constant(0), -one, one)
    )

    def halve(_, low, high):
        mid = 0.5 * (low + high)
        below = stopped(mid) < target
        return _ + 1, tf.where(below, mid, low), tf.where(below, high, mid)

    _, low, high = tf.while_loop(lambda i, *_: i < steps, halve, (tf.constant(0), low, high))
    x0 = tf.stop_gradient(0.5 * (low + high))

    if derivative is None:
        with tf.GradientTape() as tape:
            tape.watch(x0)
            value = fn(x0)
        slope = tf.stop_gradient(tape.gradient(value, x0))
    else:
        value = fn(x0)
        slope = tf.stop_gradient(derivative(x0))
    # Newton from x0: its value refines x0; its gradient is the implicit one, since only
    # ``value`` (through what fn closes over) and ``y`` carry gradients here.
    # A zero or non-finite slope (a flat piece, an underflow) would make the step inf or
    # NaN: such elements take the midpoint, with no gradient rather than a NaN one.
    usable = tf.math.is_finite(slope) & (slope > 0)
    step = (value - y) / tf.where(usable, slope, tf.ones_like(slope))
    x = x0 - step
    # A step that leaves the bracket falls back to the midpoint, keeping the step's
    # (implicit) gradient; an unusable slope falls back to the midpoint alone.
    midpoint = tf.where(usable, x0 - (step - tf.stop_gradient(step)), x0)
    x = tf.where(usable & (x >= low) & (x <= high), x, midpoint)
    x = tf.where(tf.math.is_inf(y), y, x)
    return tf.where(tf.math.is_nan(y), y, x)
