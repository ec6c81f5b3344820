"""Bijectors whose maths reads a Keras layer's weights through callables."""

from __future__ import annotations

import keras
import tensorflow as tf

from kflows.bijectors.one_pass import OnePassBijector


class LayerVariables:
    """Mixin: a bijector that lists the variables of the layer whose weights it reads.

    ``tf.Module`` (which every TFP bijector is) finds variables in its attributes only; a
    bijector that reaches a Keras layer's weights through a conditioner callable would
    report none, and ``trainable_variables``, ``tfp.vi`` and gradient tapes would miss
    them. Pass ``variables=layer.variables`` (Keras or ``tf.Variable``s) to expose them.
    """

    def __init__(self, *args, variables=(), **kwargs):
        super().__init__(*args, **kwargs)
        self._layer_variables = tuple(
            v.value if isinstance(v, keras.Variable) else v for v in variables
        )


class LayerBijector(LayerVariables, OnePassBijector):
    """Base: a one-pass bijector over vectors whose parameters a Keras layer's weights give.

    The bijector's parameters reach it through callables, not as tensors TFP could slice
    or batch (``_parameter_properties`` is empty), and it acts on the last axis
    (``forward_min_event_ndims=1``). ``parameters`` is the subclass's ``dict(locals())``;
    the other keywords go on to :class:`~kflows.bijectors.OnePassBijector` (e.g. ``dtype``).
    """

    def __init__(self, parameters, variables=(), validate_args=False, name=None, **kwargs):
        super().__init__(
            variables=variables,
            forward_min_event_ndims=1,
            validate_args=validate_args,
            parameters=parameters,
            name=name,
            **kwargs,
        )

    @classmethod
    def _parameter_properties(cls, dtype):
        return {}


class EventSized:
    """Mixin: a bijector over events of ``self._event_size`` features (the last axis).

    ``_checked(z)`` refuses a static last axis of another size, and with
    ``validate_args`` checks a dynamic one in the graph.
    """

    _event_size: int

    @property
    def event_size(self) -> int:
        return self._event_size

    def _checked(self, z):
        size = z.shape[-1]
        if size is not None and size != self._event_size:
            raise ValueError(
                f"Expected {self._event_size} features (the last axis); got shape {z.shape}."
            )
        if size is None and self.validate_args:
            with tf.control_dependencies(
                [tf.debugging.assert_equal(tf.shape(z)[-1], self._event_size)]
            ):
                return tf.identity(z)
        return z
