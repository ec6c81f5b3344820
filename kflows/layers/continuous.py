"""Continuous-time flows: FFJORD, an ODE whose dynamics a Keras 3 network learns.

The state follows ``dx/dt = f(x, t, context)`` from ``t = 0`` (base side) to ``t = T``
(data side); the log-density changes by ``-∫ tr(∂f/∂x) dt`` along the way (the
instantaneous change of variables). TFP's ``tfb.FFJORD`` integrates both together;
kflows supplies the dynamics network, the solver and the trace of the Jacobian.

References:
    Chen, Rubanova, Bettencourt, Duvenaud. Neural Ordinary Differential Equations.
    NeurIPS 2018. Grathwohl, Chen, Bettencourt, Sutskever, Duvenaud. FFJORD: Free-form
    Continuous Dynamics for Scalable Reversible Generative Models. ICLR 2019.
"""

from __future__ import annotations

import inspect

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from kflows import networks, ode
from kflows.bijectors.variables import LayerVariables
from kflows.layers.layer import FlowLayer

tfb = tfp.bijectors

#: FFJORD's default dynamics network: smooth, and smaller than the other layers' default.
DEFAULT_DYNAMICS = {"hidden_units": (64, 64), "activation": "tanh"}
#: Adaptive solvers from ``tfp.math.ode`` and fixed-step ones from :mod:`kflows.ode`.
SOLVERS = {
    "dormand_prince": tfp.math.ode.DormandPrince,
    "bdf": tfp.math.ode.BDF,
    **ode.FIXED_STEP,
}
TRACES = ("exact", "hutchinson")
NOISES = ("rademacher", "gaussian")


def make_solver(name: str, rtol: float, atol: float, options: dict | None):
    """A solver from its name, tolerances and extra keyword options.

    A fixed-step solver (``"midpoint"``, ``"rk4"``) has no error control:
    ``rtol`` and ``atol`` do not apply to it; its option is ``num_steps``.
    """
    if name not in SOLVERS:
        raise ValueError(f"Expected solver one of {sorted(SOLVERS)}; got {name!r}.")
    options = dict(options or {})
    allowed = set(inspect.signature(SOLVERS[name].__init__).parameters) - {
        "self",
        "rtol",
        "atol",
        "make_adjoint_solver_fn",
        "name",
    }
    unknown = set(options) - allowed
    if unknown:
        raise ValueError(
            f"Expected solver_options among {sorted(allowed)} for solver {name!r}; "
            f"got {sorted(unknown)}."
        )
    if not (rtol > 0 and atol > 0):
        raise ValueError(f"Expected rtol > 0 and atol > 0; got rtol={rtol}, atol={atol}.")
    if name in ode.FIXED_STEP:
        return SOLVERS[name](**options)
    if name == "bdf":
        # BDF's Newton steps need the Jacobian of the (trace-augmented) dynamics; computing
        # it only when Newton stalls is about ten times faster here.
        options = {"evaluate_jacobian_lazily": True, **options}
    return SOLVERS[name](rtol=rtol, atol=atol, **options)


def displacement_solve(solver):
    """An ``ode_solve_fn`` that integrates the displacement ``x(t) - x(0)`` from zero.

    The solver's rounding errors (its interpolation to the final time combines several
    states with large coefficients) then scale with how far the state moves, not with its
    size: in float32 a layer that hardly moves stays within an ulp of the identity. The
    initial state goes in as a solver constant so the adjoint gradient reaches it.
    """

    def solve(ode_fn, initial_time, initial_state, solution_times, constants=None, **kwargs):
        def displacement_ode(time, displacement, start, **rest):
            state = tf.nest.map_structure(tf.add, start, displacement)
            return ode_fn(time, state, **rest)

        if tf.executing_eagerly():
            # Called eagerly, the solver steps through ops one by one in Python; compiling
            # the dynamics (with their trace) into one graph makes each step one call.
            displacement_ode = tf.function(displacement_ode, autograph=False)
        results = solver.solve(
            displacement_ode,
            initial_time,
            tf.nest.map_structure(tf.zeros_like, initial_state),
            solution_times,
            constants={**(constants or {}), "start": initial_state},
            **kwargs,
        )
        states = tf.nest.map_structure(lambda d, s: d + s[None], results.states, initial_state)
        return results._replace(states=states)

    return solve


def exact_trace(event_dim: int):
    """``trace_augmentation_fn`` for ``tfb.FFJORD`` computing ``diag(∂f/∂x)`` exactly.

    Costs one backward pass per feature, so it suits small ``D``. The result is the
    unreduced diagonal (FFJORD sums it over the event).
    """

    def augmentation(ode_fn, state_shape, dtype):
        def augmented(time, state_and_log_det, **kwargs):
            state, _ = state_and_log_det
            # Only the state is differentiated here; the weights' gradients come from the
            # solver's adjoint pass, which differentiates this whole function.
            with tf.GradientTape(persistent=True, watch_accessed_variables=False) as tape:
                tape.watch(state)
                velocity = ode_fn(time, state, **kwargs)
                parts = tf.unstack(velocity, num=event_dim, axis=-1)
            diagonal = [tape.gradient(p, state)[..., i] for i, p in enumerate(parts)]
            return velocity, tf.stack(diagonal, axis=-1)

        return augmented

    return augmentation


def hutchinson_trace(num_probes: int, noise: str, seed: int | None):
    """``trace_augmentation_fn`` estimating ``tr(∂f/∂x)`` as ``E[εᵀ (∂f/∂x) ε]``.

    One vector-Jacobian product per probe, whatever ``D``. The probes are drawn once per
    ODE solve (the estimator of the FFJORD paper); with an integer ``seed`` they are the
    same at every call, so results are reproducible; with ``None`` each solve draws new
    ones. The estimate is unbiased for either noise.
    """

    def augmentation(ode_fn, state_shape, dtype):
        shape = tf.concat([[num_probes], tf.cast(state_shape, tf.int32)], axis=0)
        stateless = tfp.random.sanitize_seed(None if seed is None else [0, seed])
        if noise == "rademacher":
            probes = tfp.random.rademacher(shape, dtype=dtype, seed=stateless)
        else:
            probes = tf.random.stateless_normal(shape, seed=stateless, dtype=dtype)

        def augmented(time, state_and_log_det, **kwargs):
            state, _ = state_and_log_det
            with tf.GradientTape(persistent=True, watch_accessed_variables=False) as tape:
                tape.watch(state)
                velocity = ode_fn(time, state, **kwargs)
            estimates = [
                probes[k] * tape.gradient(velocity, state, output_gradients=probes[k])
                for k in range(num_probes)
            ]
            return velocity, tf.add_n(estimates) / num_probes

        return augmented

    return augmentation


class _FFJORD(LayerVariables, tfb.FFJORD):
    """``tfb.FFJORD`` that lists the dynamics network's variables."""


@keras.saving.register_keras_serializable(package="kflows")
class FFJORD(FlowLayer):
    """A continuous normalizing flow (FFJORD) whose dynamics are a Keras 3 network.

    ``dx/dt = f(concat[x, t], context)`` for ``t`` from 0 (base side) to ``T`` (data
    side). ``f`` is a conditioner network with a zero-initialised output layer, so the
    layer starts as the identity. Any ``f`` gives an invertible map, so the network is
    free-form.

    Fast direction: **neither**: both directions solve an ODE (tens of network passes,
    times ``D`` for the exact trace). Use it for small ``D`` or when free-form dynamics are
    worth the cost.

    Args:
        conditioner: the dynamics network ``f`` (by default :data:`DEFAULT_DYNAMICS`, an
            :class:`~kflows.MLP` of widths (64, 64) with ``tanh``), a dict of arguments
            of that default, or a conditioner. Keep its activation smooth (``"tanh"``,
            ``"softplus"``, ``"swish"``): the solver and the trace differentiate it.
        time: integration time ``T``.
        trace: ``"exact"`` (``D`` backward passes per step; exact log-densities, the
            default) or ``"hutchinson"`` (one pass per probe; an unbiased stochastic
            estimate of the log-det, for large ``D``).
        num_probes: probe vectors per solve of the Hutchinson estimator.
        noise: probe distribution of the Hutchinson estimator: ``"rademacher"`` (lower
            variance) or ``"gaussian"``.
        seed: seed of the Hutchinson probes: an int gives the same probes at every call
            (reproducible evaluation); ``None`` draws new probes at every solve.
        solver: ``"dormand_prince"`` (adaptive explicit Runge-Kutta) or ``"bdf"``
            (implicit, for stiff dynamics), from ``tfp.math.ode``; or a fixed-step solver
            from :mod:`kflows.ode`, ``"rk4"`` or ``"midpoint"`` (a known cost, no error
            control; gradients by backpropagation through the steps).
        rtol: relative tolerance of an adaptive solver.
        atol: absolute tolerance of an adaptive solver.
        solver_options: further JSON keyword arguments of the solver, e.g.
            ``{"max_num_steps": 1000, "first_step_size": 0.01}`` (``"bdf"`` defaults to
            ``{"evaluate_jacobian_lazily": True}``), or ``{"num_steps": 32}`` for a
            fixed-step solver (32 by default).

    Gradients for training use an adaptive solver's adjoint method (constant memory in the
    number of steps). Everything but the network weights lives in the config.

    Example:
        >>> layer = kflows.FFJORD(conditioner={"hidden_units": [16]}, rtol=1e-4, atol=1e-4)
        >>> flow = kflows.Flow([layer], event_dim=2)
        >>> flow.sample(3, seed=0).shape
        TensorShape([3, 2])
    """

    fast_direction = "neither"
    uses_context = True
    initialisation = "identity"

    def __init__(
        self,
        conditioner=None,
        time: float = 1.0,
        trace: str = "exact",
        num_probes: int = 1,
        noise: str = "rademacher",
        seed: int | None = None,
        solver: str = "dormand_prince",
        rtol: float = 1e-5,
        atol: float = 1e-5,
        solver_options: dict | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if trace not in TRACES:
            raise ValueError(f"Expected trace one of {TRACES}; got {trace!r}.")
        if noise not in NOISES:
            raise ValueError(f"Expected noise one of {NOISES}; got {noise!r}.")
        if int(num_probes) < 1:
            raise ValueError(f"Expected num_probes >= 1; got {num_probes!r}.")
        if not float(time) > 0:
            raise ValueError(f"Expected an integration time > 0; got {time!r}.")
        self.time = float(time)
        self.trace = trace
        self.num_probes = int(num_probes)
        self.noise = noise
        self.seed = None if seed is None else int(seed)
        self.solver = solver
        self.rtol = float(rtol)
        self.atol = float(atol)
        self.solver_options = dict(solver_options or {})
        make_solver(solver, self.rtol, self.atol, self.solver_options)  # validate now
        self.conditioner = networks.get(
            conditioner, networks.MLP, self.dtype_policy, **DEFAULT_DYNAMICS
        )

    def build(self, x_shape, context_shape=None):
        super().build(x_shape, context_shape)
        # The network sees the state and the time; the context enters through the network's
        # own context path.
        self.conditioner.set_output(self.event_dim, 1)
        self.conditioner.build((None, self.event_dim + 1), context_shape)
        self._has_context = context_shape is not None

    def velocity(self, time, state, context=None):
        """The dynamics ``f(x, t, context)``: same shape as ``state``."""
        time = tf.cast(time, state.dtype) * tf.ones_like(state[..., :1])
        inputs = tf.concat([state, time], axis=-1)
        # The network may compute in a lower precision (a mixed policy); the ODE does not.
        return tf.cast(self.conditioner(inputs, context)[..., 0], state.dtype)

    def _trace_fn(self):
        if self.trace == "exact":
            return exact_trace(self.event_dim)
        return hutchinson_trace(self.num_probes, self.noise, self.seed)

    def make_bijector(self, context=None, training=False):
        if self._has_context and context is None:
            raise ValueError("This FFJORD layer was built with a context; got context=None.")
        # A context-free layer ignores a context, as every kflows layer may.
        context = context if self._has_context else None
        if context is not None:
            context = tf.cast(context, self.variable_dtype)
        solver = make_solver(self.solver, self.rtol, self.atol, self.solver_options)
        dtype = tf.as_dtype(self.variable_dtype)
        return _FFJORD(
            variables=self.variables,
            state_time_derivative_fn=lambda t, x: self.velocity(t, x, context),
            ode_solve_fn=displacement_solve(solver),
            trace_augmentation_fn=self._trace_fn(),
            initial_time=tf.constant(0.0, dtype),
            final_time=tf.constant(self.time, dtype),
            dtype=dtype,
            name="ffjord",
        )

    def get_config(self):
        return {
            **super().get_config(),
            "conditioner": keras.saving.serialize_keras_object(self.conditioner),
            "time": self.time,
            "trace": self.trace,
            "num_probes": self.num_probes,
            "noise": self.noise,
            "seed": self.seed,
            "solver": self.solver,
            "rtol": self.rtol,
            "atol": self.atol,
            "solver_options": self.solver_options,
        }
