"""Flow matching: a continuous flow trained by regressing its velocity, with no ODE solve.

A :class:`FlowMatching` model is a :class:`~kflows.Flow` whose one layer is a
:class:`~kflows.FFJORD` (the velocity network ``v(x, t, context)`` and the ODE machinery:
solvers, exact or Hutchinson trace). Densities, sampling, ``distribution()``, ``.keras``
files, the export and the command line are those of every flow; only training differs.
Instead of maximising the likelihood (one ODE solve forward and backward per step, as
FFJORD trains), ``fit`` regresses the velocity on the conditional optimal-transport path
between a base draw ``x0`` and a data row ``x1`` (Lipman et al. 2023):

    x_t = (1 - (1 - sigma_min) t) x0 + t x1,    target u_t = x1 - (1 - sigma_min) x0,
    loss = mean over rows of mean over features of (v(x_t, t, context) - u_t)^2,

so each step costs one network pass. Time runs as in the FFJORD layer: ``t = 0`` is the
base side and ``t = 1`` the data side (the bijector's forward, base to data, is sampling).

Options: ``time_sampler`` (``"uniform"``, or ``"logit_normal"`` to spend more steps near
``t = 1/2``; Esser et al. 2024) and ``coupling`` (``"independent"``, or ``"ot"``: pairs
each batch's base draws with its rows by an entropic optimal-transport plan, which
straightens the paths; Tong et al. 2024).

The minibatch OT coupling: a log-domain Sinkhorn plan between the batch's base draws and
its rows (squared Euclidean cost; ``reg`` times the mean cost as the entropic
regularisation; a fixed number of ``iterations``, so the graph has a fixed shape for XLA),
then each data row draws its base partner from its column of the plan. Every data row is
used once and the base draws keep their distribution (in expectation, as when pairs are
sampled from an exact plan, as Tong et al. do); taking each column's most likely partner
instead biases them towards the data (measured in ``benchmarks/flow_matching.py``).

References:
    Lipman, Chen, Ben-Hamu, Nickel, Le. Flow Matching for Generative Modeling. ICLR 2023.
    Liu, Gong, Liu. Flow Straight and Fast: Learning to Generate and Transfer Data with
    Rectified Flow. ICLR 2023. Tong, Fatras, Malkin, Huguet, Zhang, Rector-Brooks, Wolf,
    Bengio. Improving and Generalizing Flow-Based Generative Models with Minibatch
    Optimal Transport. TMLR 2024. Esser et al. Scaling Rectified Flow Transformers for
    High-Resolution Image Synthesis. ICML 2024 (logit-normal times).
"""

from __future__ import annotations

import math
import numbers
import random

import keras
import tensorflow as tf

from kflows import inputs
from kflows._validate import is_integer
from kflows.flow import Flow
from kflows.layers.continuous import FFJORD
from kflows.training import _multi_worker_logs

__all__ = ["FlowMatching"]

#: The default velocity network of :func:`kflows.flow_matching`: smooth (the exact trace
#: differentiates it) and larger than FFJORD's, since training costs one pass per step.
DEFAULT_VELOCITY = {"hidden_units": (128, 128, 128), "activation": "swish"}
#: Time samplers and their parameters with defaults.
TIME_SAMPLERS = {"uniform": {}, "logit_normal": {"loc": 0.0, "scale": 1.0}}
#: Couplings of base draws with data rows and their parameters with defaults.
COUPLINGS = {"independent": {}, "ot": {"reg": 0.03, "iterations": 50}}
#: Stream of the training noise that ``evaluate`` uses (training uses the step number).
_EVALUATION_STREAM = -1


def _spec(value, what: str, known: dict) -> dict:
    """``"name"`` or ``{"name": ..., **params}`` -> a full, checked ``{"name", **params}``."""
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, dict) or not isinstance(value.get("name"), str):
        raise TypeError(
            f"Expected {what} as a name or a dict with a 'name'; got {value!r} "
            f"({type(value).__name__})."
        )
    name = value["name"]
    if name not in known:
        raise ValueError(f"Expected {what} one of {sorted(known)}; got {name!r}.")
    params = {k: v for k, v in value.items() if k != "name"}
    unknown = set(params) - set(known[name])
    if unknown:
        raise ValueError(
            f"Expected {what} {name!r} parameters among {sorted(known[name])}; got "
            f"{sorted(unknown)}."
        )
    return {"name": name, **known[name], **params}


def _real(value, what: str, low: float, high: float, closed_high: bool = False) -> float:
    """``value`` as a finite float in ``[low, high)`` (or ``[low, high]``); nothing coerced."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"Expected {what} as a real number; got {value!r}.")
    inside = low <= value <= high if closed_high else low <= value < high
    if not (math.isfinite(value) and inside):
        bracket = "]" if closed_high else ")"
        raise ValueError(f"Expected {what} in [{low}, {high}{bracket}; got {value!r}.")
    return float(value)


def _time_sampler(value) -> dict:
    spec = _spec(value, "time_sampler", TIME_SAMPLERS)
    if spec["name"] == "logit_normal":
        spec["loc"] = _real(spec["loc"], "time_sampler loc", -math.inf, math.inf)
        spec["scale"] = _real(spec["scale"], "time_sampler scale", 0.0, math.inf)
        if spec["scale"] == 0.0:
            raise ValueError("Expected time_sampler scale > 0; got 0.0.")
    return spec


def _coupling(value) -> dict:
    spec = _spec(value, "coupling", COUPLINGS)
    if spec["name"] == "ot":
        spec["reg"] = _real(spec["reg"], "coupling reg", 0.0, math.inf)
        if spec["reg"] == 0.0:
            raise ValueError("Expected coupling reg > 0 (an entropic plan); got 0.0.")
        iterations = spec["iterations"]
        if not is_integer(iterations):
            raise TypeError(f"Expected coupling iterations as an integer; got {iterations!r}.")
        if iterations < 1:
            raise ValueError(f"Expected coupling iterations >= 1; got {iterations}.")
        spec["iterations"] = int(iterations)
    return spec


def sample_times(spec: dict, n, seed, dtype) -> tf.Tensor:
    """``n`` times in ``[0, 1]`` from a time sampler spec, shape ``[n, 1]``."""
    if spec["name"] == "uniform":
        return tf.random.stateless_uniform([n, 1], seed, dtype=dtype)
    normal = tf.random.stateless_normal([n, 1], seed, dtype=dtype)
    return tf.sigmoid(spec["loc"] + spec["scale"] * normal)


def sinkhorn_log_plan(cost, reg: float, iterations: int) -> tf.Tensor:
    """Log of the entropic optimal-transport plan between two uniform batches.

    Args:
        cost: ``[B, B]`` costs (rows: sources, columns: targets).
        reg: entropic regularisation, relative to the mean cost (scale-free).
        iterations: Sinkhorn iterations (log domain; a fixed count, XLA-friendly).

    Returns:
        ``[B, B]`` log-probabilities of the pairs; rows and columns each sum to ``1/B``.
    """
    epsilon = reg * tf.maximum(tf.reduce_mean(cost), keras.config.epsilon())
    log_kernel = -cost / epsilon
    size = tf.cast(tf.shape(cost)[0], cost.dtype)
    log_marginal = -tf.math.log(size)
    zeros = tf.zeros_like(cost[0])

    def update(_, g):
        f = log_marginal - tf.reduce_logsumexp(log_kernel + g[None, :], axis=1)
        g = log_marginal - tf.reduce_logsumexp(log_kernel + f[:, None], axis=0)
        return f, g

    f, g = tf.while_loop(lambda *_: True, update, (zeros, zeros), maximum_iterations=iterations)
    return log_kernel + f[:, None] + g[None, :]


def ot_partners(x0, x1, reg: float, iterations: int, seed) -> tf.Tensor:
    """Reorders base draws ``x0`` ``[B, D]`` to pair with the rows of ``x1`` ``[B, D]``.

    Row ``j`` of the result is drawn from column ``j`` of the entropic OT plan between
    ``x0`` and ``x1`` (squared Euclidean cost), so it is close to ``x1[j]``.
    """
    # Pairs are chosen without gradients: the plan only decides which draws to use.
    a, b = tf.stop_gradient(x0), tf.stop_gradient(x1)
    cost = tf.reduce_sum(tf.square(a[:, None, :] - b[None, :, :]), axis=-1)
    log_plan = sinkhorn_log_plan(cost, reg, iterations)
    partners = tf.random.stateless_categorical(tf.transpose(log_plan), 1, seed)[:, 0]
    return tf.gather(x0, partners)


def conditional_ot_path(x0, x1, t, sigma_min: float):
    """The point ``x_t`` of the conditional OT path and its velocity ``u_t`` (Lipman et al.)."""
    shrink = 1.0 - sigma_min
    return (1.0 - shrink * t) * x0 + t * x1, x1 - shrink * x0


@keras.saving.register_keras_serializable(package="kflows")
class FlowMatching(Flow):
    """A continuous flow trained by flow matching: :class:`~kflows.Flow` with its own ``fit``.

    Build it with :func:`kflows.flow_matching`. The one layer is a :class:`~kflows.FFJORD`
    (integration time 1) whose network is the velocity field; ``log_prob``, ``sample``,
    ``distribution()``, saving and the export solve its ODE as FFJORD's do (its
    ``solver``, tolerances and ``trace``), while ``fit`` only evaluates the network, on
    the conditional optimal-transport path (see :mod:`kflows.matching`).

    What ``fit`` and ``evaluate`` report (two different quantities, named apart):

    - ``fit``: ``loss`` is the flow-matching regression loss that the optimizer
      minimises (the mean over rows, weighted by ``sample_weight``, of the mean squared
      velocity error per feature), also logged as ``fm_loss``. It is not a likelihood and
      does not reach zero.
    - ``evaluate`` (and ``fit``'s ``val_`` figures): ``loss`` is the mean negative
      log-likelihood in nats (exact log-densities: one ODE solve with the trace), with
      ``bits_per_dim``, as for every flow, plus ``fm_loss``, the regression loss on the
      same rows (computed with the same noise at every call, so epochs compare without
      sampling noise). Compare ``fm_loss`` with ``val_fm_loss``, not ``loss`` with
      ``val_loss``.

    Cost: a training step is one network pass (plus, with ``coupling="ot"``, a Sinkhorn
    plan over the batch: ``B x B`` work per iteration). ``log_prob`` and sampling solve
    the ODE; TFP's FFJORD integrates the trace with every solve, sampling included (it
    keeps the log-det with the samples), so with ``trace="exact"`` both cost ``D + 1``
    passes per network evaluation: for large ``D`` use ``trace="hutchinson"``, and for a
    known sampling cost a fixed-step ``solver="rk4"``.

    Args:
        layers: one :class:`~kflows.FFJORD` layer with ``time=1.0``.
        base: the base distribution ``x0`` is drawn from (standard normal by default); its
            weights are not trained by flow matching, so a base with trainable weights is
            refused (set ``base.trainable = False`` to use one as it is).
        context_dim: context features of a conditional model p(x | context).
        event_dim: number of features D: builds the model now.
        sigma_min: width of the path at the data end, in ``[0, 1)``: ``x_1`` is the data
            plus ``sigma_min`` times base noise.
        time_sampler: ``"uniform"``, ``"logit_normal"`` or a dict such as
            ``{"name": "logit_normal", "loc": 0.0, "scale": 1.0}`` (``t = sigmoid(loc +
            scale * N(0, 1))``).
        coupling: ``"independent"``, ``"ot"`` or ``{"name": "ot", "reg": 0.03,
            "iterations": 50}`` (minibatch entropic OT; unconditional models only).
        seed: seed of the training noise (base draws, times, OT pairs), an int in
            ``[0, 2**31 - 1]``: step ``k`` of ``fit`` draws from ``(seed, k)``, so a run is
            reproducible. ``None`` draws one (Python's ``random``).
        **kwargs: ``name``, ``dtype`` and other :class:`~kflows.Flow` arguments.

    Raises:
        TypeError, ValueError: an argument of the wrong type or out of range, with what
            was expected and what came.

    Example:
        >>> model = kflows.flow_matching(hidden_units=(32, 32), rtol=1e-4, atol=1e-4)
        >>> model.compile()
        >>> history = model.fit(kflows.data.two_moons(512), epochs=1, verbose=0)
        >>> sorted(history.history)  # the regression loss, under two names
        ['fm_loss', 'loss']
        >>> sorted(model.evaluate(kflows.data.two_moons(64), verbose=0, return_dict=True))
        ['bits_per_dim', 'fm_loss', 'loss']
    """

    def __init__(
        self,
        layers,
        base=None,
        context_dim: int | None = None,
        event_dim: int | None = None,
        sigma_min: float = 1e-4,
        time_sampler="uniform",
        coupling="independent",
        seed: int | None = None,
        **kwargs,
    ):
        layers = list(layers)
        if len(layers) != 1 or not isinstance(layers[0], FFJORD):
            kinds = [type(layer).__name__ for layer in layers]
            raise ValueError(
                "Expected one kflows.FFJORD layer (the velocity field) in a FlowMatching "
                f"model; got {kinds}."
            )
        if layers[0].time != 1.0:
            raise ValueError(
                "Expected the FFJORD layer's integration time 1.0 (the flow-matching path "
                f"runs over t in [0, 1]); got time={layers[0].time}."
            )
        sigma_min = _real(sigma_min, "sigma_min", 0.0, 1.0)
        time_sampler = _time_sampler(time_sampler)
        coupling = _coupling(coupling)
        if seed is None:
            seed = random.randrange(2**31)  # seeded by keras.utils.set_random_seed
        if not is_integer(seed):
            raise TypeError(f"Expected seed as an int or None; got {seed!r}.")
        if not 0 <= seed < 2**31:
            raise ValueError(f"Expected seed in [0, 2**31 - 1]; got {seed}.")
        super().__init__(layers, base=base, context_dim=context_dim, event_dim=event_dim, **kwargs)
        self.sigma_min = sigma_min
        self.time_sampler = time_sampler
        self.coupling = coupling
        self.seed = int(seed)
        self._add_metric()
        self._check_training_setup()

    # ------------------------------------------------------------------ checks
    def _check_training_setup(self):
        """Refuses what flow matching cannot train: a learned base, OT with a context."""
        if self.coupling["name"] == "ot" and self.context_dim is not None:
            raise ValueError(
                "Expected coupling='independent' for a conditional model (context_dim="
                f"{self.context_dim}); got coupling='ot'. The minibatch OT plan pairs base "
                "draws with rows of different contexts, so each context's base draws would no "
                "longer follow the base distribution."
            )
        if self.base.built and self.base.trainable_weights:
            names = [w.path for w in self.base.trainable_weights]
            raise ValueError(
                "Expected a base without trainable weights: flow matching draws from the base "
                f"but never trains it; {self.base.name} has {names}. Use a fixed base (e.g. "
                "kflows.Fixed(...)) or set base.trainable = False to keep it as it is."
            )

    def _add_metric(self):
        # Keras takes new state only before the model is built, and Flow.__init__ builds it
        # when given event_dim: the metric is then made in build.
        if not hasattr(self, "fm_loss"):
            self.fm_loss = keras.metrics.Mean(name="fm_loss", dtype=self.variable_dtype)

    def build(self, input_shape):
        self._add_metric()
        super().build(input_shape)
        if hasattr(self, "coupling"):  # set after Flow.__init__, which may build
            self._check_training_setup()

    # ------------------------------------------------------------------ the loss
    def _noise_seed(self, stream):
        """The stateless seed of a step's noise: ``(seed, stream)``, then the replica."""
        seed = tf.random.experimental.stateless_fold_in(
            tf.constant([0, self.seed], tf.int32), tf.cast(stream, tf.int64)
        )
        context = tf.distribute.get_replica_context()
        replica = 0 if context is None else context.replica_id_in_sync_group
        return tf.random.experimental.stateless_fold_in(seed, replica)

    def flow_matching_loss(self, x, context=None, sample_weight=None, seed=0):
        """The mean flow-matching loss of a batch, and that of each row.

        Args:
            x: data rows ``[N, D]`` (the path's data end ``x1``), checked tensors.
            context: ``[N, C]`` or None.
            sample_weight: ``[N]`` or None: the mean is ``sum(w * row) / sum(w)``.
            seed: an int32 ``[2]`` stateless seed, or an int (``[0, seed]``): the base
                draws, times and OT pairs.

        Returns:
            ``(loss, rows)``: the scalar loss (plus regularisation losses, divided among
            replicas as :meth:`~kflows.Flow.compute_loss` does) and ``[N]`` per-row losses.
        """
        self._require_built()
        self._check_training_setup()
        seed = inputs.stateless_seed(seed)
        base_seed, time_seed, pair_seed = tf.unstack(
            tf.random.experimental.stateless_split(seed, 3)
        )
        n = tf.shape(x)[0]
        x0 = tf.cast(self.base.distribution().sample(n, seed=base_seed), x.dtype)
        if self.coupling["name"] == "ot":
            x0 = ot_partners(x0, x, self.coupling["reg"], self.coupling["iterations"], pair_seed)
        t = sample_times(self.time_sampler, n, time_seed, x.dtype)
        x_t, target = conditional_ot_path(x0, x, t, self.sigma_min)
        velocity = self.flow_layers[0].velocity(t, x_t, context)
        rows = tf.reduce_mean(tf.square(velocity - target), axis=-1)
        # compute_loss averages -y_pred over the rows (weighted), adds the regularisation
        # losses and splits the mean among replicas: the NLL's bookkeeping, reused.
        loss = self.compute_loss(x=x, y_pred=-rows, sample_weight=sample_weight)
        return loss, rows

    def _track_fm(self, loss, x, weight):
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        total = (
            tf.cast(tf.shape(x)[0], loss.dtype)
            if weight is None
            else tf.reduce_sum(tf.cast(weight, loss.dtype))
        )
        self.fm_loss.update_state(loss * replicas, sample_weight=total)

    # ------------------------------------------------------------------ Keras steps
    @property
    def metrics(self):
        return [self.fm_loss, *super().metrics]

    def train_step(self, data):
        x, context, weight = inputs.split(data, inputs.BATCH_KEYS)
        guard = getattr(self, "_nan_guard", None)  # read when the step is traced
        saved = guard.snapshot(self.non_trainable_weights) if guard is not None else ()
        seed = self._noise_seed(self.optimizer.iterations)
        with tf.GradientTape() as tape:
            loss, _ = self.flow_matching_loss(x, context, weight, seed)
            scaled = self.optimizer.scale_loss(loss)
        weights = self.trainable_variables
        grads = tape.gradient(scaled, weights)
        if guard is not None:
            guard.step(self.optimizer, loss, grads, weights, (x, context, weight), saved)
        else:
            self.optimizer.apply_gradients(zip(grads, weights, strict=True))
        self._track_fm(loss, x, weight)
        value = self.fm_loss.result()
        return _multi_worker_logs({"loss": value, "fm_loss": value})

    def test_step(self, data):
        x, context, weight = inputs.split(data, inputs.BATCH_KEYS)
        loss, _ = self.flow_matching_loss(x, context, weight, self._noise_seed(_EVALUATION_STREAM))
        self._track_fm(loss, x, weight)
        return super().test_step(data)  # the NLL and bits per dim; logs every metric

    # ------------------------------------------------------------------ config
    def get_config(self):
        return {
            **super().get_config(),
            "sigma_min": self.sigma_min,
            "time_sampler": dict(self.time_sampler),
            "coupling": dict(self.coupling),
            "seed": self.seed,
        }
