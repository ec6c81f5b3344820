"""Bijectors that compute their value and log-det in one pass.

A conditioned bijector (autoregressive, coupling) gets the value and the log-det of a point
from the same conditioner pass; asking TFP for them separately would run the conditioner
twice. :class:`OnePassBijector` computes both at once (FlowJAX's ``transform_and_log_det``)
and remembers the log-det next to the output, so that the log-det TFP asks for afterwards
costs nothing. It is written against TFP's public ``tfb.Bijector`` API: the documented
hooks (``_forward``, ``_inverse``, ...) and the public log-det methods.
"""

from __future__ import annotations

import functools
import weakref
from typing import NamedTuple

import tensorflow as tf
import tensorflow_probability as tfp

tfb = tfp.bijectors


class _Strong:
    """A strong reference with the call interface of ``weakref.ref``."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value

    def __call__(self):
        return self.value


class _Entry(NamedTuple):
    x: object  # reference to the base-side tensor (strong if it was the input, else weak)
    y: object  # reference to the data-side tensor
    log_det: object  # the log-det as computed: forward at x, or inverse at y
    direction: str  # "forward" (computed from x) or "inverse" (computed from y)

    def fldj(self):
        return self.log_det if self.direction == "forward" else -self.log_det

    def ildj(self):
        return self.log_det if self.direction == "inverse" else -self.log_det


class _LogDetMemo:
    """Log-dets computed next to a value, kept until asked for once.

    An entry holds its input strongly and its output weakly, like TFP's own bijector cache:
    it never keeps a tensor alive longer than TFP does, and it goes when the output goes.
    Reading an entry removes it, so a log-det is never served twice: after the weights
    change, a fresh ``log_prob`` of the same tensor computes a fresh log-det.
    """

    def __init__(self):
        self._entries: dict = {}

    def put(self, x, y, log_det, direction: str):
        """Remembers the log-det of ``forward(x) = y`` computed in ``direction``."""
        keys = (("x", id(x)), ("y", id(y)))
        # The callback holds no reference to the entry, so no cycle delays freeing ``x``.
        drop = functools.partial(_LogDetMemo._drop, weakref.ref(self), keys)
        if direction == "forward":
            entry = _Entry(_Strong(x), weakref.ref(y, drop), log_det, direction)
        else:
            entry = _Entry(weakref.ref(x, drop), _Strong(y), log_det, direction)
        for key in keys:
            self._entries[key] = entry

    def take(self, side: str, tensor) -> _Entry | None:
        """The entry remembered for ``tensor`` on ``side`` (``"x"`` or ``"y"``), once."""
        entry = self._entries.get((side, id(tensor)))
        if entry is None or getattr(entry, side)() is not tensor:
            return None
        self._remove(entry)
        return entry

    def _remove(self, entry):
        for key, ref in (("x", entry.x), ("y", entry.y)):
            value = ref()
            if value is not None and self._entries.get((key, id(value))) is entry:
                del self._entries[(key, id(value))]

    @staticmethod
    def _drop(memo_ref, keys, dead_ref):
        # The output died: forget its entry (its id may be reused by a new tensor).
        memo = memo_ref()
        if memo is None:
            return
        for key in keys:
            entry = memo._entries.get(key)
            if entry is not None and (entry.x is dead_ref or entry.y is dead_ref):
                memo._entries.pop(key, None)

    def __len__(self):
        return len({id(entry) for entry in self._entries.values()})

    # Weak references do not pickle or deep-copy; a copy starts with an empty memo.
    def __getstate__(self):
        return {}

    def __setstate__(self, state):
        self._entries = {}


class OnePassBijector(tfb.Bijector):
    """Base of the bijectors whose value and log-det come from one pass.

    To write one: subclass it, call ``super().__init__`` with the usual ``tfb.Bijector``
    arguments, and implement

    - ``_forward_and_log_det(x)`` returning ``(y, fldj)``, and
    - ``_inverse_and_log_det(y)`` returning ``(x, ildj)``,

    with the log-dets reduced over ``forward_min_event_ndims``, as
    ``_forward_log_det_jacobian`` would return them.

    ``forward``/``inverse`` keep the log-det they computed next to their output; the log-det
    methods take it from there (once) and otherwise compute it afresh. So
    ``tfd.TransformedDistribution.log_prob(y)``, which calls ``inverse(y)`` and then the
    forward log-det at that ``x``, and ``experimental_sample_and_log_prob``, which calls
    ``forward(x)`` and then the forward log-det at ``x``, each cost one pass (also inside a
    ``tfb.Chain`` or a ``tfb.Invert``).

    The public ``forward_log_det_jacobian`` and ``inverse_log_det_jacobian`` are redefined
    here (same signatures) to go through that memo only. ``tfb.Bijector``'s own versions
    also keep every log-det in TFP's cache, keyed by the input tensor for as long as that
    tensor lives, even after the weights changed: scoring the same ``y`` twice around an
    optimizer step would reuse the first log-det, stale and without gradients. (That holds
    for any TFP bijector with trainable parameters, e.g. ``tfb.Scale(tf.Variable(...))``;
    a kflows flow is immune because its first bijector, :class:`RowGuard`, hands every
    other bijector fresh tensors, but a bare ``TransformedDistribution`` is not.)

    Values still go through TFP's cache: ``forward(x)`` of an ``x`` that came out of
    ``inverse(y)`` is ``y`` itself, as long as ``x`` lives. As with that cache, a value or
    log-det computed outside a ``tf.GradientTape`` carries no gradient inside it.

    References:
        FlowJAX's ``AbstractBijection.transform_and_log_det``
        (https://github.com/danielward27/flowjax).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._one_pass_memo = _LogDetMemo()

    def _forward_and_log_det(self, x):
        raise NotImplementedError(f"{type(self).__name__} must implement _forward_and_log_det.")

    def _inverse_and_log_det(self, y):
        raise NotImplementedError(f"{type(self).__name__} must implement _inverse_and_log_det.")

    def _forward(self, x):
        y, fldj = self._forward_and_log_det(x)
        self._one_pass_memo.put(x, y, fldj, direction="forward")
        return y

    def _inverse(self, y):
        x, ildj = self._inverse_and_log_det(y)
        self._one_pass_memo.put(x, y, ildj, direction="inverse")
        return x

    def _forward_log_det_jacobian(self, x):
        entry = self._one_pass_memo.take("x", x)
        return self._forward_and_log_det(x)[1] if entry is None else entry.fldj()

    def _inverse_log_det_jacobian(self, y):
        entry = self._one_pass_memo.take("y", y)
        return self._inverse_and_log_det(y)[1] if entry is None else entry.ildj()

    def forward_log_det_jacobian(
        self, x, event_ndims=None, name="forward_log_det_jacobian", **kwargs
    ):
        """The forward log-det at ``x``, summed over ``event_ndims`` (default 1) dimensions."""
        with tf.name_scope(self.name), tf.name_scope(name):
            x = tf.convert_to_tensor(x, dtype_hint=self.dtype)
            fldj = self._forward_log_det_jacobian(x, **kwargs)
            return self._sum_over_event(fldj, x, event_ndims)

    def inverse_log_det_jacobian(
        self, y, event_ndims=None, name="inverse_log_det_jacobian", **kwargs
    ):
        """The inverse log-det at ``y``, summed over ``event_ndims`` (default 1) dimensions."""
        with tf.name_scope(self.name), tf.name_scope(name):
            y = tf.convert_to_tensor(y, dtype_hint=self.dtype)
            ildj = self._inverse_log_det_jacobian(y, **kwargs)
            return self._sum_over_event(ildj, y, event_ndims)

    def _sum_over_event(self, log_det, z, event_ndims):
        """Sums a log-det over the event dimensions beyond ``forward_min_event_ndims``."""
        min_ndims = self.forward_min_event_ndims
        ndims = min_ndims if event_ndims is None else tf.get_static_value(event_ndims)
        if ndims is None or int(ndims) < min_ndims:
            raise ValueError(
                f"Expected a static event_ndims >= {min_ndims} for {self.name}; "
                f"got {event_ndims!r}."
            )
        extra = int(ndims) - min_ndims
        if extra == 0:
            return log_det
        batch_shape = tf.shape(z)[: tf.rank(z) - min_ndims]
        log_det = log_det + tf.zeros(batch_shape, log_det.dtype)  # broadcast, then sum
        return tf.reduce_sum(log_det, axis=tf.range(-extra, 0))
