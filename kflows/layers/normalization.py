"""Normalization layers: ActNorm, batch normalization and a fixed standardization.

All three are per-feature affine maps ``x = u * scale + shift`` (base side ``u``, data side
``x``); they differ in where ``scale`` and ``shift`` come from: learned after a
data-dependent initialisation (:class:`ActNorm`), batch statistics with moving averages
(:class:`BatchNorm`), or statistics fitted once with ``adapt`` (:class:`Standardize`).
"""

from __future__ import annotations

import warnings

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from kflows import inputs
from kflows.bijectors.batch_norm import BatchNormBijector
from kflows.layers.layer import FlowLayer

tfb = tfp.bijectors


def _as_2d(x, dim, dtype, layer):
    x = tf.convert_to_tensor(x)
    x = tf.reshape(tf.cast(x, dtype), [-1, x.shape[-1]])
    if dim is not None and x.shape[-1] != dim:
        raise ValueError(f"{layer} was built for {dim} features; got data of shape {x.shape}.")
    if x.shape[0] == 0:
        raise ValueError(f"{layer} needs at least one row of data; got shape {x.shape}.")
    return x


def _moments(x: np.ndarray):
    """Per-feature mean and standard deviation of ``x`` ``[N, D]``, in float64.

    Each feature is divided by its largest magnitude first, so the sums cannot overflow:
    the statistics of finite data are finite (and no larger than the data). A NaN or an
    infinity in a feature makes its statistics NaN.
    """
    x = np.asarray(x, np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        scale = np.max(np.abs(x), axis=0)
        scale = np.where(scale > 0, scale, 1.0)
        z = x / scale
        return scale * z.mean(0), scale * z.std(0)


def _checked(layer, dtype, what: str, **statistics):
    """Each per-feature statistic cast to ``dtype``; a ValueError if one is not finite there.

    The error names the layer, the statistic and the features, so a non-finite value is
    never stored in a weight.
    """
    cast = {}
    for name, value in statistics.items():
        value = tf.cast(tf.constant(value, tf.float64), dtype)
        bad = np.flatnonzero(~tf.math.is_finite(value).numpy())
        if bad.size:
            shown = np.asarray(statistics[name], np.float64)[bad[:5]].tolist()
            raise ValueError(
                f"{type(layer).__name__} layer {layer.name!r} cannot {what}: expected a finite "
                f"{name.replace('_', ' ')} for every feature in {tf.as_dtype(dtype).name}; got "
                f"{shown} for feature(s) {bad[:5].tolist()}"
                + (f" and {bad.size - 5} more" if bad.size > 5 else "")
                + ". Its weights are unchanged. Check the data reaching it for NaN, inf or "
                f"magnitudes its {tf.as_dtype(dtype).name} statistics cannot hold."
            )
        cast[name] = value
    return cast


@keras.saving.register_keras_serializable(package="kflows")
class ActNorm(FlowLayer):
    """Activation normalization: a learned per-feature affine map, initialised from data.

    ``x = u * exp(log_scale) + shift``. On the first batch it sees (``Flow.fit`` and
    ``Flow.initialize`` call :meth:`initialize`), ``shift`` and ``log_scale`` are set to the
    mean and log standard deviation of the layer's input, so the layer's output (base side)
    has zero mean and unit variance per feature; afterwards both are ordinary trainable
    weights. An ``initialized`` flag is saved with the model, so a reloaded flow is not
    initialised again. Before initialisation the layer is the identity. The statistics are
    computed in float64 (data at 1e20 initialises a float32 layer correctly); a statistic
    that is not finite (NaN or inf reaching the layer) is refused with a ``ValueError``.
    Under a ``tf.distribute`` strategy, ``fit`` initialises it from the first global batch,
    the same on every worker.

    Fast direction: **both**. Context: ignored.

    Args:
        epsilon: smallest standard deviation used at initialisation (constant features).

    Example:
        >>> x = kflows.data.two_moons(512) * 3.0 + 1.0
        >>> flow = kflows.Flow([kflows.ActNorm(), kflows.LULinear(), kflows.Coupling()])
        >>> flow.compile()
        >>> history = flow.fit(x, epochs=1, batch_size=128, verbose=0)  # initialises ActNorm
        >>> flow.needs_data_init
        False

    References:
        Kingma, Dhariwal. Glow: Generative Flow with Invertible 1x1 Convolutions.
        NeurIPS 2018.
    """

    fast_direction = "both"
    uses_context = False
    initialisation = "data"

    def __init__(self, epsilon: float = 1e-6, **kwargs):
        super().__init__(**kwargs)
        if not epsilon > 0:
            raise ValueError(f"Expected epsilon > 0; got {epsilon!r}.")
        self.epsilon = float(epsilon)

    def build(self, x_shape, context_shape=None):
        super().build(x_shape, context_shape)
        dim = self.event_dim
        self.shift = self.add_weight(shape=(dim,), initializer="zeros", name="shift")
        self.log_scale = self.add_weight(shape=(dim,), initializer="zeros", name="log_scale")
        self.initialized = self.add_weight(
            shape=(), dtype="bool", initializer="zeros", trainable=False, name="initialized"
        )

    @property
    def needs_data_init(self) -> bool:
        """True until :meth:`initialize` ran (read eagerly, outside ``tf.function``)."""
        return not self.built or not bool(self.initialized.numpy())

    def initialize(self, x, context=None):
        """Sets ``shift`` and ``log_scale`` so that ``x`` maps to zero mean, unit variance.

        The statistics are computed in float64 and stored in ``variable_dtype``. Raises a
        ``ValueError`` naming the features and the statistic when one is not finite (the
        data reaching the layer holds NaN or inf); the weights and the ``initialized``
        flag are then left as they were.
        """
        x = _as_2d(x, self.event_dim, self.variable_dtype, type(self).__name__)
        mean, std = _moments(x.numpy())
        stats = _checked(
            self,
            self.variable_dtype,
            "be initialised from this data",
            mean=mean,
            standard_deviation=np.maximum(std, self.epsilon),
        )
        self.shift.assign(stats["mean"])
        self.log_scale.assign(tf.math.log(stats["standard_deviation"]))
        self.initialized.assign(True)

    def make_bijector(self, context=None, training=False):
        # The variables themselves (not their values) keep the bijector live.
        return tfb.Shift(self.shift.value)(tfb.Scale(log_scale=self.log_scale.value))

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


@keras.saving.register_keras_serializable(package="kflows")
class BatchNorm(FlowLayer):
    """Batch normalization as a flow layer, with Keras-owned moving statistics.

    Density direction (inverse): ``u = (x - mean) / sqrt(var + eps) * exp(log_gamma) + beta``.
    In training (``Flow.fit`` builds the bijector with ``training=True``) ``mean`` and
    ``var`` are the statistics of the batch being scored, and the moving averages
    ``moving_mean``, ``moving_variance`` (non-trainable weights, saved with the model) are
    updated; otherwise the moving averages are used, so ``evaluate``, ``log_prob`` and
    ``sample`` see a fixed map. Sampling (forward) always uses the moving averages. The
    log-det treats the statistics as constants (Dinh et al., 2017).

    Under a ``tf.distribute`` strategy (``MirroredStrategy``, ``MultiWorkerMirroredStrategy``)
    with several replicas, the training statistics are synchronised: each replica sums its
    rows and squared deviations and the sums are all-reduced, so ``mean`` and ``var`` are
    those of the *global* batch, every replica applies the same map, and the moving
    averages equal those of one device fed the whole batch (and stay equal on every
    replica). This adds a few all-reduces of ``D + 1`` numbers per layer to each training
    step. On one device, and outside training, nothing changes.

    The moving variance starts at ``1 - epsilon`` so that the layer starts as the identity.

    Fast direction: **both**. Context: ignored.

    Args:
        momentum: moving average momentum: ``moving = momentum * moving + (1 - momentum) *
            batch``.
        epsilon: added to the variance before the square root.
        affine: learn ``log_gamma`` and ``beta`` (zero-initialised) after normalising.

    Example:
        >>> flow = kflows.Flow([kflows.MaskedAutoregressive(), kflows.BatchNorm(),
        ...                     kflows.MaskedAutoregressive()], event_dim=2)
        >>> [v.name for v in flow.flow_layers[1].non_trainable_variables]
        ['moving_mean', 'moving_variance']

    References:
        Dinh, Sohl-Dickstein, Bengio. Density estimation using Real NVP. ICLR 2017.
    """

    fast_direction = "both"
    uses_context = False
    initialisation = "identity"

    def __init__(
        self, momentum: float = 0.99, epsilon: float = 1e-3, affine: bool = True, **kwargs
    ):
        super().__init__(**kwargs)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"Expected 0 <= momentum < 1; got {momentum!r}.")
        if not 0.0 < epsilon < 1.0:
            raise ValueError(f"Expected 0 < epsilon < 1; got {epsilon!r}.")
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        self.affine = bool(affine)

    def build(self, x_shape, context_shape=None):
        super().build(x_shape, context_shape)
        dim = self.event_dim
        self.moving_mean = self.add_weight(
            shape=(dim,), initializer="zeros", trainable=False, name="moving_mean"
        )
        self.moving_variance = self.add_weight(
            shape=(dim,),
            initializer=keras.initializers.Constant(1.0 - self.epsilon),
            trainable=False,
            name="moving_variance",
        )
        if self.affine:
            self.log_gamma = self.add_weight(shape=(dim,), initializer="zeros", name="log_gamma")
            self.beta = self.add_weight(shape=(dim,), initializer="zeros", name="beta")

    def make_bijector(self, context=None, training=False):
        return BatchNormBijector(self, training)

    def get_config(self):
        return {
            **super().get_config(),
            "momentum": self.momentum,
            "epsilon": self.epsilon,
            "affine": self.affine,
        }


@keras.saving.register_keras_serializable(package="kflows")
class Standardize(FlowLayer):
    """A fixed per-feature standardization fitted to data with :meth:`adapt`.

    Density direction: ``u = (x - mean) / std``, with ``mean`` and ``std`` computed by
    ``adapt(x)`` (like ``keras.layers.Normalization``) and stored as non-trainable weights,
    so they are saved with the model. Its log-det, ``-sum(log std)``, counts in the
    density: ``log_prob`` stays a density of the *original* data.

    Use it as the first layer (data side). Call ``adapt`` on the full training data before
    ``fit``; a flow whose ``Standardize`` is not adapted raises an error in ``log_prob``
    and ``sample``, except in ``Flow.fit``/``Flow.initialize``, which adapt it to their
    first batch with a warning.

    Fast direction: **both**. Context: ignored.

    Args:
        epsilon: smallest standard deviation (constant features).

    Example:
        >>> x_train = kflows.data.two_moons(1000) * 10.0
        >>> layer = kflows.Standardize()
        >>> layer.adapt(x_train)
        >>> flow = kflows.Flow([layer, kflows.MaskedAutoregressive()])
        >>> float(flow.log_prob(x_train).numpy().mean()) < -3.0  # a density of the raw data
        True
    """

    fast_direction = "both"
    uses_context = False
    initialisation = "data"

    def __init__(self, epsilon: float = 1e-6, **kwargs):
        super().__init__(**kwargs)
        if not epsilon > 0:
            raise ValueError(f"Expected epsilon > 0; got {epsilon!r}.")
        self.epsilon = float(epsilon)

    def build(self, x_shape, context_shape=None):
        super().build(x_shape, context_shape)
        dim = self.event_dim
        self.mean = self.add_weight(shape=(dim,), initializer="zeros", trainable=False, name="mean")
        self.std = self.add_weight(shape=(dim,), initializer="ones", trainable=False, name="std")
        self.adapted = self.add_weight(
            shape=(), dtype="bool", initializer="zeros", trainable=False, name="adapted"
        )

    @property
    def is_adapted(self) -> bool:
        return self.built and bool(self.adapted.numpy())

    def adapt(self, data) -> None:
        """Computes the per-feature mean and standard deviation of ``data``.

        The sums run in float64; the statistics are stored in ``variable_dtype``.

        Args:
            data: ``x`` ``[N, D]``, ``(x, context)``, a dict, or a ``tf.data.Dataset`` of
                such batches (the forms of :mod:`kflows.inputs`; only ``x`` is used).

        Raises:
            ValueError: the data holds NaN or inf, or a statistic is not finite in
                ``variable_dtype`` (its sums overflowed, or a mean beyond float32's range
                for a float32 layer); the error names the features and the statistic, and
                the weights and the ``adapted`` flag are left as they were.
        """
        batches = data if isinstance(data, tf.data.Dataset) else [data]
        count, offset, total, total_sq = 0, None, 0.0, 0.0
        for batch in batches:
            x = inputs.split(batch, inputs.BATCH_KEYS)[0]
            x = inputs.check_array(x, "data to adapt Standardize", self.event_dim, np.float64)
            if not self.built:
                self.build((None, x.shape[-1]))
            with np.errstate(over="ignore", invalid="ignore"):  # an overflow is refused below
                # Sums of deviations from the first batch's mean keep the variance accurate.
                offset = x.mean(0) if offset is None else offset
                x = x - offset
                total, total_sq = total + x.sum(0), total_sq + (x * x).sum(0)
            count += len(x)
        if count == 0:
            raise ValueError("Expected data to adapt Standardize; got no rows.")
        with np.errstate(invalid="ignore", over="ignore"):
            mean = total / count
            std = np.sqrt(np.maximum(total_sq / count - mean * mean, 0.0))
        stats = _checked(
            self,
            self.variable_dtype,
            "adapt to this data",
            mean=offset + mean,
            standard_deviation=np.maximum(std, self.epsilon),
        )
        self.mean.assign(stats["mean"])
        self.std.assign(stats["standard_deviation"])
        self.adapted.assign(True)

    @property
    def needs_data_init(self) -> bool:
        return not self.is_adapted

    def initialize(self, x, context=None):
        warnings.warn(
            f"{self.name} was not adapted; adapting it to one batch of {len(x)} rows. Call "
            "adapt(x) on the whole training data first for exact statistics.",
            stacklevel=3,
        )
        self.adapt(x)

    def check_ready(self) -> None:
        if self.built and not self.is_adapted:
            raise ValueError(
                f"{self.name} is not adapted: call {self.name}.adapt(x_train) (or fit the "
                "flow) before using it."
            )

    def make_bijector(self, context=None, training=False):
        if tf.executing_eagerly():
            self.check_ready()
        return tfb.Shift(self.mean.value)(tfb.Scale(self.std.value))

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}
