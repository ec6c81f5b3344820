"""The base of kflows' conditioner networks: the *network* axis of a flow layer.

A flow layer is *structure* x *transform* x *network*. The structure decides which
features a network sees and which it parametrises, the transform how many parameters each
transformed feature needs; the network, a :class:`Conditioner`, maps what it sees (and an
optional context) to those parameters. The structure tells its conditioner the output size
with :meth:`Conditioner.set_output` before building it, so one conditioner class serves
every structure and transform.
"""

from __future__ import annotations

import keras
import tensorflow as tf


def hidden_widths(hidden_units) -> tuple[int, ...]:
    """Hidden layer widths as a tuple of positive ints; an int means one layer."""
    units = (hidden_units,) if isinstance(hidden_units, int) else tuple(hidden_units)
    if not units or any(isinstance(u, bool) or int(u) != u or int(u) <= 0 for u in units):
        raise ValueError(f"Expected hidden_units to be positive integers; got {hidden_units!r}.")
    return tuple(int(u) for u in units)


def broadcast_concat(x, context):
    """``concat([x, context], -1)`` with the context broadcast to x's batch shape."""
    shape = tf.concat([tf.shape(x)[:-1], tf.shape(context)[-1:]], axis=0)
    shape_ctx = tf.concat([tf.shape(context)[:-1], tf.shape(x)[-1:]], axis=0)
    x = tf.broadcast_to(x, tf.broadcast_dynamic_shape(tf.shape(x), shape_ctx))
    context = tf.broadcast_to(context, tf.broadcast_dynamic_shape(tf.shape(context), shape))
    return tf.concat([x, context], axis=-1)


class Conditioner(keras.layers.Layer):
    """A network mapping features (and a context) to the parameters of a transform.

    ``call(x, context=None)`` maps ``x`` ``[..., D_in]`` to ``[..., out_features,
    num_params]``. The output layer is zero-initialised, so the flow layer that owns the
    conditioner starts as the identity (every kflows transform is the identity at zero
    parameters). The hidden-layer hyperparameters and their defaults live here, once.

    To add a network: subclass in one new file of ``kflows/networks/``; take
    hyperparameters in ``__init__`` (JSON values, returned by ``get_config``), create
    weights in ``build(x_shape, context_shape=None)`` using ``self.out_features`` and
    ``self.num_params``, implement ``call``; set ``autoregressive = True`` if output ``i``
    depends only on the inputs before ``i`` (what :class:`~kflows.MaskedAutoregressive`
    needs); register it serializable and export it from ``kflows/networks/__init__.py``.
    Under a mixed precision policy, compute the output layer in ``self.variable_dtype``
    (see :mod:`kflows._precision`).

    Args:
        hidden_units: widths of the hidden layers (all equal when ``residual``).
        activation: hidden activation.
        residual: add each hidden layer's input to its output (Nash & Durkan, 2019).
    """

    #: True when output feature i depends only on the input features before i.
    autoregressive: bool = False

    def __init__(self, hidden_units=(128, 128), activation="relu", residual=False, **kwargs):
        super().__init__(**kwargs)
        self.hidden_units = hidden_widths(hidden_units)
        if residual and len(set(self.hidden_units)) != 1:
            raise ValueError(
                f"Expected equal hidden_units with residual=True; got {self.hidden_units}."
            )
        self.activation = keras.activations.get(activation)
        self.residual = bool(residual)
        self.out_features = None
        self.num_params = None

    def set_output(self, out_features: int, num_params: int) -> None:
        """Called by the owning flow layer before ``build``: the shape of one output row."""
        if self.built and (out_features, num_params) != (self.out_features, self.num_params):
            raise ValueError(
                f"{self.name} is already built for {self.out_features} x {self.num_params} "
                f"outputs; got {out_features} x {num_params}. A conditioner serves one flow "
                "layer: pass a new one (or a config) to each layer."
            )
        self.out_features, self.num_params = int(out_features), int(num_params)

    def get_build_config(self):
        # The owning flow layer builds its conditioner (after set_output); a deserialized
        # conditioner must not build itself before it knows its output size.
        return None

    def get_config(self):
        return {
            **super().get_config(),
            "hidden_units": list(self.hidden_units),
            "activation": keras.activations.serialize(self.activation),
            "residual": self.residual,
        }


def get(spec, default: type[Conditioner], dtype, **defaults) -> Conditioner:
    """A fresh, unbuilt conditioner from a layer, a dict of arguments, a Keras config or None.

    ``None`` gives ``default(**defaults)``; a dict of arguments such as
    ``{"hidden_units": [64, 64]}`` gives ``default(**defaults, **spec)``; a Keras config
    (with ``class_name``) is deserialized. ``dtype`` is the owning layer's dtype policy:
    the conditioner computes in it.
    """
    if spec is None:
        return default(dtype=dtype, **defaults)
    if isinstance(spec, dict):
        if "class_name" in spec:
            spec = keras.saving.deserialize_keras_object(spec)
        else:
            return default(**{**defaults, **spec, "dtype": dtype})
    if not isinstance(spec, Conditioner):
        raise TypeError(
            "Expected a kflows conditioner (a kflows.networks.Conditioner layer), a dict of "
            f"its arguments or None; got {type(spec).__name__}: {spec!r}."
        )
    if spec.built:
        raise ValueError(
            f"Expected an unbuilt conditioner; {spec.name} is built (it serves another "
            "layer). Pass a new one, or a dict of arguments."
        )
    wanted = keras.dtype_policies.get(dtype)
    if spec.compute_dtype != wanted.compute_dtype:
        raise ValueError(
            f"Expected a conditioner computing in the layer's dtype {wanted.compute_dtype}; "
            f"{spec.name} computes in {spec.compute_dtype}. Pass dtype= to both."
        )
    return spec
