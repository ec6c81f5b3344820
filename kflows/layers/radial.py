"""The radial flow layer: ``y = x + beta (x - x0) / (alpha + |x - x0|)``.

References:
    Rezende, Mohamed. Variational Inference with Normalizing Flows. ICML 2015.
"""

from __future__ import annotations

import keras

from kflows import bijectors
from kflows.layers.amortised import AmortisedLayer


@keras.saving.register_keras_serializable(package="kflows")
class Radial(AmortisedLayer):
    """Radial flow layer: contracts or expands space around a learned centre ``x0``.

    ``y = x + beta (x - x0) / (alpha + |x - x0|)`` with ``alpha > 0`` and ``beta > -alpha``
    (invertible for every weight, see :class:`kflows.bijectors.Radial`); stack many.

    Fast direction: **sampling** (explicit, log-det in the same pass):
    ``sample_and_log_prob`` runs no root search. ``log_prob`` of other points solves one
    1-D equation in the radius per point. Context: through a zero-initialised hypernetwork
    added to ``x0``, ``alpha`` and ``beta``. Starts as the identity (``beta = 0``; the
    centre is drawn from a standard normal, so layers differ).

    Args:
        conditioner: the hypernetwork of the context (see
            :class:`~kflows.layers.amortised.AmortisedLayer`).

    Example:
        >>> flow = kflows.Flow([kflows.Radial() for _ in range(4)], event_dim=2)
        >>> flow.log_prob([[0.0, 1.0]]).shape  # by root search
        TensorShape([1])

    References:
        Rezende, Mohamed. Variational Inference with Normalizing Flows. ICML 2015.
    """

    bijector_type = bijectors.Radial

    def parameter_specs(self, dim):
        return {
            "center": ((dim,), keras.initializers.RandomNormal(stddev=1.0)),
            "alpha": ((), "zeros"),
            "beta": ((), "zeros"),
        }
