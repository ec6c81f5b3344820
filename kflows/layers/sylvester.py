"""The Sylvester flow layer: ``y = x + Q R tanh(R~ Q^T x + b)``, ``Q`` from Householder reflections.

References:
    van den Berg, Hasenclever, Tomczak, Welling. Sylvester Normalizing Flows for Variational
    Inference. UAI 2018.
"""

from __future__ import annotations

import keras

from kflows import bijectors
from kflows._validate import count
from kflows.layers.amortised import AmortisedLayer


@keras.saving.register_keras_serializable(package="kflows")
class Sylvester(AmortisedLayer):
    """Householder Sylvester flow layer: ``y = x + Q R tanh(R~ Q^T x + b)``.

    ``Q`` [D, M] has orthonormal columns: the first ``M`` (``rank``) columns of a product of
    ``num_reflections`` Householder reflections (H-SNF); ``num_reflections=0`` makes ``Q``
    the first ``M`` unit vectors (the triangular variant, T-SNF: alternate it with
    :class:`~kflows.Reverse`, as :func:`kflows.sylvester` does). ``R``, ``R~`` [M, M] are
    upper triangular with ``tanh`` diagonals, so ``R_ii R~_ii > -1``: invertible for every
    weight (see :class:`kflows.bijectors.Sylvester`). A planar layer is the ``M = 1`` case.

    Fast direction: **sampling** (explicit, log-det a sum of ``M`` logs in the same pass):
    ``sample_and_log_prob`` runs no root search. ``log_prob`` of other points solves a
    triangular system, ``M`` 1-D root searches in sequence. Context: through a
    zero-initialised hypernetwork added to every parameter (the paper's amortised form).
    Starts as the identity (``R = 0``; the reflections and ``R~`` are drawn).

    Args:
        num_reflections: Householder reflections in ``Q`` (0: the triangular variant).
        rank: ``M``, the columns of ``Q`` (None: ``D``); at most ``D``.
        conditioner: the hypernetwork of the context (see
            :class:`~kflows.layers.amortised.AmortisedLayer`).

    Example:
        >>> flow = kflows.Flow([kflows.Sylvester(num_reflections=2)], event_dim=3)
        >>> [tuple(w.shape) for w in flow.flow_layers[0].trainable_weights]
        [(2, 3), (6,), (6,), (3,)]

    References:
        van den Berg, Hasenclever, Tomczak, Welling. Sylvester Normalizing Flows for
        Variational Inference. UAI 2018.
    """

    bijector_type = bijectors.Sylvester

    def __init__(self, num_reflections: int = 4, rank: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.num_reflections = count(num_reflections, "num_reflections", minimum=0)
        self.rank = count(rank, "rank", allow_none=True)

    def parameter_specs(self, dim):
        rank = dim if self.rank is None else self.rank
        if rank > dim:
            raise ValueError(f"Expected rank <= D = {dim} (the features); got rank={rank}.")
        packed = rank * (rank + 1) // 2
        specs = {}
        if self.num_reflections:
            normal = keras.initializers.RandomNormal(stddev=1.0)
            specs["reflections"] = ((self.num_reflections, dim), normal)
        return {
            **specs,
            "r": ((packed,), "zeros"),
            "r_tilde": ((packed,), keras.initializers.RandomNormal(stddev=rank**-0.5)),
            "bias": ((rank,), "zeros"),
        }

    def get_config(self):
        return {**super().get_config(), "num_reflections": self.num_reflections, "rank": self.rank}
