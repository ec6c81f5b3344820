"""MADE: the masked autoregressive network behind MAF and autoregressive spline flows."""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf

from kflows._tracking import track_items
from kflows.networks.conditioner import Conditioner

#: The orders of features every kflows layer understands (plus an explicit permutation).
ORDERS = ("identity", "reverse", "random")


def resolve_order(order, dim: int, seed: int | None) -> np.ndarray:
    """An order of ``dim`` features: ``"identity"``, ``"reverse"``, ``"random"`` or explicit.

    ``"random"`` draws with the frozen ``np.random.RandomState(seed)`` stream, so a saved
    config rebuilds the same order.
    """
    if isinstance(order, str):
        if order == "identity":
            return np.arange(dim)
        if order == "reverse":
            return np.arange(dim)[::-1].copy()
        if order == "random":
            return np.random.RandomState(seed).permutation(dim)
        raise ValueError(f"Expected order in {ORDERS} or a permutation; got {order!r}.")
    arr = np.asarray(order, dtype=np.int64)
    if arr.shape != (dim,) or sorted(arr.tolist()) != list(range(dim)):
        raise ValueError(f"Expected order to be a permutation of range({dim}); got {order!r}.")
    return arr


def check_order(order):
    """``order`` as stored in a config: a name of :data:`ORDERS` or a list of ints."""
    if isinstance(order, str):
        if order not in ORDERS:
            raise ValueError(f"Expected order in {ORDERS} or a permutation; got {order!r}.")
        return order
    return [int(i) for i in order]


def draw_seed(seed: int | None) -> int:
    """``seed``, or a fresh one when None: a config then records the seed actually used."""
    return int(np.random.randint(2**31 - 1)) if seed is None else int(seed)


def made_masks(order: np.ndarray, hidden_units: Sequence[int], residual: bool):
    """Connectivity masks of a MADE (Germain et al., 2015), input layer first.

    Input feature i has degree ``order[i] + 1``. Hidden units get degrees cycling through
    ``1 .. D-1``; a hidden unit of degree k sees inputs of degree <= k, and output i sees
    hidden units of degree < degree(i), so output i depends on the inputs before it only.
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
    return masks


@keras.saving.register_keras_serializable(package="kflows")
class MADE(Conditioner):
    """Masked autoencoder for distribution estimation, in Keras 3.

    Maps ``x`` ``[..., D]`` (and an optional ``context`` ``[..., C]``) to autoregressive
    parameters ``[..., D, num_params]``: the parameters of feature i depend only on the
    features before i in ``order``, and on the context.

    Args:
        hidden_units: widths of the hidden layers (all equal when ``residual``).
        activation: hidden activation.
        residual: residual blocks between hidden layers.
        order: ``"identity"``, ``"reverse"``, ``"random"`` or a permutation of the features.
        seed: seed of a ``"random"`` order; drawn once and kept in the config when None.

    Example:
        >>> made = kflows.MADE(hidden_units=(8,), order="reverse")
        >>> made.set_output(out_features=3, num_params=2)
        >>> made.build((None, 3))
        >>> made(tf.ones((4, 3))).shape  # [..., D, num_params], zero at initialisation
        TensorShape([4, 3, 2])

    References:
        Germain, Gregor, Murray, Larochelle. MADE: Masked Autoencoder for Distribution
        Estimation. ICML 2015.
    """

    autoregressive = True

    def __init__(self, hidden_units=(128, 128), order="identity", seed=None, **kwargs):
        super().__init__(hidden_units=hidden_units, **kwargs)
        self.order = check_order(order)
        self.seed = draw_seed(seed) if order == "random" else seed

    def build(self, x_shape, context_shape=None):
        dim = int(x_shape[-1])
        if self.out_features not in (None, dim):
            raise ValueError(f"Expected a MADE with {dim} outputs; got {self.out_features}.")
        masks = made_masks(
            resolve_order(self.order, dim, self.seed), self.hidden_units, self.residual
        )
        # Output unit d * num_params + p belongs to feature d.
        masks[-1] = np.repeat(masks[-1], self.num_params, axis=1)
        # Hidden layers compute in the compute dtype (under a mixed policy the kernels are
        # autocast to it); the output layer, the transform's parameters, in full precision.
        dtypes = [self.compute_dtype] * (len(masks) - 1) + [self.variable_dtype]
        self._masks = [m.astype(dtype) for m, dtype in zip(masks, dtypes, strict=True)]
        sizes = [dim, *self.hidden_units, dim * self.num_params]
        self.kernels, self.biases = [], []
        for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            last = i == len(sizes) - 2
            init = "zeros" if last else "glorot_uniform"
            self.kernels.append(
                self.add_weight(
                    (n_in, n_out), initializer=init, autocast=not last, name=f"kernel_{i}"
                )
            )
            self.biases.append(
                self.add_weight((n_out,), initializer="zeros", autocast=not last, name=f"bias_{i}")
            )
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
        out = self._dense(tf.cast(self.activation(h), self.variable_dtype), n_hidden)
        return tf.reshape(out, tf.concat([batch, [dim, self.num_params]], 0))

    def get_config(self):
        return {**super().get_config(), "order": self.order, "seed": self.seed}
