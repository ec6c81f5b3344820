"""``Flow``: a Keras 3 model whose density is a TFP ``TransformedDistribution``."""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from kflows.bases import Base, Fixed, StandardNormal
from kflows.layers.base import FlowLayer

tfb = tfp.bijectors
tfd = tfp.distributions


def _is_shape(s) -> bool:
    return isinstance(s, tf.TensorShape) or (
        isinstance(s, (list, tuple)) and all(d is None or isinstance(d, int) for d in s)
    )


def _split(inputs):
    """``x``, ``(x, context)`` or ``{"x": ..., "context": ...}`` -> ``(x, context)``."""
    if isinstance(inputs, dict):
        unknown = set(inputs) - {"x", "context"}
        if "x" not in inputs or unknown:
            raise ValueError(
                "Expected a dict with keys 'x' and optionally 'context'; "
                f"got keys {sorted(inputs)}."
            )
        return inputs["x"], inputs.get("context")
    if isinstance(inputs, (tuple, list)) and not _is_shape(inputs):
        if len(inputs) == 1:
            return inputs[0], None
        if len(inputs) == 2:
            return inputs[0], inputs[1]
        raise ValueError(f"Expected x or (x, context); got a sequence of {len(inputs)} items.")
    return inputs, None


def _flow_dataset(data):
    """A dataset of ``(x, context)`` pairs as one of ``{"x", "context"}`` dicts.

    Keras reads a dataset's 2-tuples as ``(x, y)``; a flow has no targets, so a pair is
    always data and its context.
    """
    if isinstance(data, tf.data.Dataset):
        spec = data.element_spec
        if (
            isinstance(spec, tuple)
            and len(spec) == 2
            and all(isinstance(s, tf.TensorSpec) for s in spec)
        ):
            return data.map(lambda x, context: {"x": x, "context": context})
    return data


def stateless_seed(seed) -> tf.Tensor:
    """An int32 ``[2]`` stateless seed from an int, a pair, a tensor, or None (random)."""
    if seed is None:
        return tfp.random.sanitize_seed(None)
    if isinstance(seed, (int, np.integer)):
        return tf.constant([0, int(seed)], dtype=tf.int32)
    seed = tf.convert_to_tensor(seed)
    if seed.shape != (2,) or not seed.dtype.is_integer:
        raise ValueError(f"Expected an int or an integer seed of shape [2]; got {seed!r}.")
    return tf.cast(seed, tf.int32)


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
        self.base = base if base is not None else StandardNormal(dtype=self.dtype_policy)
        if context_dim is not None and int(context_dim) <= 0:
            raise ValueError(f"Expected context_dim > 0 or None; got {context_dim!r}.")
        self.context_dim = None if context_dim is None else int(context_dim)
        self._event_dim = None
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
        else:
            x_shape, context_shape = _split(input_shape)
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
    def _as_tensor(self, value, what: str, width: int | None):
        if isinstance(value, tf.Tensor) and not tf.executing_eagerly():
            tensor = value  # symbolic: checked by shapes only
        else:
            array = np.asarray(value) if not isinstance(value, tf.Tensor) else value.numpy()
            if array.dtype.kind not in "fiu":
                raise TypeError(f"Expected {what} of a real numeric dtype; got {array.dtype}.")
            if array.ndim == 0:
                raise ValueError(f"Expected {what} of shape [..., {width or 'D'}]; got a scalar.")
            if array.size and not np.all(np.isfinite(array)):
                bad = int(np.sum(~np.isfinite(array)))
                raise ValueError(f"Expected finite {what}; got {bad} NaN or inf value(s).")
            tensor = tf.convert_to_tensor(array)
        if tensor.dtype != self.compute_dtype:
            tensor = tf.cast(tensor, self.compute_dtype)
        if width is not None and tensor.shape[-1] is not None and tensor.shape[-1] != width:
            raise ValueError(
                f"Expected {what} with {width} features (shape [..., {width}]); "
                f"got shape {tuple(tensor.shape)}."
            )
        return tensor

    def _prepare(self, x, context):
        """Validates and converts public inputs; builds the flow from them if needed."""
        x = self._as_tensor(x, "x", self._event_dim)
        if context is not None:
            context = self._as_tensor(context, "context", self.context_dim)
        if not self.built:
            shape = (None, x.shape[-1])
            self.build(shape if context is None else (shape, (None, context.shape[-1])))
        if self.context_dim is not None and context is None:
            raise ValueError(
                f"This flow is conditional (context_dim={self.context_dim}); pass a context."
            )
        if self.context_dim is None and context is not None:
            raise ValueError("This flow has no context (context_dim=None); got a context.")
        return x, context

    def _require_built(self):
        if not self.built:
            raise ValueError(
                "The flow is not built yet: fit it, call log_prob on data, or call "
                "flow.build((None, D))."
            )

    # ------------------------------------------------------------------ TFP interop
    def bijector(self, context=None, training=False) -> tfb.Bijector:
        """The chain of the layers' bijectors, base side to data side."""
        self._require_built()
        return tfb.Chain(
            [layer.bijector(context, training=training) for layer in self.flow_layers],
            name="flow",
        )

    def distribution(self, context=None, training=False) -> tfd.TransformedDistribution:
        """The flow's density as a live ``tfd.TransformedDistribution``.

        With a ``context`` of shape ``[B, C]`` the distribution has batch shape ``[B]``.
        Its ``trainable_variables`` are the ``tf.Variable``s behind the flow's weights, so
        TFP training utilities such as ``tfp.vi.fit_surrogate_posterior`` train the flow.
        """
        self._require_built()
        if context is not None:
            context = tf.cast(tf.convert_to_tensor(context), self.compute_dtype)
        base = self.base.distribution()
        if context is not None and context.shape.rank > 1:
            base = tfd.BatchBroadcast(base, with_shape=tf.shape(context)[:-1])
        dist = tfd.TransformedDistribution(base, self.bijector(context, training), name="flow")
        # tf.Module collects variables from attributes: expose the Keras-owned ones.
        dist._kflows_variables = tuple(v.value for v in self.trainable_variables)
        return dist

    # ------------------------------------------------------------------ density & sampling
    def call(self, inputs, training=None):
        """``log_prob`` of ``x`` or ``(x, context)``: what ``predict`` returns."""
        x, context = _split(inputs)
        if (self.context_dim is not None) != (context is not None):
            raise ValueError(
                f"Expected {'(x, context)' if self.context_dim else 'x alone'} for this flow "
                f"(context_dim={self.context_dim})."
            )
        return self.distribution(context, training=bool(training)).log_prob(x)

    def log_prob(self, x, context=None, training=False) -> tf.Tensor:
        """Log-density of ``x`` ``[..., D]`` in nats, shape ``[...]``."""
        x, context = self._prepare(x, context)
        return self.distribution(context, training=training).log_prob(x)

    def _sample_args(self, num_samples, context, seed):
        if isinstance(num_samples, (int, np.integer)) and num_samples < 0:
            raise ValueError(f"Expected num_samples >= 0; got {num_samples}.")
        self._require_built()
        if context is not None:
            context = self._as_tensor(context, "context", self.context_dim)
        elif self.context_dim is not None:
            raise ValueError(
                f"This flow is conditional (context_dim={self.context_dim}); pass a context."
            )
        return context, stateless_seed(seed)

    def sample(self, num_samples, context=None, seed=None) -> tf.Tensor:
        """Draws samples; the same ``seed`` (int or int32 ``[2]``) gives the same samples."""
        context, seed = self._sample_args(num_samples, context, seed)
        return self.distribution(context).sample(num_samples, seed=seed)

    def sample_and_log_prob(self, num_samples, context=None, seed=None):
        """Samples and their log-densities in one pass (fast for IAF-style layers)."""
        context, seed = self._sample_args(num_samples, context, seed)
        return self.distribution(context).experimental_sample_and_log_prob(num_samples, seed=seed)

    # ------------------------------------------------------------------ data init
    @property
    def needs_data_init(self) -> bool:
        return any(layer.needs_data_init for layer in self.flow_layers)

    def initialize(self, x, context=None):
        """Runs data-dependent initialisation (e.g. ActNorm) on a batch, data side first."""
        x, context = self._prepare(x, context)
        for layer in self.flow_layers:
            if layer.needs_data_init:
                layer.initialize(x, context)
            x = layer.bijector(context).inverse(x)

    # ------------------------------------------------------------------ training
    def compile(self, optimizer=None, **kwargs):
        """``compile()`` with no arguments uses Adam(1e-3) and the negative log-likelihood.

        ``jit_compile`` defaults to ``"auto"``: XLA on GPU, off on CPU, where it measured
        slower; pass ``jit_compile=True`` or ``False`` to choose.
        """
        if kwargs.get("loss") is not None:
            raise ValueError(
                "A Flow trains on its negative log-likelihood; got a loss argument "
                f"({kwargs['loss']!r}). Override compute_loss to change it."
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

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        nll = -y_pred
        if sample_weight is None:
            loss = tf.reduce_mean(nll)
        else:
            w = tf.cast(tf.reshape(sample_weight, tf.shape(nll)), nll.dtype)
            loss = tf.reduce_sum(nll * w) / tf.maximum(tf.reduce_sum(w), 1e-12)
        if self.losses:
            loss = loss + tf.add_n([tf.cast(v, loss.dtype) for v in self.losses])
        # Under tf.distribute each replica returns its share: gradients are summed across
        # replicas, and Keras' loss tracker multiplies the share back (as Keras' own losses do).
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        return loss / replicas if replicas > 1 else loss

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        self.bits_per_dim.update_state(
            -y_pred / (self._event_dim * math.log(2.0)), sample_weight=sample_weight
        )
        return super().compute_metrics(x, y, y_pred, sample_weight)

    def _check_data(self, x, what: str):
        """Validates in-memory data up front, before any step runs; returns a first batch."""
        if x is None:
            raise ValueError(f"Expected {what} data; got None.")
        if isinstance(x, tf.data.Dataset):
            first = next(iter(x))
            return first[0] if isinstance(first, tuple) and len(first) == 1 else first
        data, context = _split(x)
        for part, name, width in ((data, "x", self._event_dim), (context, "context", None)):
            if part is None:
                continue
            arr = np.asarray(part)
            if arr.ndim != 2 or arr.shape[0] == 0:
                raise ValueError(
                    f"Expected non-empty {what} {name} of shape [N, D]; got shape {arr.shape}."
                )
            self._as_tensor(arr[:0], name, width)  # dtype and width
            if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
                bad = np.flatnonzero(~np.all(np.isfinite(arr), axis=1))
                raise ValueError(
                    f"Expected finite {what} {name}; got NaN or inf in {bad.size} row(s), "
                    f"first at row {bad[0]}."
                )
        if context is not None and len(context) != len(data):
            raise ValueError(
                f"Expected as many context rows as x rows; got {len(context)} and {len(data)}."
            )
        return x

    def fit(self, x=None, y=None, **kwargs):
        """Keras ``fit`` on ``x``, ``(x, context)``, ``{"x", "context"}`` or a dataset of them.

        A flow takes no targets. In-memory data is validated before training (shape, dtype,
        NaN/inf), and layers that initialise from data see the first batch.
        """
        if y is not None:
            raise ValueError(
                "A Flow takes no targets: pass fit(x) or fit((x, context)); got y as well."
            )
        x = _flow_dataset(x)
        if "validation_data" in kwargs:
            kwargs["validation_data"] = _flow_dataset(kwargs["validation_data"])
        first = self._check_data(x, "training")
        if not isinstance(x, tf.data.Dataset):
            size = kwargs.get("batch_size") or 32
            first = tf.nest.map_structure(lambda a: np.asarray(a)[:size], first)
        if self.needs_data_init:
            self.initialize(*_split(first))
        elif not self.built:
            self._prepare(*_split(first))
        if getattr(self, "optimizer", None) is not None and not self.optimizer.built:
            # Slots created inside the first traced step make tf.function trace the whole
            # step twice; creating them now halves the time to the first step.
            self.optimizer.build(self.trainable_variables)
        return super().fit(x, **kwargs)

    def evaluate(self, x=None, y=None, **kwargs):
        """Mean NLL in nats (``loss``) and ``bits_per_dim`` of ``x`` or ``(x, context)``."""
        if y is not None:
            raise ValueError("A Flow takes no targets: pass evaluate(x); got y as well.")
        x = _flow_dataset(x)
        self._check_data(x, "evaluation")
        return super().evaluate(x, **kwargs)

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
