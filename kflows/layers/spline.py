"""Neural spline flows: the coupling and autoregressive structures with a spline transform.

These are conveniences: ``SplineCoupling(bins=8, bound=3.0)`` is
``Coupling(transform=RationalQuadraticSpline(bins=8, bound=3.0))``, and likewise for
``SplineAutoregressive``; all the structure lives in the parent classes.

Reference:
    Durkan, Bekasov, Murray, Papamakarios. Neural Spline Flows. NeurIPS 2019.
"""

from __future__ import annotations

import keras

from kflows.layers.autoregressive import MaskedAutoregressive
from kflows.layers.coupling import Coupling
from kflows.transforms import RationalQuadraticSpline


class _FixedSpline:
    """Mixin fixing a structure's ``transform`` to a spline set by ``bins`` and ``bound``."""

    def __init__(self, bins: int = 8, bound: float = 3.0, **kwargs):
        if "transform" in kwargs:
            raise TypeError(
                f"{type(self).__name__} always uses a spline transform; got transform="
                f"{kwargs['transform']!r}. Use the parent structure for other transforms."
            )
        super().__init__(transform=RationalQuadraticSpline(bins=bins, bound=bound), **kwargs)

    def get_config(self):
        config = super().get_config()
        del config["transform"]
        return {**config, "bins": self.transform.bins, "bound": self.transform.bound}


@keras.saving.register_keras_serializable(package="kflows")
class SplineCoupling(_FixedSpline, Coupling):
    """Coupling neural spline flow layer: :class:`~kflows.Coupling` with a spline transform.

    Fast direction: **both** (one conditioner pass either way).

    Args:
        bins: number of spline bins.
        bound: the spline acts on ``[-bound, bound]`` and is the identity outside.
        **kwargs: ``mask``, ``hidden_units``, ``residual``, ``activation`` and Keras layer
            arguments, as in :class:`~kflows.Coupling`.

    Example:
        >>> layer = kflows.SplineCoupling(bins=8, bound=4.0, hidden_units=(64, 64))
    """


@keras.saving.register_keras_serializable(package="kflows")
class SplineAutoregressive(_FixedSpline, MaskedAutoregressive):
    """Autoregressive neural spline flow layer: a MAF layer with a spline transform.

    Fast direction: **density** (one MADE pass for ``log_prob``); sampling takes D passes.

    Args:
        bins: number of spline bins.
        bound: the spline acts on ``[-bound, bound]`` and is the identity outside.
        **kwargs: ``hidden_units``, ``order``, ``residual``, ``activation``, ``seed`` and
            Keras layer arguments, as in :class:`~kflows.MaskedAutoregressive`.

    Example:
        >>> layer = kflows.SplineAutoregressive(bins=8, hidden_units=(64, 64))
    """
