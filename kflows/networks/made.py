"""Keras 3 conditioner networks: a masked autoregressive MLP (MADE) and a plain MLP.

Both take an optional ``context`` tensor, zero-initialise their output layer (so that the
flow layer that owns them starts as the identity) and emit all the parameters of a layer in
one fused output of shape ``[..., D, num_params]``.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf

from kflows._tracking import track_items


def _units(hidden_units) -> tuple[int, ...]:
    units = (hidden_units,) if isinstance(hidden_units, int) else tuple(hidden_units)
    if not units or any(int(u) <= 0 for u in units):
        raise ValueError(f"Expected hidden_units to be positive integers; got {hidden_units!r}.")
    return tuple(int(u) for u in units)


def resolve_order(order, dim: int, seed: int | None) -> np.ndarray:
    """The autoregressive order: position of each feature, a permutation of ``range(dim)``.

    ``order`` is ``"left-to-right"``, ``"right-to-left"``, ``"random"`` (drawn with the
    frozen ``np.random.RandomState(seed)`` stream, so a saved config rebuilds the same
    order) or an explicit sequence.
    """
    if isinstance(order, str):
        if order == "left-to-right":
            return np.arange(dim)
        if order == "right-to-left":
            return np.arange(dim)[::-1].copy()
        if order == "random":
            return np.random.RandomState(seed).permutation(dim)
        raise ValueError(
            "Expected order 'left-to-right', 'right-to-left', 'random' or a permutation; "
            f"got {order!r}."
        )
    arr = np.asarray(order, dtype=np.int64)
    if arr.shape != (dim,) or sorted(arr.tolist()) != list(range(dim)):
        raise ValueError(f"Expected order to be a permutation of range({dim}); got {order!r}.")
    return arr


def draw_seed(seed: int | None) -> int:
    """``seed``, or a fresh one when None: a config then records the seed actually used."""
    return int(np.random.randint(2**31 - 1)) if seed is None else int(seed)


def made_masks(order: np.ndarray, hidden_units: Sequence[int], residual: bool):
    """Connectivity masks of a MADE (Germain et al., 2015).

    Input feature i has degree ``order[i] + 1``. Hidden units get degrees cycling through
    ``1 .. D-1``; a hidden unit of degree k sees inputs of degree <= k, and output i sees
    hidden units of degree < degree(i), so output i depends on the inputs before it only.

    Returns:
        (masks, degrees): masks of the input layer, the hidden-to-hidden layers and the
        output layer, and the hidden degrees.
    """
    dim = len(order)
    in_deg = order + 1
    hidden_deg = [np.arange(h) % max(dim - 1, 1) + 1 for h in hidden_units]
    if residual:
        # Residual blocks add their input back, so all hidden layers share one degree set.
        hidden_deg = [hidden_deg[0]] * len(hidden_units)
    masks = [in_deg[:, None] <= hidden_deg[0][None, :]]
    for prev, nxt in zip(hidden_deg[:-1], hidden_deg[1:], strict=True):
        masks.append(prev[:, None] <= nxt[None, :])
    masks.append(hidden_deg[-1][:, None] < in_deg[None, :])
    return masks, hidden_deg


def _broadcast_concat(x, context):
    """``concat([x, context], -1)`` with the context broadcast to x's batch shape."""
    shape = tf.concat([tf.shape(x)[:-1], tf.shape(context)[-1:]], axis=0)
    shape_ctx = tf.concat([tf.shape(context)[:-1], tf.shape(x)[-1:]], axis=0)
    x = tf.broadcast_to(x, tf.broadcast_dynamic_shape(tf.shape(x), shape_ctx))
    context = tf.broadcast_to(context, tf.broadcast_dynamic_shape(tf.shape(context), shape))
    return tf.concat([x, context], axis=-1)


@keras.saving.register_keras_serializable(package="kflows")
class MADE(keras.layers.Layer):
    """Masked autoencoder for distribution estimation, in Keras 3.

    Maps ``x`` of shape ``[..., D]`` (and an optional ``context`` ``[..., C]``) to
    autoregressive parameters ``[..., D, num_params]``: the parameters of feature i depend
    only on the features before i in ``order``, and on the context.

    Args:
        num_params: parameters per feature.
        hidden_units: widths of the hidden layers (all equal when ``residual``).
        order: input ordering, see :func:`resolve_order`.
        residual: use residual blocks between hidden layers (Nash & Durkan, 2019).
        activation: hidden activation.
        seed: seed of a ``"random"`` order.

    References:
        Germain, Gregor, Murray, Larochelle. MADE: Masked Autoencoder for Distribution
        Estimation. ICML 2015.
    """

    def __init__(
        self,
        num_params: int,
        hidden_units=(128, 128),
        order="left-to-right",
        residual: bool = False,
        activation="relu",
        seed: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_params = int(num_params)
        self.hidden_units = _units(hidden_units)
        if residual and len(set(self.hidden_units)) != 1:
            raise ValueError(
                f"Expected equal hidden_units with residual=True; got {self.hidden_units}."
            )
        self.order = order if isinstance(order, str) else [int(i) for i in order]
        self.residual = bool(residual)
        self.activation = keras.activations.get(activation)
        self.seed = draw_seed(seed) if order == "random" else seed

    def build(self, x_shape, context_shape=None):
        dim = int(x_shape[-1])
        order = resolve_order(self.order, dim, self.seed)
        masks, _ = made_masks(order, self.hidden_units, self.residual)
        # Output unit d * num_params + p belongs to feature d.
        masks[-1] = np.repeat(masks[-1], self.num_params, axis=1)
        dtype = self.variable_dtype
        self._masks = [m.astype(dtype) for m in masks]
        sizes = [dim, *self.hidden_units, dim * self.num_params]
        self.kernels, self.biases = [], []
        for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            last = i == len(sizes) - 2
            init = "zeros" if last else "glorot_uniform"
            self.kernels.append(
                self.add_weight((n_in, n_out), initializer=init, name=f"kernel_{i}")
            )
            self.biases.append(self.add_weight((n_out,), initializer="zeros", name=f"bias_{i}"))
        track_items(self, "kernel", self.kernels)
        track_items(self, "bias", self.biases)
        self.context_kernel = None
        if context_shape is not None:
            self.context_kernel = self.add_weight(
                (int(context_shape[-1]), self.hidden_units[0]), name="context_kernel"
            )

    def _dense(self, h, i):
        return tf.matmul(h, self.kernels[i] * self._masks[i]) + self.biases[i]

    def call(self, x, context=None):
        if (context is None) != (self.context_kernel is None):
            built = "with" if self.context_kernel is not None else "without"
            raise ValueError(
                f"This MADE was built {built} a context; got context="
                f"{'None' if context is None else 'a tensor'}."
            )
        dim = self._masks[0].shape[0]
        h = self._dense(tf.reshape(x, [-1, dim]), 0)
        batch = tf.shape(x)[:-1]
        if context is not None:
            # The context enters the first hidden layer unmasked: it precedes every feature.
            h = tf.reshape(h, tf.concat([batch, [self.hidden_units[0]]], 0))
            # tensordot, not matmul: a context [C] shared by every row has rank 1.
            h = h + tf.tensordot(context, self.context_kernel, axes=1)
            batch = tf.shape(h)[:-1]
            h = tf.reshape(h, [-1, self.hidden_units[0]])
        n_hidden = len(self.hidden_units)
        for i in range(1, n_hidden):
            z = self._dense(self.activation(h), i)
            h = h + z if self.residual else z
        out = self._dense(self.activation(h), n_hidden)
        return tf.reshape(out, tf.concat([batch, [dim, self.num_params]], 0))

    def get_config(self):
        return {
            **super().get_config(),
            "num_params": self.num_params,
            "hidden_units": list(self.hidden_units),
            "order": self.order,
            "residual": self.residual,
            "activation": keras.activations.serialize(self.activation),
            "seed": self.seed,
        }


@keras.saving.register_keras_serializable(package="kflows")
class MLP(keras.layers.Layer):
    """A dense conditioner: ``[..., D_in]`` (+ context) to ``[..., out_features, num_params]``.

    Args:
        out_features: number of transformed features.
        num_params: parameters per transformed feature.
        hidden_units: widths of the hidden layers (all equal when ``residual``).
        residual: add each hidden layer's input to its output.
        activation: hidden activation.
    """

    def __init__(
        self,
        out_features: int,
        num_params: int,
        hidden_units=(128, 128),
        residual: bool = False,
        activation="relu",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.out_features = int(out_features)
        self.num_params = int(num_params)
        self.hidden_units = _units(hidden_units)
        if residual and len(set(self.hidden_units)) != 1:
            raise ValueError(
                f"Expected equal hidden_units with residual=True; got {self.hidden_units}."
            )
        self.residual = bool(residual)
        self.activation = keras.activations.get(activation)

    def build(self, x_shape, context_shape=None):
        n_in = int(x_shape[-1]) + (int(context_shape[-1]) if context_shape is not None else 0)
        self.hidden = []
        for i, units in enumerate(self.hidden_units):
            layer = keras.layers.Dense(units, dtype=self.dtype_policy, name=f"dense_{i}")
            layer.build((None, n_in))
            self.hidden.append(layer)
            n_in = units
        track_items(self, "hidden", self.hidden)
        self.out = keras.layers.Dense(
            self.out_features * self.num_params,
            kernel_initializer="zeros",
            dtype=self.dtype_policy,
            name="out",
        )
        self.out.build((None, n_in))

    def call(self, x, context=None):
        h = x if context is None else _broadcast_concat(x, context)
        batch = tf.shape(h)[:-1]
        # The width comes from build: in a graph, broadcasting x against the context can
        # leave h's static last dimension unknown.
        h = tf.reshape(h, [-1, self.hidden[0].kernel.shape[0]])
        for i, layer in enumerate(self.hidden):
            z = self.activation(layer(h))
            h = h + z if self.residual and i > 0 else z
        out = self.out(h)
        return tf.reshape(out, tf.concat([batch, [self.out_features, self.num_params]], 0))

    def get_config(self):
        return {
            **super().get_config(),
            "out_features": self.out_features,
            "num_params": self.num_params,
            "hidden_units": list(self.hidden_units),
            "residual": self.residual,
            "activation": keras.activations.serialize(self.activation),
        }
