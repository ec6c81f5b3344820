"""The NaN guard of :meth:`kflows.Flow.fit`: a non-finite step is never applied.

On by default. In the compiled train step, the loss and the gradients' squared norm are
checked before the optimizer runs: a gradient entry that is NaN or inf, or finite but too
large to square (Adam's second moment would overflow and make the next update NaN), fails
the check. A failing step skips ``apply_gradients`` (a ``tf.cond``), restores the
non-trainable state its forward pass moved (batch-norm statistics), raises a flag and
copies the batch into a buffer, all on the device. Every later step of that ``fit`` is
skipped too, so the weights and the optimizer state stay those from before the bad step.
A callback reads the flag (at most once a second, and at each epoch's end, so the guard
adds no per-step host round trip) and stops training; ``fit`` then saves the batch to a
new ``.npz`` file, runs :func:`kflows.diagnostics.check` on it, and raises
:class:`NonFiniteError` naming the batch, the file and the layer that first made a NaN or
inf.

Under mixed precision (``keras.optimizers.LossScaleOptimizer``) only the unscaled loss is
checked: loss scaling skips steps with non-finite scaled gradients by design, and halves
its scale.
"""

from __future__ import annotations

import os
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf

from kflows import diagnostics

__all__ = ["NonFiniteError"]

#: Seconds between two reads of the guard's flag during an epoch (each read waits for the
#: device); the flag is also read at every epoch's end.
POLL_SECONDS = 1.0


class NonFiniteError(ValueError):
    """Training met a non-finite loss or gradient; that step was not applied.

    Raised by :meth:`kflows.Flow.fit` after training stopped, so callbacks finished
    normally (``on_train_end`` ran) and the flow holds the weights and optimizer state
    from before the bad step.

    Attributes:
        epoch: the epoch of the bad batch (counted from 0).
        batch: the bad batch within that epoch (counted from 0).
        path: the ``.npz`` file holding the batch (``x``, and ``context`` and
            ``sample_weight`` when given).
        report: the :class:`kflows.diagnostics.Report` of the flow on that batch (None if
            the diagnostics themselves failed; the message says why).
        history: the ``keras.callbacks.History`` of the stopped ``fit``.

    Example:
        >>> x = np.full((64, 2), 1e20, np.float32)  # so far out that the NLL overflows
        >>> flow = kflows.maf(num_layers=1, hidden_units=(8,))
        >>> flow.compile()
        >>> try:
        ...     flow.fit(x, epochs=3, batch_size=32, verbose=0, nan_guard="guard")
        ... except kflows.NonFiniteError as err:
        ...     print(err.epoch, err.batch, np.load(err.path)["x"].shape)
        ...     print(len(err.history.history["loss"]))  # epochs run, the stopped one too
        0 0 (32, 2)
        1
    """

    def __init__(self, message, *, epoch, batch, path, report, history):
        super().__init__(message)
        self.epoch = epoch
        self.batch = batch
        self.path = path
        self.report = report
        self.history = history


def check_option(nan_guard):
    """``nan_guard`` as given to ``fit``: True, False, or a directory for the saved batch."""
    if isinstance(nan_guard, bool) or isinstance(nan_guard, (str, os.PathLike)):
        return nan_guard
    raise TypeError(
        "Expected nan_guard=True, False or a directory (str or os.PathLike) for the saved "
        f"batch; got {nan_guard!r} ({type(nan_guard).__name__})."
    )


def _state_variable(value, dtype):
    # On-read variables: each replica writes its own copy inside the step, with no
    # cross-replica traffic; the callback reads the first replica's (every replica
    # decides alike) and gathers each replica's share of the batch.
    return tf.Variable(
        value,
        dtype=dtype,
        trainable=False,
        synchronization=tf.VariableSynchronization.ON_READ,
        aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
    )


class GuardState:
    """The variables the compiled step writes when it skips a step.

    A plain object, not a Keras or ``tf.train`` trackable: nothing of it is saved with the
    flow. The batch buffers hold ``capacity`` rows (the largest batch seen), since XLA
    cannot change a variable's shape.
    """

    def __init__(self, strategy, capacity, event_dim, context_dim, dtype):
        self.capacity = int(capacity)
        self.event_dim = int(event_dim)
        self.context_dim = context_dim
        self.dtype = tf.as_dtype(dtype)
        with strategy.scope():
            self.tripped = _state_variable(0, tf.int32)
            self.batch = _state_variable(0, tf.int32)  # steps run in this epoch
            self.bad_batch = _state_variable(-1, tf.int32)
            self.bad_loss = _state_variable(0.0, tf.float32)
            self.bad_gradients = _state_variable(0, tf.int32)
            self.rows = _state_variable(0, tf.int32)  # rows of the bad batch (this replica)
            self.x = _state_variable(tf.zeros([self.capacity, self.event_dim], dtype), dtype)
            self.context = None
            if context_dim is not None:
                zeros = tf.zeros([self.capacity, context_dim], dtype)
                self.context = _state_variable(zeros, dtype)
            self.weighted = _state_variable(0, tf.int32)
            self.weight = _state_variable(tf.zeros([self.capacity], dtype), dtype)

    def fits(self, capacity, event_dim, context_dim, dtype) -> bool:
        return (
            capacity <= self.capacity
            and event_dim == self.event_dim
            and context_dim == self.context_dim
            and tf.as_dtype(dtype) == self.dtype
        )

    # ------------------------------------------------------------------ in the step
    @staticmethod
    def snapshot(variables):
        """Values of the float non-trainable weights a forward pass may move, to restore."""
        return [
            (v, tf.identity(v.value))
            for v in variables
            if tf.as_dtype(v.dtype).is_floating and not v.trainable
        ]

    def step(self, optimizer, loss, grads, weights, batch, saved):
        """Applies the gradients if the loss and their squared norm are finite; else skips.

        Runs inside the compiled train step, in each replica's context.
        """
        grads_finite = tf.constant(True)
        if not isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
            # The squared norm is finite only if every entry is finite and none is so large
            # that squaring it overflows, as Adam's and RMSprop's second moments would
            # (a finite 1e20 gradient makes them inf, and the next update NaN).
            squares = [tf.reduce_sum(tf.square(_dense(g))) for g in grads if g is not None]
            if squares:
                grads_finite = tf.math.is_finite(tf.add_n(squares))
        finite = tf.logical_and(tf.math.is_finite(loss), grads_finite)
        replica = tf.distribute.get_replica_context()
        if replica.num_replicas_in_sync > 1:
            # Every replica must take the same branch: the update all-reduces gradients.
            bad = replica.all_reduce(
                tf.distribute.ReduceOp.SUM, tf.cast(tf.logical_not(finite), tf.float32)
            )
            finite = tf.equal(bad, 0.0)
        apply = tf.logical_and(finite, tf.equal(self.tripped, 0))
        args = (optimizer, loss, grads_finite, grads, weights, batch, saved)
        if not tf.distribute.has_strategy():
            tf.cond(apply, lambda: self._apply(*args), lambda: self._skip(*args))
        else:
            # apply_gradients synchronises replicas (merge_call), which cannot happen inside
            # a cond in a replica context: decide in the cross-replica context, as Keras'
            # LossScaleOptimizer does, and run each branch on every replica.
            replica.merge_call(self._decide, args=(apply, *args))
        self.batch.assign_add(1)

    def _decide(self, strategy, apply, *args):
        apply = strategy.experimental_local_results(apply)[0]  # every replica's is alike
        tf.cond(
            apply,
            lambda: strategy.extended.call_for_each_replica(self._apply, args=args),
            lambda: strategy.extended.call_for_each_replica(self._skip, args=args),
        )

    @staticmethod
    def _apply(optimizer, loss, grads_finite, grads, weights, batch, saved):
        if weights:
            optimizer.apply_gradients(zip(grads, weights, strict=True))

    def _skip(self, optimizer, loss, grads_finite, grads, weights, batch, saved):
        for variable, value in saved:
            variable.assign(value)
        tf.cond(
            tf.equal(self.tripped, 0),
            lambda: self._record(loss, grads_finite, batch),
            lambda: None,
        )

    def _record(self, loss, grads_finite, batch):
        x, context, weight = batch
        rows = tf.shape(x)[0]
        self.x.assign(self._fit(x))
        if self.context is not None and context is not None:
            if context.shape.rank == 1:  # one context shared by every row
                context = tf.broadcast_to(context, [rows, self.context_dim])
            self.context.assign(self._fit(tf.cast(context, self.dtype)))
        if weight is not None:
            self.weight.assign(self._fit(tf.reshape(tf.cast(weight, self.dtype), [-1])))
            self.weighted.assign(1)
        self.rows.assign(rows)
        self.bad_loss.assign(tf.cast(loss, tf.float32))
        self.bad_gradients.assign(tf.cast(tf.logical_not(grads_finite), tf.int32))
        self.bad_batch.assign(self.batch)
        self.tripped.assign(1)

    def _fit(self, t):
        """``t`` cut or zero-padded to ``capacity`` rows: a static shape XLA accepts."""
        t = tf.cast(t, self.dtype)
        rows = t.shape[0]
        if rows is not None:  # static (always under XLA)
            t = t[: self.capacity]
            pad = self.capacity - min(rows, self.capacity)
        else:
            t = t[: self.capacity]
            pad = self.capacity - tf.shape(t)[0]
        padding = [[0, pad]] + [[0, 0]] * (t.shape.rank - 1)
        return tf.ensure_shape(tf.pad(t, padding), [self.capacity, *t.shape[1:]])

    # ------------------------------------------------------------------ eager
    def reset(self):
        self.tripped.assign(0)
        self.batch.assign(0)
        self.bad_batch.assign(-1)
        self.weighted.assign(0)

    def is_tripped(self) -> bool:
        return bool(self.tripped.numpy())

    def saved_batch(self, strategy) -> dict:
        """The bad batch as numpy arrays, every replica's share in order."""

        def gather(variable):
            rows = strategy.experimental_local_results(self.rows)
            parts = strategy.experimental_local_results(variable)
            return np.concatenate(
                [p.numpy()[: min(int(n), self.capacity)] for p, n in zip(parts, rows, strict=True)]
            )

        arrays = {"x": gather(self.x)}
        if self.context is not None:
            arrays["context"] = gather(self.context)
        if self.weighted.numpy():
            arrays["sample_weight"] = gather(self.weight)
        return arrays

    def total_rows(self, strategy) -> int:
        return int(sum(int(n) for n in strategy.experimental_local_results(self.rows)))


def _dense(grad):
    return grad.values if isinstance(grad, tf.IndexedSlices) else grad


class GuardCallback(keras.callbacks.Callback):
    """Stops ``fit`` once the guard has tripped; reads the flag at most once a second."""

    def __init__(self, state: GuardState, directory, strategy):
        super().__init__()
        self.state = state
        self.directory = directory
        self.strategy = strategy
        self.epoch = 0
        self.tripped_epoch = None
        self._last_poll = 0.0

    def on_train_begin(self, logs=None):
        self.state.reset()
        self.tripped_epoch = None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        self.state.batch.assign(0)
        self._last_poll = time.monotonic()

    # Polled before a batch, not after: a callback with an on_train_batch_end hook makes
    # Keras convert every step's logs to Python numbers, a host round trip per step.
    def on_train_batch_begin(self, batch, logs=None):
        if time.monotonic() - self._last_poll >= POLL_SECONDS:
            self._poll()

    def on_epoch_end(self, epoch, logs=None):
        self._poll()

    def _poll(self):
        self._last_poll = time.monotonic()
        if self.tripped_epoch is None and self.state.is_tripped():
            self.tripped_epoch = self.epoch
            self.model.stop_training = True

    def raise_if_tripped(self, flow, history):
        """After ``fit``: saves the bad batch, diagnoses it, raises :class:`NonFiniteError`."""
        if self.tripped_epoch is None:
            return
        state = self.state
        arrays = state.saved_batch(self.strategy)
        epoch, batch = self.tripped_epoch, int(state.bad_batch.numpy())
        path = _save(arrays, self.directory, f"nonfinite-epoch{epoch}-batch{batch}")
        try:
            report = diagnostics.check(
                flow,
                arrays["x"],
                arrays.get("context"),
                training=True,
                gradients=True,
                sample_weight=arrays.get("sample_weight"),
            )
            found = report.first_non_finite
            where = (
                f"On that batch, {found}."
                if found is not None
                else "On that batch, re-run eagerly, every value, log-det and gradient was "
                "finite and could be squared: the compiled step rounded differently (XLA, "
                "another device or kernel)."
            )
            table = f"\nPer layer, on that batch (data side first):\n{report}"
        except Exception as err:  # the guard's own error must still reach the user
            report, where, table = None, f"Diagnosing that batch failed: {err!r}.", ""
        loss = float(state.bad_loss.numpy())
        got = f"loss={loss:g}"
        if state.bad_gradients.numpy():
            got += (
                " and gradients whose squared norm is NaN or inf (a NaN or inf entry, or "
                "entries too large to square without overflowing, as Adam squares them)"
            )
        rows, total = len(arrays["x"]), state.total_rows(self.strategy)
        kept = f"{rows} rows" if rows == total else f"its first {rows} of {total} rows"
        message = (
            f"Training stopped at batch {batch} of epoch {epoch} (counted from 0): expected "
            f"a finite loss and gradients of finite squared norm; got {got}. That step was "
            "not applied: the weights and the optimizer state are those from before it "
            f"(err.history holds the epochs' logs). {where} The batch ({kept}) is saved in "
            f"{path} (np.load gives {', '.join(arrays)}). Try a smaller learning rate, "
            "gradient clipping (e.g. keras.optimizers.Adam(1e-3, clipnorm=1.0)) or data "
            "standardised to zero mean and unit variance (kflows.Standardize); "
            f"fit(..., nan_guard=False) turns this check off.{table}"
        )
        raise NonFiniteError(
            message, epoch=epoch, batch=batch, path=path, report=report, history=history
        )


def _save(arrays, directory, stem) -> str:
    """Writes ``arrays`` to a new ``.npz`` in ``directory``; never replaces a file."""
    if directory is True:
        directory = tempfile.mkdtemp(prefix="kflows-nonfinite-")
    directory = os.path.abspath(os.fspath(directory))
    os.makedirs(directory, exist_ok=True)
    for attempt in range(1000):
        path = os.path.join(directory, f"{stem}{'' if attempt == 0 else f'-{attempt}'}.npz")
        try:
            with open(path, "xb") as file:  # exclusive: fails if the file exists
                np.savez(file, **arrays)
            return path
        except FileExistsError:
            continue
    raise FileExistsError(f"Expected a free file name for {stem}.npz in {directory}; all taken.")


def prepare(flow, nan_guard, first) -> GuardCallback | None:
    """Sets up the guard of one ``fit``: its state (reused across fits) and its callback.

    Changing the state (on/off, a larger batch, another dtype) drops the traced train
    step, which reads the state when it is traced.
    """
    nan_guard = check_option(nan_guard)
    current = getattr(flow, "_nan_guard", None)
    if nan_guard is False:
        state = None
    else:
        capacity = max(1, len(first["x"]))
        dtype = first["x"].dtype
        if current is not None and current.fits(capacity, flow.event_dim, flow.context_dim, dtype):
            state = current
        else:
            state = GuardState(
                flow.distribute_strategy, capacity, flow.event_dim, flow.context_dim, dtype
            )
    if state is not current:
        flow._nan_guard = state
        flow.train_function = None  # retrace: the step reads the state when traced
    if state is None:
        return None
    return GuardCallback(state, nan_guard, flow.distribute_strategy)
