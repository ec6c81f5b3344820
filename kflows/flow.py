"""``Flow``: a Keras 3 model whose density is a TFP ``TransformedDistribution``."""

from __future__ import annotations

import threading

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from kflows import inputs, serving
from kflows._tracking import track_items
from kflows._validate import is_integer
from kflows.bases import Base, Fixed, StandardNormal
from kflows.bijectors import RowGuard, nan_unless_finite_weights, overflow_as_zero_density
from kflows.layers.layer import FlowLayer
from kflows.training import Trainer

tfb = tfp.bijectors
tfd = tfp.distributions


def _is_shape(s) -> bool:
    return isinstance(s, tf.TensorShape) or (
        isinstance(s, (list, tuple)) and all(d is None or isinstance(d, int) for d in s)
    )


def _open_batch_spec(tensor) -> tf.TensorSpec:
    """``tensor``'s spec with every axis but the last (features) of unknown size."""
    shape = tensor.shape
    if shape.rank:
        shape = [None] * (shape.rank - 1) + [shape[-1]]
    return tf.TensorSpec(shape, tensor.dtype)


#: Lazy building creates weights; two threads building one flow would create two sets.
_BUILD_LOCK = threading.RLock()


@keras.saving.register_keras_serializable(package="kflows")
class Flow(Trainer, keras.Model):
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
        event_dim: number of features D: builds the flow now; otherwise the first data
            builds it.
        **kwargs: ``name``, ``dtype`` (defaults to the first layer's) and other
            ``keras.Model`` arguments.

    Context shapes: ``x`` is ``[N, D]`` and ``context`` ``[N, C]`` (or ``[C]``, shared by
    all rows). ``sample(n, context)`` with ``context`` ``[B, C]`` draws ``n`` samples for
    each context and returns ``[n, B, D]``; with ``[C]`` it returns ``[n, D]``.

    Example:
        >>> x = kflows.data.two_moons(512)
        >>> flow = kflows.Flow([kflows.MaskedAutoregressive(), kflows.Reverse(),
        ...                     kflows.MaskedAutoregressive()])
        >>> flow.compile()
        >>> history = flow.fit(x, epochs=2, batch_size=256, verbose=0)
        >>> flow.log_prob(x[:5]).shape, flow.sample(3, seed=0).shape
        (TensorShape([5]), TensorShape([3, 2]))
    """

    def __init__(
        self,
        layers,
        base: Base | tfd.Distribution | None = None,
        context_dim: int | None = None,
        event_dim: int | None = None,
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
        policy = self.dtype_policy.name
        for layer in layers:
            if layer.dtype_policy.name != policy:
                raise ValueError(
                    f"Expected every layer in the flow's dtype policy {policy!r}; {layer.name} "
                    f"has {layer.dtype_policy.name!r}. Pass the same dtype= to each, or set "
                    "keras.mixed_precision.set_global_policy before building them."
                )
        if isinstance(base, tfd.Distribution):
            base = Fixed(base, dtype=self.dtype_policy)
        if base is not None and not isinstance(base, Base):
            raise TypeError(
                f"Expected a kflows base layer or a tfd.Distribution; got {type(base).__name__}."
            )
        if base is not None and base.dtype_policy.name != policy:
            if base.built:
                raise ValueError(
                    f"Expected a base in the flow's dtype policy {policy!r}; {base.name} is "
                    f"built in {base.dtype_policy.name!r}."
                )
            base.dtype_policy = self.dtype_policy  # no weights yet: it takes the flow's dtype
        self.flow_layers = layers
        track_items(self, "flow_layer", layers)
        self.base = base if base is not None else StandardNormal(dtype=self.dtype_policy)
        if context_dim is not None and not (is_integer(context_dim) and context_dim > 0):
            raise ValueError(
                f"Expected context_dim as an integer > 0 or None; got {context_dim!r}."
            )
        self.context_dim = None if context_dim is None else int(context_dim)
        self._event_dim = None
        # In the flow's precision: a float64 flow reports a float64 loss.
        self.nll = keras.metrics.Mean(name="loss", dtype=self.variable_dtype)
        self.bits_per_dim = keras.metrics.Mean(name="bits_per_dim", dtype=self.variable_dtype)
        if event_dim is not None:
            if not (is_integer(event_dim) and event_dim >= 1):
                raise TypeError(f"Expected event_dim as an integer >= 1; got {event_dim!r}.")
            shape = (None, int(event_dim))
            self.build(shape if context_dim is None else (shape, (None, self.context_dim)))

    # ------------------------------------------------------------------ dtypes
    @property
    def input_dtype(self):
        """Data, log-densities and the bijector maths use ``variable_dtype``.

        Under a mixed policy only the conditioner networks compute in the low
        ``compute_dtype``; see :mod:`kflows._precision`.
        """
        return self.variable_dtype

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
        dtype = self.input_dtype
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
            context = inputs.as_tensor(context, "context", self.context_dim, self.input_dtype)
        return tfb.Chain(
            [
                RowGuard(context, dtype=self.input_dtype),
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
        ``tfp.vi.fit_surrogate_posterior`` train the flow (one made outside any
        ``tf.distribute`` strategy; under a strategy see the README's "Scaling out").
        ``name`` tells two flows apart in a ``tfd.JointDistribution``.
        """
        self._require_built()
        if context is not None:
            context = inputs.as_tensor(context, "context", self.context_dim, self.input_dtype)
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
        return self._traced("log_prob", self._score, x, context, training=bool(training))

    def _sample_args(self, num_samples, context, seed):
        num_samples = inputs.num_samples(num_samples)
        seed = inputs.stateless_seed(seed)
        self._require_built()
        if context is not None:
            context = inputs.as_tensor(context, "context", self.context_dim, self.input_dtype, "C")
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
        return self._traced("sample", self._draw, num_samples, context, seed, with_log_prob=False)

    def sample_and_log_prob(self, num_samples, context=None, seed=None):
        """Samples and their log-densities in one pass (fast for IAF-style layers)."""
        num_samples, context, seed = self._sample_args(num_samples, context, seed)
        return self._traced(
            "sample_and_log_prob", self._draw, num_samples, context, seed, with_log_prob=True
        )

    def _draw(self, num_samples, context, seed, with_log_prob):
        """Samples (and their log-densities); all NaN if a weight is not finite."""
        distribution = self.distribution(context)
        if with_log_prob:
            drawn = distribution.experimental_sample_and_log_prob(num_samples, seed=seed)
        else:
            drawn = distribution.sample(num_samples, seed=seed)
        return nan_unless_finite_weights(drawn, self.weights)

    def _traced(self, name, fn, *args, **options):
        """Runs ``fn(*args, **options)`` as one graph per input signature when called eagerly.

        Eager TFP runs a flow op by op (hundreds of small ops per layer); a ``tf.function``
        per public method and signature (dtypes, ranks and feature sizes; batch sizes are
        left open, so a new batch size does not retrace) runs them as one graph, and
        gradients still reach tensor inputs. Inside a caller's own ``tf.function`` the ops
        join the caller's graph. The functions live outside Keras' attribute tracking, so
        saving and export never see them.
        """
        if not tf.executing_eagerly():
            return fn(*args, **options)
        for layer in self.flow_layers:
            layer.check_ready()  # Python checks would be skipped inside the traced graph
        args = [tf.constant(a, tf.int32) if isinstance(a, int) else a for a in args]
        specs = [None if a is None else _open_batch_spec(a) for a in args]
        present = [i for i, spec in enumerate(specs) if spec is not None]
        functions = self.__dict__.setdefault("_kflows_traced", {})
        key = (name, *sorted(options.items()), *specs)
        if key not in functions:

            def run(*tensors):
                full = [None] * len(args)
                for i, tensor in zip(present, tensors, strict=True):
                    full[i] = tensor
                return fn(*full, **options)

            functions[key] = tf.function(
                run, input_signature=[specs[i] for i in present], autograph=False
            )
        return functions[key](*(args[i] for i in present))

    # ------------------------------------------------------------------ data init
    @property
    def needs_data_init(self) -> bool:
        return any(layer.needs_data_init for layer in self.flow_layers)

    def initialize(self, x, context=None):
        """Runs data-dependent initialisation (e.g. ActNorm) on a batch, data side first."""
        x = inputs.check_array(x, "x", self._event_dim, self.input_dtype)
        if context is not None:
            context = inputs.check_array(context, "context", self.context_dim, self.input_dtype)
        x, context = self._prepare(x, context)
        for layer in self.flow_layers:
            if layer.needs_data_init:
                layer.initialize(x, context)
            x = layer.bijector(context).inverse(x)

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
            >>> flow = kflows.maf(num_layers=1, event_dim=2)
            >>> flow.export("models/maf")  # doctest: +ELLIPSIS
            '.../models/maf/1'
            >>> flow.export("models/maf")  # doctest: +ELLIPSIS
            '.../models/maf/2'
        """
        if format != "tf_saved_model":
            return super().export(filepath, format=format, verbose=verbose, **kwargs)
        return serving.export(self, filepath, **kwargs)

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
