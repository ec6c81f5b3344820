"""The planar flow layer: ``y = x + u_hat tanh(w.x + b)``.

References:
    Rezende, Mohamed. Variational Inference with Normalizing Flows. ICML 2015.
"""

from __future__ import annotations

import keras

from kflows import bijectors
from kflows.layers.amortised import AmortisedLayer


@keras.saving.register_keras_serializable(package="kflows")
class Planar(AmortisedLayer):
    """Planar flow layer: ``y = x + u_hat tanh(w.x + b)`` (base side ``x``, data side ``y``).

    A one-unit residual layer, invertible for every weight (``w.u_hat > -1``, see
    :class:`kflows.bijectors.Planar`); stack many (8 to 32) for a flexible map.

    Fast direction: **sampling** (explicit, log-det by the matrix determinant lemma in the
    same pass): ``sample_and_log_prob`` runs no root search. ``log_prob`` of other points
    solves one 1-D equation per point (a fixed-step root search). Context: through a
    zero-initialised hypernetwork added to ``u``, ``w`` and ``b`` (amortised inference).
    Starts as the identity (``u = 0``; ``w`` is drawn, so layers differ).

    Args:
        conditioner: the hypernetwork of the context (see
            :class:`~kflows.layers.amortised.AmortisedLayer`).

    Example:
        >>> flow = kflows.Flow([kflows.Planar() for _ in range(4)], event_dim=2)
        >>> samples, log_prob = flow.sample_and_log_prob(3, seed=0)  # no root search
        >>> samples.shape, log_prob.shape
        (TensorShape([3, 2]), TensorShape([3]))

    References:
        Rezende, Mohamed. Variational Inference with Normalizing Flows. ICML 2015.
    """

    bijector_type = bijectors.Planar

    def parameter_specs(self, dim):
        return {
            "u": ((dim,), "zeros"),
            "w": ((dim,), keras.initializers.RandomNormal(stddev=dim**-0.5)),
            "b": ((), "zeros"),
        }
