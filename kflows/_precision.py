"""Mixed precision in kflows: networks compute low, the maths of densities does not.

Under a mixed policy (``mixed_float16``, ``mixed_bfloat16``) a layer computes in the low
``compute_dtype`` and stores its weights in ``variable_dtype`` (float32). In kflows only
the conditioner networks' hidden layers compute low: their output layers (the transforms'
parameters), data, bijector maths, log-dets, base densities and the loss run in
``variable_dtype``. (A bfloat16 output layer rounds a shift of 3 to about 0.01: in the
benchmark a RealNVP then reached a test NLL 0.28 nats worse than in float32.)

Keras casts a layer's weights to the compute dtype when they are read inside a mixed
layer's call (autocasting); the weights that bijector maths, an output layer or a base
density reads must not be, so they are created with ``autocast=False``.
"""

from __future__ import annotations

import contextlib

import keras


class FullPrecisionWeights:
    """Mixin for a Keras layer whose own weights are read by maths, never by a network."""

    def add_weight(self, *args, autocast=False, **kwargs):
        """Keras' ``add_weight``; the weight is never autocast to a lower compute dtype."""
        return super().add_weight(*args, autocast=autocast, **kwargs)


@contextlib.contextmanager
def data_floatx(dtype):
    """Keras' ``floatx`` set to the flow's ``input_dtype`` while ``fit`` reads arrays.

    Keras' array adapters cast every float array to ``floatx`` (float32): a float64 flow's
    data would reach it rounded to float32. Setting ``floatx`` for the duration of the call
    keeps the data in the flow's dtype (``floatx`` is global: restored on exit).
    """
    previous = keras.config.floatx()
    if previous == dtype:
        yield
        return
    keras.config.set_floatx(dtype)
    try:
        yield
    finally:
        keras.config.set_floatx(previous)
