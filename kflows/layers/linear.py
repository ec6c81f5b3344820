"""Learned invertible linear maps of the features."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from kflows.layers.layer import FlowLayer
from kflows.networks import draw_seed

tfb = tfp.bijectors


def _lower_upper(packed):
    """Packed LU weights -> TFP's ``lower_upper``: the diagonal is stored as ``log |U_ii|``.

    Storing the log of the diagonal keeps ``U`` invertible for any weight value (a diagonal
    entry can approach zero only as its weight goes to minus infinity) and makes the
    log-determinant a plain sum of weights.
    """
    return tf.linalg.set_diag(packed, tf.math.exp(tf.linalg.diag_part(packed)))


@keras.saving.register_keras_serializable(package="kflows")
class LULinear(FlowLayer):
    """Invertible linear layer ``x = P L U u`` in LU form (Glow's invertible 1x1 convolution).

    ``L`` is unit lower triangular, ``U`` upper triangular with a positive diagonal, ``P`` a
    fixed permutation. All of ``L`` and ``U`` live in one ``[D, D]`` weight, zero at
    initialisation, so the layer starts as ``P`` (the identity by default). The log-det is
    ``sum(log diag U)``, O(D), independent of the data. Sampling (forward) multiplies each
    point by ``P L U``, O(D^2) per point after one O(D^3) product per batch; density
    evaluation (inverse) is two triangular solves, O(D^2) per point.

    Fast direction: **both**. Context: ignored.

    Args:
        permutation: ``"identity"`` (default, so that the layer starts as the identity) or
            ``"random"`` (a fixed random ``P``, drawn from ``seed``).
        seed: seed of a random permutation; drawn once and kept in the config when None.

    Example:
        >>> flow = kflows.Flow([kflows.ActNorm(), kflows.LULinear(), kflows.Coupling()])
        >>> flow.initialize(kflows.data.two_moons(256))  # ActNorm learns from a first batch
        >>> float(flow.flow_layers[1].bijector().forward_log_det_jacobian([0.0, 0.0], 1))
        0.0

    References:
        Kingma, Dhariwal. Glow: Generative Flow with Invertible 1x1 Convolutions.
        NeurIPS 2018.
    """

    fast_direction = "both"
    uses_context = False

    @property
    def initialisation(self) -> str:
        """The identity, or a fixed permutation with ``permutation="random"``."""
        return "permutation" if self.permutation == "random" else "identity"

    def __init__(self, permutation: str = "identity", seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if permutation not in ("identity", "random"):
            raise ValueError(f"Expected permutation 'identity' or 'random'; got {permutation!r}.")
        self.permutation = permutation
        self.seed = draw_seed(seed) if permutation == "random" else seed

    def build(self, x_shape, context_shape=None):
        super().build(x_shape, context_shape)
        dim = self.event_dim
        self.lower_upper = self.add_weight(
            shape=(dim, dim), initializer="zeros", name="lower_upper"
        )
        perm = np.arange(dim)
        if self.permutation == "random":
            perm = np.random.RandomState(self.seed).permutation(dim)
        self._perm = perm.astype(np.int32)

    def make_bijector(self, context=None, training=False):
        # A DeferredTensor re-reads the variable each time the bijector runs.
        lower_upper = tfp.util.DeferredTensor(self.lower_upper.value, _lower_upper)
        return tfb.ScaleMatvecLU(lower_upper, self._perm, name="lu_linear")

    def get_config(self):
        return {**super().get_config(), "permutation": self.permutation, "seed": self.seed}
