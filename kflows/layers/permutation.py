"""Fixed permutations of the features (log-det zero)."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow_probability as tfp

from kflows.layers.layer import FlowLayer
from kflows.networks import draw_seed, resolve_order

tfb = tfp.bijectors


@keras.saving.register_keras_serializable(package="kflows")
class Permute(FlowLayer):
    """A fixed permutation of the features. Fast direction: **both**.

    Args:
        permutation: ``"random"`` (drawn from ``seed`` with the frozen
            ``np.random.RandomState`` stream, so a saved config rebuilds it exactly),
            ``"reverse"``, or an explicit list.
        seed: seed of a random permutation; drawn once and kept in the config when None.
    """

    fast_direction = "both"
    uses_context = False
    initialisation = "permutation"

    def __init__(self, permutation="random", seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(permutation, str) and permutation not in ("random", "reverse"):
            raise ValueError(
                f"Expected permutation 'random', 'reverse' or a list; got {permutation!r}."
            )
        self.permutation = (
            permutation if isinstance(permutation, str) else [int(i) for i in permutation]
        )
        self.seed = draw_seed(seed) if permutation == "random" else seed

    def build(self, x_shape, context_shape=None):
        super().build(x_shape, context_shape)
        self._perm = resolve_order(self.permutation, self.event_dim, self.seed).astype(np.int32)

    def make_bijector(self, context=None, training=False):
        return tfb.Permute(self._perm)

    def get_config(self):
        return {**super().get_config(), "permutation": self.permutation, "seed": self.seed}


@keras.saving.register_keras_serializable(package="kflows")
class Reverse(Permute):
    """Reverses the order of the features. Fast direction: **both**."""

    def __init__(self, **kwargs):
        kwargs.pop("permutation", None)
        kwargs.pop("seed", None)
        super().__init__(permutation="reverse", **kwargs)

    def get_config(self):
        config = super().get_config()
        del config["permutation"], config["seed"]
        return config
