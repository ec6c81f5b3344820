"""``Flow``: a Keras 3 model whose density is a TFP ``TransformedDistribution``."""

from __future__ import annotations

import math
import numbers
import re
import threading

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from kflows import inputs
from kflows._tracking import track_items
from kflows.bases import Base, Fixed, StandardNormal
from kflows.bijectors import RowGuard, overflow_as_zero_density
from kflows.layers.base import FlowLayer

tfb = tfp.bijectors
tfd = tfp.distributions


def _is_shape(s) -> bool:
    return isinstance(s, tf.TensorShape) or (
        isinstance(s, (list, tuple)) and all(d is None or isinstance(d, int) for d in s)
    )


#: Lazy building creates weights; two threads building one flow would create two sets.
_BUILD_LOCK = threading.RLock()


class _EpochTracker(keras.callbacks.Callback):
    """Remembers the epoch that is running, so a data error can name it."""

    def __init__(self):
        super().__init__()
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch


def _non_finite_error(err: tf.errors.InvalidArgumentError, epoch: int | None):
    """A streaming dataset's finiteness check, as one readable ``ValueError`` (or None)."""
    match = re.search(
        re.escape(inputs.NON_FINITE_MARK) + r" (.+?) of batch\]\s*\[(\d+)\]", err.message
    )
    if match is None:
        return None
    where = f"batch {match.group(2)}" + ("" if epoch is None else f" of epoch {epoch}")
    return ValueError(
        f"Expected finite {match.group(1)}; got NaN or inf in {where} (batches counted from "
        "0). Training stopped before that batch: the weights are those from before it."
    )


@keras.saving.register_keras_serializable(package="kflows")
class Flow(keras.Model):
    """A normalizing flow: a base distribution pushed through a chain of flow layers.

    ``layers[0]`` touches the data: ``log_prob(x)`` applies the inverses of ``layers[0]``,
    ``layers[1]``, ... to ``x`` and scores the result under the base; sampling runs the
    other way. The density is a real ``tfd.TransformedDistribution``
    (:meth:`distribution`), and the model trains with ``compile()`` + ``fit(x)``, minimising
    the negative log-likelihood in nats.

    Args:
        layers: flow layers (:class:`~kflows.FlowLayer`), data side first.
        base: base distribution layer (:mod:`kflows.bases`), or a fixed ``tfd.Distribution``
            with event shape ``[D]`` (wrapped in :class:`~kflows.Fixed`); a standard normal
            by default.
        context_dim: number of context features of a conditional flow p(x | context); also
            inferred from the first ``(x, context)`` the flow sees.
        **kwargs: ``name``, ``dtype`` (defaults to the first layer's) and other
            ``keras.Model`` arguments.

    Context shapes: ``x`` is ``[N, D]`` and ``context`` ``[N, C]`` (or ``[C]``, shared by
    all rows). ``sample(n, context)`` with ``context`` ``[B, C]`` draws ``n`` samples for
    each context and returns ``[n, B, D]``; with ``[C]`` it returns ``[n, D]``.

    Example:
        >>> flow = kflows.Flow([kflows.MaskedAutoregressive(), kflows.Reverse(),
        ...                     kflows.MaskedAutoregressive()])
        >>> flow.compile()
        >>> flow.fit(x, epochs=10, batch_size=256)
        >>> flow.log_prob(x[:5]), flow.sample(3, seed=0)
    """

    def __init__(
        self,
        layers,
        base: Base | tfd.Distribution | None = None,
        context_dim: int | None = None,
        **kwargs,
    ):
        layers = list(layers)
        for layer in layers:
            if not isinstance(layer, FlowLayer):
                raise TypeError(
                    f"Expected kflows FlowLayer instances; got {type(layer).__name__}: {layer!r}."
                )
        if layers and kwargs.get("dtype") is None:
            kwargs["dtype"] = layers[0].dtype_policy
        super().__init__(**kwargs)
        for layer in layers:
            if layer.compute_dtype != self.compute_dtype:
                raise ValueError(
                    f"Expected every layer to compute in the flow's dtype {self.compute_dtype}; "
                    f"{layer.name} computes in {layer.compute_dtype}."
                )
        if isinstance(base, tfd.Distribution):
            base = Fixed(base, dtype=self.dtype_policy)
        if base is not None and not isinstance(base, Base):
            raise TypeError(
                f"Expected a kflows base layer or a tfd.Distribution; got {type(base).__name__}."
            )
        self.flow_layers = layers
        track_items(self, "flow_layer", layers)
        self.base = base if base is not None else StandardNormal(dtype=self.dtype_policy)
        if context_dim is not None and (
            isinstance(context_dim, bool)
            or not isinstance(context_dim, numbers.Integral)
            or context_dim <= 0
        ):
            raise ValueError(
                f"Expected context_dim as an integer > 0 or None; got {context_dim!r}."
            )
        self.context_dim = None if context_dim is None else int(context_dim)
        self._event_dim = None
        self.nll = keras.metrics.Mean(name="loss")
        self.bits_per_dim = keras.metrics.Mean(name="bits_per_dim")

    # ------------------------------------------------------------------ building
    @property
    def event_dim(self) -> int | None:
        """Number of features D, known once the flow is built."""
        return self._event_dim

    def build(self, input_shape):
        if isinstance(input_shape, dict):
            x_shape, context_shape = input_shape["x"], input_shape.get("context")
        elif _is_shape(input_shape):
            x_shape, context_shape = input_shape, None
        elif isinstance(input_shape, (list, tuple)) and len(input_shape) in (1, 2):
            x_shape, context_shape = (*input_shape, None)[:2]
        else:
            raise ValueError(
                f"Expected an input shape [N, D], or a pair of shapes; got {input_shape!r}."
            )
        x_shape = tuple(x_shape)
        if not x_shape or x_shape[-1] is None:
            raise ValueError(f"Expected data of shape [N, D] with a known D; got {x_shape}.")
        if context_shape is not None:
            ctx_dim = int(tuple(context_shape)[-1])
            if self.context_dim is not None and ctx_dim != self.context_dim:
                raise ValueError(f"Expected context_dim {self.context_dim}; got {ctx_dim}.")
            self.context_dim = ctx_dim
        ctx_shape = None if self.context_dim is None else (None, self.context_dim)
        dim = int(x_shape[-1])
        for layer in self.flow_layers:
            if not layer.built:
                layer.build((None, dim), ctx_shape)
            elif layer.event_dim != dim:
                raise ValueError(
                    f"{layer.name} was built for {layer.event_dim} features; got {dim}."
                )
        if not self.base.built:
            self.base.build((dim,))
        self._event_dim = dim

    def get_build_config(self):
        return {"event_dim": self._event_dim} if self._event_dim is not None else None

    def build_from_config(self, config):
        if config and config.get("event_dim") is not None:
            self.build((None, config["event_dim"]))

    # ------------------------------------------------------------------ inputs
    def _prepare(self, x, context):
        """Checks public inputs (see :mod:`kflows.inputs`); builds the flow from them if needed.

        Tensors stay tensors (cast only), so gradients reach ``x`` and the context.
        """
        dtype = self.compute_dtype
        x = inputs.as_tensor(x, "x", self._event_dim, dtype)
        if context is not None:
            context = inputs.as_tensor(context, "context", self.context_dim, dtype, "C")
        if not self.built:
            shape = (None, x.shape[-1])
            self._build_once(shape if context is None else (shape, (None, context.shape[-1])))
        if self.context_dim is not None and context is None:
            raise ValueError(
                f"This flow is conditional (context_dim={self.context_dim}); pass a context."
            )
        if self.context_dim is None and context is not None:
            raise ValueError("This flow has no context (context_dim=None); got a context.")
        return x, context

    def _build_once(self, shape):
        """Builds under a lock and in the flow's distribution strategy (lazy first calls)."""
        with _BUILD_LOCK, self.distribute_strategy.scope():
            if not self.built:
                self.build(shape)

    def _require_built(self):
        if not self.built:
            raise ValueError(
                "The flow is not built yet, so it has no weights: fit it, call log_prob on "
                "data, call flow.build((None, D)), or pass event_dim=D to the builder."
            )

    # ------------------------------------------------------------------ TFP interop
    def bijector(self, context=None, training=False) -> tfb.Bijector:
        """The chain of the layers' bijectors, data side first in the list.

        Its first link is a :class:`~kflows.bijectors.RowGuard`: the identity on finite rows,
        it makes rows with a non-finite context NaN and rows of infinite data score ``-inf``.
        """
        self._require_built()
        if context is not None:
            context = inputs.as_tensor(context, "context", self.context_dim, self.compute_dtype)
        return tfb.Chain(
            [
                RowGuard(context, dtype=self.compute_dtype),
                *(layer.bijector(context, training=training) for layer in self.flow_layers),
            ],
            name="flow",
        )

    def distribution(
        self, context=None, training=False, name: str = "flow"
    ) -> tfd.TransformedDistribution:
        """The flow's density as a live ``tfd.TransformedDistribution``.

        With a ``context`` of shape ``[B, C]`` the distribution has batch shape ``[B]``.
        Its ``trainable_variables`` are the ``tf.Variable``s behind the flow's weights (the
        bijectors and the base expose them), so TFP training utilities such as
        ``tfp.vi.fit_surrogate_posterior`` train the flow. ``name`` tells two flows apart
        in a ``tfd.JointDistribution``.
        """
        self._require_built()
        if context is not None:
            context = inputs.as_tensor(context, "context", self.context_dim, self.compute_dtype)
        base = self.base.distribution()
        if context is not None and context.shape.rank > 1:
            base = tfd.BatchBroadcast(base, with_shape=tf.shape(context)[:-1])
        return tfd.TransformedDistribution(base, self.bijector(context, training), name=name)

    # ------------------------------------------------------------------ density & sampling
    def _score(self, x, context, training=False):
        """Log-density of checked tensors; outside training, overflow scores ``-inf``."""
        log_prob = self.distribution(context, training=training).log_prob(x)
        if training:
            return log_prob  # training data is checked finite; keep the step lean
        return overflow_as_zero_density(log_prob, x, context, self.weights)

    def call(self, inputs_, training=None):
        """``log_prob`` of ``x``, ``(x, context)`` or ``{"x", "context"}`` (``predict``)."""
        x, context = inputs.split(inputs_)
        x, context = self._prepare(x, context)
        return self._score(x, context, training=bool(training))

    def log_prob(self, x, context=None, training=False) -> tf.Tensor:
        """Log-density of ``x`` ``[..., D]`` in nats, shape ``[...]``.

        Never refuses a value: a row holding NaN (in ``x`` or its context) scores NaN, a
        row holding +-inf or so large that the computation overflows scores ``-inf``. Works
        eagerly (gradients reach ``x`` and ``context``), in a ``tf.function``, and on
        ``KerasTensor``s (functional API), where it returns the model's output.
        """
        if inputs.is_symbolic(x) and isinstance(x, keras.KerasTensor):
            return self(x if context is None else (x, context))
        x, context = self._prepare(x, context)
        return self._score(x, context, training=training)

    def _sample_args(self, num_samples, context, seed):
        num_samples = inputs.num_samples(num_samples)
        seed = inputs.stateless_seed(seed)
        self._require_built()
        if context is not None:
            context = inputs.as_tensor(
                context, "context", self.context_dim, self.compute_dtype, "C"
            )
        elif self.context_dim is not None:
            raise ValueError(
                f"This flow is conditional (context_dim={self.context_dim}); pass a context."
            )
        if context is not None and self.context_dim is None:
            raise ValueError("This flow has no context (context_dim=None); got a context.")
        return num_samples, context, seed

    def sample(self, num_samples, context=None, seed=None) -> tf.Tensor:
        """Draws samples; the same ``seed`` (int or int32 ``[2]``) gives the same samples.

        A context row holding NaN or inf gives NaN samples for that row.
        """
        num_samples, context, seed = self._sample_args(num_samples, context, seed)
        return self.distribution(context).sample(num_samples, seed=seed)

    def sample_and_log_prob(self, num_samples, context=None, seed=None):
        """Samples and their log-densities in one pass (fast for IAF-style layers)."""
        num_samples, context, seed = self._sample_args(num_samples, context, seed)
        return self.distribution(context).experimental_sample_and_log_prob(num_samples, seed=seed)

    # ------------------------------------------------------------------ data init
    @property
    def needs_data_init(self) -> bool:
        return any(layer.needs_data_init for layer in self.flow_layers)

    def initialize(self, x, context=None):
        """Runs data-dependent initialisation (e.g. ActNorm) on a batch, data side first."""
        x = inputs.check_array(x, "x", self._event_dim, self.compute_dtype)
        if context is not None:
            context = inputs.check_array(context, "context", self.context_dim, self.compute_dtype)
        x, context = self._prepare(x, context)
        for layer in self.flow_layers:
            if layer.needs_data_init:
                layer.initialize(x, context)
            x = layer.bijector(context).inverse(x)

    # ------------------------------------------------------------------ training
    def compile(self, optimizer=None, **kwargs):
        """``compile()`` with no arguments uses Adam(1e-3) and the negative log-likelihood.

        The flow reports ``loss`` (mean negative log-likelihood in nats, weighted by
        ``sample_weight``) and ``bits_per_dim``; ``loss``, ``metrics`` and
        ``weighted_metrics`` are refused, since Keras metrics compare targets with
        predictions and a flow has no targets. ``jit_compile`` defaults to ``"auto"``: XLA
        on GPU, off on CPU, where it measured slower; pass ``True`` or ``False`` to choose.
        """
        if kwargs.get("loss") is not None:
            raise ValueError(
                "A Flow trains on its negative log-likelihood; got a loss argument "
                f"({kwargs['loss']!r}). Override compute_loss to change it."
            )
        for key in ("metrics", "weighted_metrics", "loss_weights"):
            if kwargs.get(key):
                raise ValueError(
                    f"A Flow reports loss (mean NLL in nats) and bits_per_dim; got {key}="
                    f"{kwargs[key]!r}. Keras metrics compare targets with predictions and a "
                    "flow has no targets: compute other figures from flow.log_prob in a "
                    "callback instead."
                )
        kwargs.pop("loss", None)
        on_gpu = bool(tf.config.list_logical_devices("GPU"))
        if kwargs.get("jit_compile", "auto") == "auto" and not on_gpu:
            # On CPU, XLA runs a flow's small matmuls and elementwise ops on fewer threads
            # than TF's graph executor: ~25% slower steps on 2 cores (benchmarks/RESULTS.md).
            # jit_compile=True still forces it; on GPU Keras' "auto" (XLA) stays.
            kwargs["jit_compile"] = False
        if optimizer is None:
            optimizer = keras.optimizers.Adam(learning_rate=1e-3)
        super().compile(optimizer=optimizer, **kwargs)

    def compile_from_config(self, config):
        # Keras skips this for models that override compile(); ours takes the same arguments.
        self.compile(**keras.saving.deserialize_keras_object(config))
        if self.built:
            self.optimizer.build(self.trainable_variables)

    @property
    def metrics(self):
        return [self.nll, self.bits_per_dim]

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """Mean negative log-likelihood of a batch (``y_pred`` is its log-density).

        With ``sample_weight`` it is ``sum(w * nll) / sum(w)``. Under ``tf.distribute`` each
        replica returns its share (the mean divided by the number of replicas).
        """
        nll = -y_pred
        if sample_weight is None:
            loss = tf.reduce_mean(nll)
        else:
            w = tf.cast(tf.reshape(sample_weight, tf.shape(nll)), nll.dtype)
            loss = tf.reduce_sum(nll * w) / tf.maximum(tf.reduce_sum(w), 1e-12)
        if self.losses:
            loss = loss + tf.add_n([tf.cast(v, loss.dtype) for v in self.losses])
        # Gradients are summed across replicas, so each returns its share.
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        return loss / replicas if replicas > 1 else loss

    def _track(self, loss, log_prob, weight):
        """Updates ``loss`` and ``bits_per_dim`` so that they average over all rows seen."""
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        total = (
            tf.cast(tf.size(log_prob), loss.dtype)
            if weight is None
            else tf.reduce_sum(tf.cast(weight, loss.dtype))
        )
        self.nll.update_state(loss * replicas, sample_weight=total)
        self.bits_per_dim.update_state(
            -log_prob / (self._event_dim * math.log(2.0)), sample_weight=weight
        )
        return {m.name: m.result() for m in self.metrics}

    def train_step(self, data):
        x, context, weight = inputs.split(data, inputs.BATCH_KEYS)
        with tf.GradientTape() as tape:
            log_prob = self._score(x, context, training=True)
            loss = self.compute_loss(x=x, y_pred=log_prob, sample_weight=weight, training=True)
            scaled = self.optimizer.scale_loss(loss)
        weights = self.trainable_variables
        if weights:  # a flow of fixed layers only has nothing to update
            grads = tape.gradient(scaled, weights)
            self.optimizer.apply_gradients(zip(grads, weights, strict=True))
        return self._track(loss, log_prob, weight)

    def test_step(self, data):
        x, context, weight = inputs.split(data, inputs.BATCH_KEYS)
        log_prob = self._score(x, context, training=False)
        loss = self.compute_loss(x=x, y_pred=log_prob, sample_weight=weight, training=False)
        return self._track(loss, log_prob, weight)

    def predict_step(self, data):
        x, context = inputs.split(data)
        return self._score(*self._prepare(x, context), training=False)

    def _data(self, data, sample_weight, what: str, rows: int | None):
        """Any accepted form of data -> ``(dicts for Keras, a first batch)``, checked.

        In-memory data is checked whole now; a dataset is checked batch by batch as it
        streams. The first batch (``rows`` rows) builds the flow and initialises layers
        that learn from data.
        """
        if data is None:
            raise ValueError(f"Expected {what} data; got None.")
        dtype = self.compute_dtype
        widths = {"x": self._event_dim, "context": self.context_dim}
        if isinstance(data, tf.data.Dataset):
            if sample_weight is not None:
                raise ValueError(
                    "Expected sample weights inside the dataset ({'x', 'sample_weight'} "
                    "dicts) when the data is a dataset; got sample_weight= as well."
                )
            data = inputs.dataset_as_dicts(data, what, dtype, widths)
            if self.built and not self.needs_data_init:
                return data, None
            try:
                return data, next(iter(data))
            except StopIteration:
                raise ValueError(f"Expected {what} data; got an empty dataset.") from None
            except tf.errors.InvalidArgumentError as err:
                raise (_non_finite_error(err, 0) or err) from None
        if not isinstance(data, (np.ndarray, list, tuple, dict)) and not tf.is_tensor(data):
            raise TypeError(
                f"Expected {what} data as an array, a tensor, (x, context), a dict or a "
                f"tf.data.Dataset; got {type(data).__name__}. Wrap generators with "
                "tf.data.Dataset.from_generator."
            )
        x, context, weight = inputs.split(data, inputs.BATCH_KEYS)
        if weight is not None and sample_weight is not None:
            raise ValueError("Expected sample weights once; got them in the data and as well.")
        weight = weight if weight is not None else sample_weight
        batch = {"x": inputs.check_array(x, f"{what} x", widths["x"], dtype)}
        n = len(batch["x"])
        if context is not None:
            batch["context"] = inputs.check_array(
                context, f"{what} context", widths["context"], dtype, "C"
            )
            if len(batch["context"]) != n:
                raise ValueError(
                    f"Expected as many {what} context rows as x rows; got "
                    f"{len(batch['context'])} and {n}."
                )
        if weight is not None:
            batch["sample_weight"] = inputs.check_weights(weight, n, f"{what} sample_weight")
        first = {key: value[: rows or 32] for key, value in batch.items()}
        return batch, first

    def _start(self, first):
        """Builds the flow and initialises data-dependent layers from a first batch."""
        if first is not None:
            x, context = first["x"], first.get("context")
            if self.needs_data_init:
                self.initialize(np.asarray(x), None if context is None else np.asarray(context))
            elif not self.built:
                self._prepare(x, context)
        if getattr(self, "optimizer", None) is not None and not self.optimizer.built:
            # Slots created inside the first traced step make tf.function trace the whole
            # step twice; creating them now halves the time to the first step. The scope
            # puts them where the flow's strategy wants them (fit may run outside it).
            with self.distribute_strategy.scope():
                self.optimizer.build(self.trainable_variables)

    def fit(self, x=None, y=None, sample_weight=None, validation_data=None, **kwargs):
        """Keras ``fit`` on ``x``, ``(x, context)``, a dict or a ``tf.data.Dataset`` of them.

        A flow takes no targets. ``sample_weight`` (``[N]``, non-negative) weights each
        row's NLL; ``validation_data`` takes the same forms as ``x``. In-memory data is
        checked before training (shape, dtype, NaN/inf); a dataset is checked as it streams,
        and a non-finite batch stops training with an error naming it, with the weights
        from before that batch. Layers that initialise from data see the first batch.
        """
        if y is not None:
            raise ValueError(
                "A Flow takes no targets: pass fit(x) or fit((x, context)); got y as well."
            )
        if kwargs.get("class_weight") is not None:
            raise ValueError("A Flow has no classes; got class_weight. Use sample_weight.")
        data, first = self._data(x, sample_weight, "training", kwargs.get("batch_size"))
        if validation_data is not None:
            validation_data = self._data(validation_data, None, "validation", None)[0]
        self._start(first)
        tracker = _EpochTracker()
        callbacks = [*(kwargs.pop("callbacks", None) or []), tracker]
        try:
            return super().fit(data, validation_data=validation_data, callbacks=callbacks, **kwargs)
        except tf.errors.InvalidArgumentError as err:
            raise (_non_finite_error(err, tracker.epoch) or err) from None

    def evaluate(self, x=None, y=None, sample_weight=None, **kwargs):
        """Mean NLL in nats (``loss``) and ``bits_per_dim`` of ``x`` or ``(x, context)``.

        Takes the forms ``fit`` takes, ``sample_weight`` included; a weighted ``loss`` is
        ``sum(w * nll) / sum(w)`` over all rows.
        """
        if y is not None:
            raise ValueError("A Flow takes no targets: pass evaluate(x); got y as well.")
        data, first = self._data(x, sample_weight, "evaluation", kwargs.get("batch_size"))
        self._start(first)
        try:
            return super().evaluate(data, **kwargs)
        except tf.errors.InvalidArgumentError as err:
            raise (_non_finite_error(err, None) or err) from None

    def predict(self, x, **kwargs):
        """``log_prob`` of every row of ``x``, ``(x, context)`` or a dict, in batches.

        Rows holding NaN score NaN, as in :meth:`log_prob`.
        """
        if isinstance(x, tf.data.Dataset):
            return super().predict(x, **kwargs)
        data, context = inputs.split(x)
        data = {"x": inputs.as_tensor(data, "x", self._event_dim, self.compute_dtype)}
        if context is not None:
            data["context"] = inputs.as_tensor(
                context, "context", self.context_dim, self.compute_dtype, "C"
            )
        if not self.built:
            self._prepare(data["x"], data.get("context"))
        return super().predict(data, **kwargs)

    def save(self, filepath, overwrite=True, **kwargs):
        """Saves a ``.keras`` file; other formats cannot hold a flow and are refused."""
        from kflows.saving import check_save_path

        check_save_path(filepath)
        return super().save(filepath, overwrite=overwrite, **kwargs)

    # ------------------------------------------------------------------ export
    def export(self, filepath, format="tf_saved_model", verbose=None, **kwargs) -> str:
        """Exports a TF Serving SavedModel to ``filepath/<version>/``; see :func:`kflows.export`.

        Unlike ``keras.Model.export``, which writes one SavedModel with a ``call`` endpoint
        *at* ``filepath``, this writes a new version directory under ``filepath`` (the
        layout TF Serving watches) with ``log_prob``, ``sample``, ``sample_and_log_prob``
        and ``serving_default`` signatures, and returns its path. ``kwargs`` are
        ``version``, ``overwrite`` and ``warmup``. Other formats (``"onnx"``, ...) go to
        Keras' own ``export``.

        Example:
            >>> flow.export("models/maf")   # -> ".../models/maf/1", then ".../2", ...
        """
        if format != "tf_saved_model":
            return super().export(filepath, format=format, verbose=verbose, **kwargs)
        from kflows.export import export  # kflows.export imports this module

        return export(self, filepath, **kwargs)

    # ------------------------------------------------------------------ config
    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "dtype": keras.dtype_policies.serialize(self.dtype_policy),
            "layers": [keras.saving.serialize_keras_object(layer) for layer in self.flow_layers],
            "base": keras.saving.serialize_keras_object(self.base),
            "context_dim": self.context_dim,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        layers = [keras.saving.deserialize_keras_object(c) for c in config.pop("layers")]
        base = keras.saving.deserialize_keras_object(config.pop("base"))
        config["dtype"] = keras.dtype_policies.deserialize(config["dtype"])
        return cls(layers, base=base, **config)
