"""Fixed-step ODE solvers with the ``solve`` method of ``tfp.math.ode`` solvers.

TFP's solvers (``DormandPrince``, ``BDF``) adapt their steps to a tolerance. A fixed-step
solver takes ``num_steps`` equal steps of an explicit Runge-Kutta method, so its cost is
known in advance (``num_steps`` times its stages network passes) whatever the dynamics:
that suits the nearly straight paths of flow matching, and graphs of fixed shape (XLA).
Its error is not controlled: compare with an adaptive solve before trusting a step count.

The solvers are plain TensorFlow (a ``tf.while_loop``), so gradients flow through the
steps by automatic differentiation (memory grows with ``num_steps``), and states may be
nested structures, as ``tfb.FFJORD``'s trace-augmented state ``(x, log_det)`` is.
"""

from __future__ import annotations

import tensorflow as tf
import tensorflow_probability as tfp

from kflows._validate import is_integer

__all__ = ["RK4", "FixedStep", "Midpoint"]


def _add(state, step, slope):
    """``state + step * slope`` for nested states."""
    return tf.nest.map_structure(lambda s, k: s + step * k, state, slope)


def _combine(state, step, slopes, weights):
    """``state + step * sum(w * k)`` for nested states."""

    def one(s, *ks):
        return s + step * tf.add_n([w * k for w, k in zip(weights, ks, strict=True)])

    return tf.nest.map_structure(one, state, *slopes)


class FixedStep:
    """``num_steps`` equal steps of an explicit Runge-Kutta method (subclasses: the method).

    Args:
        num_steps: steps from the initial time to each solution time, an integer >= 1.

    Raises:
        TypeError: ``num_steps`` is not an integer (``2.5``, ``True`` and ``"8"`` are
            refused, never rounded).
        ValueError: ``num_steps`` < 1.

    Example:
        >>> solver = RK4(num_steps=10)
        >>> result = solver.solve(lambda t, y: -y, 0.0, tf.constant([1.0]), [1.0])
        >>> round(float(result.states[-1][0]), 5)  # exp(-1) = 0.36788
        0.36788
    """

    #: Network passes per step.
    stages: int = 1

    def __init__(self, num_steps: int = 32):
        if not is_integer(num_steps):
            raise TypeError(
                f"Expected num_steps as an integer >= 1; got {num_steps!r} "
                f"({type(num_steps).__name__})."
            )
        if num_steps < 1:
            raise ValueError(f"Expected num_steps >= 1; got {num_steps}.")
        self.num_steps = int(num_steps)

    def step(self, ode_fn, time, state, step):
        """One step of size ``step`` from ``(time, state)``; returns the next state."""
        raise NotImplementedError(f"{type(self).__name__} must implement step().")

    def solve(self, ode_fn, initial_time, initial_state, solution_times, constants=None):
        """Integrates ``d state / dt = ode_fn(t, state, **constants)``.

        Args:
            ode_fn: ``(time, state, **constants) -> slope`` with the structure of ``state``.
            initial_time: scalar start time.
            initial_state: a tensor or a nested structure of tensors.
            solution_times: a 1-D sequence or tensor of times (its length known when the
                graph is built); ``num_steps`` steps are taken to reach each from the
                previous one.
            constants: keyword arguments passed to every call of ``ode_fn``.

        Returns:
            ``tfp.math.ode.Results`` whose ``states`` stack the state at each solution time
            along a new first axis (``diagnostics`` and ``solver_internal_state`` are None).
        """
        constants = dict(constants or {})
        dtype = tf.nest.flatten(initial_state)[0].dtype
        times = tf.convert_to_tensor(solution_times, dtype=dtype)
        if times.shape.rank != 1 or times.shape[0] is None:
            raise ValueError(
                "Expected solution_times as a 1-D sequence of known length; got shape "
                f"{times.shape}."
            )

        def fn(time, state):
            return ode_fn(time, state, **constants)

        def body(i, time, state, start, size):
            # Times as start + i * size: no rounding error accumulates over the steps.
            following = start + tf.cast(i + 1, dtype) * size
            return i + 1, following, self.step(fn, time, state, size), start, size

        time, state, states = tf.cast(initial_time, dtype), initial_state, []
        for k in range(times.shape[0]):
            size = (times[k] - time) / self.num_steps
            _, _, state, _, _ = tf.while_loop(
                lambda i, *_: i < self.num_steps,
                body,
                (tf.constant(0), time, state, time, size),
                maximum_iterations=self.num_steps,
            )
            time = times[k]
            states.append(state)
        stacked = tf.nest.map_structure(lambda *s: tf.stack(s), *states)
        return tfp.math.ode.Results(
            times=times, states=stacked, diagnostics=None, solver_internal_state=None
        )


class Midpoint(FixedStep):
    """The explicit midpoint method: two network passes per step, second order."""

    stages = 2

    def step(self, ode_fn, time, state, step):
        half = _add(state, step / 2, ode_fn(time, state))
        return _add(state, step, ode_fn(time + step / 2, half))


class RK4(FixedStep):
    """The classical Runge-Kutta method: four network passes per step, fourth order."""

    stages = 4

    def step(self, ode_fn, time, state, step):
        k1 = ode_fn(time, state)
        k2 = ode_fn(time + step / 2, _add(state, step / 2, k1))
        k3 = ode_fn(time + step / 2, _add(state, step / 2, k2))
        k4 = ode_fn(time + step, _add(state, step, k3))
        return _combine(state, step, (k1, k2, k3, k4), (1 / 6, 1 / 3, 1 / 3, 1 / 6))


#: The fixed-step solvers by name, as ``kflows.FFJORD(solver=...)`` takes them.
FIXED_STEP = {"midpoint": Midpoint, "rk4": RK4}
