"""Gaussianization flow layer: learned per-feature kernel-density Gaussianization."""

from __future__ import annotations

import keras
import numpy as np

from kflows._validate import integer
from kflows.bijectors.gaussianization import KernelGaussianization
from kflows.layers.layer import FlowLayer
from kflows.layers.normalization import _as_2d, _checked


@keras.saving.register_keras_serializable(package="kflows")
class Gaussianization(FlowLayer):
    """Each feature through the CDF of a learned mixture of Gaussian kernels, then ``Phi^-1``.

    Density direction (data ``x`` to base side ``z``, per feature):
    ``z = Phi^-1((1/K) sum_k Phi((x - loc_k) / bandwidth_k))`` (Meng et al., 2020), with
    trainable ``loc`` and ``log_bandwidth`` weights of shape ``[D, K]`` (no conditioner).
    The maths, its tails and its numerics are those of
    :class:`~kflows.bijectors.gaussianization.KernelGaussianization`. Stack it with
    rotations (:func:`kflows.gf`): alone it only reshapes the marginals.

    Initialisation from data, as in the paper: on the first batch it sees (``Flow.fit``
    and ``Flow.initialize`` call :meth:`initialize`), the anchors of feature ``i`` are set
    to the ``K`` quantiles of its values at levels ``(k + 1/2) / K`` and every bandwidth to
    Silverman's rule of thumb for ``K`` points, ``1.06 * std * K^(-1/5)``. An
    ``initialized`` flag is saved with the model. Before initialisation (all anchors 0,
    bandwidths 1) the layer is the identity, but its kernels are all alike and would stay
    alike under gradient descent: initialise it.

    Fast direction: **density** (explicit); sampling inverts the map numerically, a fixed
    number of bisection steps per point. Context: ignored.

    Args:
        num_kernels: ``K``, kernels per feature (>= 1).
        epsilon: smallest bandwidth set at initialisation (constant features).

    Example:
        >>> x = kflows.data.two_moons(512)
        >>> flow = kflows.Flow([kflows.Gaussianization(num_kernels=4), kflows.LULinear()])
        >>> flow.initialize(x)
        >>> flow.flow_layers[0].loc.shape
        TensorShape([2, 4])

    References:
        Meng, Song, Song, Ermon. Gaussianization Flows. AISTATS 2020.
    """

    fast_direction = "density"
    uses_context = False
    initialisation = "data"

    def __init__(self, num_kernels: int = 8, epsilon: float = 1e-3, **kwargs):
        super().__init__(**kwargs)
        num_kernels = integer(num_kernels, "num_kernels")
        if not epsilon > 0:
            raise ValueError(f"Expected epsilon > 0; got {epsilon!r}.")
        self.num_kernels = num_kernels
        self.epsilon = float(epsilon)

    def build(self, x_shape, context_shape=None):
        super().build(x_shape, context_shape)
        shape = (self.event_dim, self.num_kernels)
        self.loc = self.add_weight(shape=shape, initializer="zeros", name="loc")
        self.log_bandwidth = self.add_weight(shape=shape, initializer="zeros", name="log_bandwidth")
        self.initialized = self.add_weight(
            shape=(), dtype="bool", initializer="zeros", trainable=False, name="initialized"
        )

    @property
    def needs_data_init(self) -> bool:
        """True until :meth:`initialize` ran (read eagerly, outside ``tf.function``)."""
        return not self.built or not bool(self.initialized.numpy())

    def initialize(self, x, context=None):
        """Sets the anchors to per-feature quantiles of ``x`` and the bandwidths by a rule of
        thumb (float64 statistics). Raises a ``ValueError`` naming the features when a
        statistic is not finite; the weights are then unchanged."""
        x = _as_2d(x, self.event_dim, self.variable_dtype, type(self).__name__)
        values = x.numpy().astype(np.float64)
        levels = (np.arange(self.num_kernels) + 0.5) / self.num_kernels
        with np.errstate(invalid="ignore", over="ignore"):
            loc = np.quantile(values, levels, axis=0).T  # [D, K]
            std = np.std(values - np.mean(values, axis=0), axis=0)
        bandwidth = np.maximum(1.06 * std * self.num_kernels**-0.2, self.epsilon)
        # Per feature: the anchors lie between the first and the last.
        _checked(
            self,
            self.variable_dtype,
            "be initialised from this data",
            lowest_anchor=loc[:, 0],
            highest_anchor=loc[:, -1],
            bandwidth=bandwidth,
        )
        self.loc.assign(loc.astype(self.variable_dtype))
        self.log_bandwidth.assign(np.log(np.broadcast_to(bandwidth[:, None], loc.shape)))
        self.initialized.assign(True)

    def make_bijector(self, context=None, training=False):
        # The variables themselves (not their values now) keep the bijector live.
        return KernelGaussianization(self.loc.value, self.log_bandwidth.value)

    def get_config(self):
        return {**super().get_config(), "num_kernels": self.num_kernels, "epsilon": self.epsilon}
