"""How a :class:`~kflows.Flow` trains: ``compile``, ``fit``, ``evaluate``, ``predict``.

A flow takes no targets and trains on its negative log-likelihood. Data reaches the steps
as ``{"x", "context", "sample_weight"}`` dicts, read by :mod:`kflows.inputs`: in-memory data
is checked whole before training, a dataset batch by batch as it streams. The reported
``loss`` is the (weighted) mean NLL over every row seen, and ``bits_per_dim`` its value in
bits per feature.
"""

from __future__ import annotations

import math
import os
import re

import keras
import numpy as np
import tensorflow as tf

from kflows import inputs
from kflows import nan_guard as guard
from kflows._precision import data_floatx


def jit_compile_policy(jit_compile="auto"):
    """The ``jit_compile`` a flow compiles with: XLA on GPU, off on CPU unless asked for.

    On CPU, XLA runs a flow's small matmuls and element-wise ops on fewer threads than TF's
    graph executor: about 25% slower steps on 2 cores (benchmarks/RESULTS.md). ``True`` or
    ``False`` choose; on GPU Keras' ``"auto"`` (XLA) stays.
    """
    if jit_compile == "auto" and not tf.config.list_logical_devices("GPU"):
        return False
    return jit_compile


def _multi_worker_logs(logs):
    """A step's logs in the form Keras reduces across the workers of a multi-worker strategy.

    Keras 3 (3.15) reduces the logs of a ``MultiWorkerMirroredStrategy`` step with several
    workers by ``strategy.reduce("MEAN", value, axis=0)``, which refuses scalars ("Invalid
    reduction dimension 0 for input with 0 dimensions", tensorflow/tensorflow#72388). There,
    each replica gives its value as a ``[1]`` vector; the reduction then averages them over
    the replicas, as Keras does for the other strategies.
    """
    strategy = tf.distribute.get_strategy()
    replicas = strategy.num_replicas_in_sync
    if replicas == 1 or replicas == len(strategy.extended.worker_devices):
        return logs  # one device, or every replica on this host
    return {name: tf.reshape(value, [1]) for name, value in logs.items()}


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


class Trainer:
    """The ``keras.Model`` training methods of :class:`~kflows.Flow` (a mixin).

    The flow supplies ``_score(x, context, training)``, ``_prepare``, ``initialize``,
    ``needs_data_init``, ``event_dim`` and ``context_dim``.
    """

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
        kwargs["jit_compile"] = jit_compile_policy(kwargs.get("jit_compile", "auto"))
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
        return _multi_worker_logs({m.name: m.result() for m in self.metrics})

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Keras 3 (3.15) first reduces a batch across replicas with strategy.reduce, which
        # takes one tensor: with several MultiWorkerMirroredStrategy workers it fails on the
        # dicts a flow trains on ("Attempt to convert a value ({'x': PerReplica...")). fit
        # and evaluate build the flow and its optimizer before (_start): nothing is left to
        # build symbolically.
        optimizer = getattr(self, "optimizer", None)
        if self.built and (optimizer is None or optimizer.built):
            return
        super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    def train_step(self, data):
        x, context, weight = inputs.split(data, inputs.BATCH_KEYS)
        guard = getattr(self, "_nan_guard", None)  # read when the step is traced
        saved = guard.snapshot(self.non_trainable_weights) if guard is not None else ()
        with tf.GradientTape() as tape:
            log_prob = self._score(x, context, training=True)
            loss = self.compute_loss(x=x, y_pred=log_prob, sample_weight=weight, training=True)
            scaled = self.optimizer.scale_loss(loss)
        weights = self.trainable_variables
        grads = tape.gradient(scaled, weights) if weights else []
        if guard is not None:
            guard.step(self.optimizer, loss, grads, weights, (x, context, weight), saved)
        elif weights:  # a flow of fixed layers only has nothing to update
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

    def _data(self, data, sample_weight, what: str, rows: int | None, need_first=False):
        """Any accepted form of data -> ``(dicts for Keras, a first batch)``, checked.

        In-memory data is checked whole now; a dataset is checked batch by batch as it
        streams. The first batch (``rows`` rows) builds the flow, initialises layers that
        learn from data and sizes the NaN guard's buffer; a dataset is read for it only
        when one of those needs it.
        """
        if data is None:
            raise ValueError(f"Expected {what} data; got None.")
        dtype = self.input_dtype
        widths = {"x": self._event_dim, "context": self.context_dim}
        if isinstance(data, tf.data.Dataset):
            if sample_weight is not None:
                raise ValueError(
                    "Expected sample weights inside the dataset ({'x', 'sample_weight'} "
                    "dicts) when the data is a dataset; got sample_weight= as well."
                )
            data = inputs.dataset_as_dicts(data, what, dtype, widths)
            if self.built and not self.needs_data_init and not need_first:
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

    def _start(self, first, initialize: bool = True):
        """Builds the flow from a first batch and, in ``fit``, initialises layers from it."""
        if first is not None:
            x, context = first["x"], first.get("context")
            if initialize and self.needs_data_init:
                self.initialize(np.asarray(x), None if context is None else np.asarray(context))
            elif not self.built:
                self._prepare(x, context)
        if getattr(self, "optimizer", None) is not None and not self.optimizer.built:
            # Slots created inside the first traced step make tf.function trace the whole
            # step twice; creating them now halves the time to the first step. The scope
            # puts them where the flow's strategy wants them (fit may run outside it).
            with self.distribute_strategy.scope():
                self.optimizer.build(self.trainable_variables)

    def fit(
        self,
        x=None,
        y=None,
        sample_weight=None,
        validation_data=None,
        nan_guard: bool | str | os.PathLike = True,
        **kwargs,
    ):
        """Keras ``fit`` on ``x``, ``(x, context)``, a dict or a ``tf.data.Dataset`` of them.

        A flow takes no targets. ``sample_weight`` (``[N]``, non-negative) weights each
        row's NLL; ``validation_data`` takes the same forms as ``x``. In-memory data is
        checked before training (shape, dtype, NaN/inf); a dataset is checked as it streams,
        and a non-finite batch stops training with an error naming it, with the weights
        from before that batch. Layers that initialise from data see the first batch.

        The NaN guard (``nan_guard``, on by default) never applies a step whose loss or
        gradients are NaN or inf (or whose gradients are too large to square, as Adam
        does): training stops, the weights and optimizer state stay
        those from before that step, the batch is saved to a new ``.npz`` file (in a new
        temporary directory, or in the directory ``nan_guard`` names), and
        :class:`kflows.NonFiniteError` names the batch, the file and the layer that first
        made a NaN or inf on it (see :mod:`kflows.nan_guard`). ``nan_guard=False`` turns
        it off.
        """
        if y is not None:
            raise ValueError(
                "A Flow takes no targets: pass fit(x) or fit((x, context)); got y as well."
            )
        if kwargs.get("class_weight") is not None:
            raise ValueError("A Flow has no classes; got class_weight. Use sample_weight.")
        nan_guard = guard.check_option(nan_guard)
        data, first = self._data(
            x, sample_weight, "training", kwargs.get("batch_size"), need_first=bool(nan_guard)
        )
        if validation_data is not None:
            validation_data = self._data(validation_data, None, "validation", None)[0]
        self._start(first)
        watch = guard.prepare(self, nan_guard, first)
        tracker = _EpochTracker()
        callbacks = [*(kwargs.pop("callbacks", None) or []), tracker]
        if watch is not None:
            callbacks.insert(0, watch)  # stops training before other callbacks' epoch ends
        try:
            with data_floatx(self.input_dtype):  # Keras would round float64 data to float32
                history = super().fit(
                    data, validation_data=validation_data, callbacks=callbacks, **kwargs
                )
        except tf.errors.InvalidArgumentError as err:
            raise (_non_finite_error(err, tracker.epoch) or err) from None
        if watch is not None:
            watch.raise_if_tripped(self, history)
        return history

    def evaluate(self, x=None, y=None, sample_weight=None, **kwargs):
        """Mean NLL in nats (``loss``) and ``bits_per_dim`` of ``x`` or ``(x, context)``.

        Takes the forms ``fit`` takes, ``sample_weight`` included; a weighted ``loss`` is
        ``sum(w * nll) / sum(w)`` over all rows.
        """
        if y is not None:
            raise ValueError("A Flow takes no targets: pass evaluate(x); got y as well.")
        data, first = self._data(x, sample_weight, "evaluation", kwargs.get("batch_size"))
        self._start(first, initialize=False)  # evaluating never changes the weights
        try:
            with data_floatx(self.input_dtype):
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
        data = {"x": inputs.as_tensor(data, "x", self._event_dim, self.input_dtype)}
        if context is not None:
            data["context"] = inputs.as_tensor(
                context, "context", self.context_dim, self.input_dtype, "C"
            )
        if not self.built:
            self._prepare(data["x"], data.get("context"))
        with data_floatx(self.input_dtype):
            return super().predict(data, **kwargs)
