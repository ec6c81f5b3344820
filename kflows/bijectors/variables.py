"""Bijectors whose maths reads a Keras layer's weights through callables."""

from __future__ import annotations

import keras


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
