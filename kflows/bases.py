"""Base distributions as Keras layers (learned ones own Keras weights)."""

from __future__ import annotations

import json

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from kflows._precision import FullPrecisionWeights
from kflows.networks.made import draw_seed

tfd = tfp.distributions

__all__ = ["Base", "DiagonalNormal", "Fixed", "GaussianMixture", "StandardNormal", "StudentT"]


class Base(FullPrecisionWeights, keras.layers.Layer):
    """Base of the base distributions.

    To add one: implement ``build(event_shape)`` (call ``super().build``; create weights
    there) and ``distribution()``, returning a TFP distribution with event shape ``[D]`` and
    batch shape ``[]`` that reads the current weights when it runs. Register the class as
    serializable and export it from ``kflows/__init__.py``.
    """

    @property
    def event_dim(self) -> int | None:
        return getattr(self, "_event_dim", None)

    def build(self, event_shape):
        self._event_dim = int(event_shape[-1])

    def distribution(self) -> tfd.Distribution:
        raise NotImplementedError(f"{type(self).__name__} must implement distribution().")

    def call(self, x):
        """The base log-density of ``x``."""
        return self.distribution().log_prob(x)

    def get_config(self):
        return super().get_config()


@keras.saving.register_keras_serializable(package="kflows")
class StandardNormal(Base):
    """The standard normal ``N(0, I)`` over ``D`` features (no weights)."""

    def distribution(self):
        zeros = tf.zeros([self.event_dim], dtype=self.variable_dtype)
        return tfd.MultivariateNormalDiag(loc=zeros, name="standard_normal")


def _exp(x):
    return tf.math.exp(x)


@keras.saving.register_keras_serializable(package="kflows")
class DiagonalNormal(Base):
    """A Gaussian with learned mean and diagonal scale; ``N(0, I)`` at initialisation.

    The scale is ``exp(log_scale)``: unconstrained to optimise, and zero-initialised.

    Example:
        >>> flow = kflows.Flow(
        ...     [kflows.MaskedAutoregressive()], base=kflows.DiagonalNormal(), event_dim=2
        ... )
        >>> [v.name for v in flow.base.trainable_variables]
        ['loc', 'log_scale']
    """

    def build(self, event_shape):
        super().build(event_shape)
        dim = self.event_dim
        self.loc = self.add_weight((dim,), initializer="zeros", name="loc")
        self.log_scale = self.add_weight((dim,), initializer="zeros", name="log_scale")

    def distribution(self):
        # The variables themselves (not their values now) go in: the distribution stays live.
        return tfd.MultivariateNormalDiag(
            loc=self.loc.value,
            scale_diag=tfp.util.DeferredTensor(self.log_scale.value, _exp),
            name="diagonal_normal",
        )


@keras.saving.register_keras_serializable(package="kflows")
class GaussianMixture(Base):
    """A mixture of ``num_components`` diagonal Gaussians with learned weights, means, scales.

    A multimodal base lets a short flow fit separated modes without tearing space apart.
    Means start spread out, drawn from ``N(0, loc_scale² I)`` with ``seed`` (kept in the
    config, so a saved model rebuilds the same initial state); weights start uniform and
    scales at one.

    Args:
        num_components: number of mixture components.
        loc_scale: spread of the initial means.
        seed: seed of the initial means; drawn once and kept in the config when None.

    Example:
        >>> base = kflows.GaussianMixture(num_components=8, seed=0)
        >>> flow = kflows.Flow([kflows.Coupling()], base=base, event_dim=2)
        >>> flow.sample(4, seed=0).shape
        TensorShape([4, 2])
    """

    def __init__(
        self, num_components: int = 4, loc_scale: float = 1.0, seed: int | None = None, **kwargs
    ):
        super().__init__(**kwargs)
        if int(num_components) < 1:
            raise ValueError(f"Expected num_components >= 1; got {num_components!r}.")
        if not float(loc_scale) >= 0:
            raise ValueError(f"Expected loc_scale >= 0; got {loc_scale!r}.")
        self.num_components = int(num_components)
        self.loc_scale = float(loc_scale)
        self.seed = draw_seed(seed)

    def build(self, event_shape):
        super().build(event_shape)
        shape = (self.num_components, self.event_dim)
        self.logits = self.add_weight((self.num_components,), initializer="zeros", name="logits")
        locs = np.random.default_rng(self.seed).standard_normal(shape) * self.loc_scale
        self.locs = self.add_weight(
            shape, initializer=keras.initializers.Constant(locs), name="locs"
        )
        self.log_scales = self.add_weight(shape, initializer="zeros", name="log_scales")

    def distribution(self):
        return tfd.MixtureSameFamily(
            mixture_distribution=tfd.Categorical(logits=self.logits.value),
            components_distribution=tfd.MultivariateNormalDiag(
                loc=self.locs.value,
                scale_diag=tfp.util.DeferredTensor(self.log_scales.value, _exp),
            ),
            name="gaussian_mixture",
        )

    def get_config(self):
        return {
            **super().get_config(),
            "num_components": self.num_components,
            "loc_scale": self.loc_scale,
            "seed": self.seed,
        }


@keras.saving.register_keras_serializable(package="kflows")
class StudentT(Base):
    """Independent standard Student-t features: a heavy-tailed base.

    A flow made of Lipschitz layers cannot turn a Gaussian's light tails into heavy ones;
    a heavy-tailed base can (Jaini et al., 2020).

    Args:
        df: degrees of freedom (> 0), the same for every feature at initialisation; smaller
            means heavier tails.
        learn_df: learn one ``df`` per feature (through a softplus, so it stays positive).

    References:
        Jaini, Kobyzev, Yu, Brubaker. Tails of Lipschitz Triangular Flows. ICML 2020.

    Example:
        >>> base = kflows.StudentT(df=5.0, learn_df=True)
        >>> flow = kflows.Flow([kflows.MaskedAutoregressive()], base=base, event_dim=3)
        >>> flow.base.raw_df.shape
        TensorShape([3])
    """

    def __init__(self, df: float = 5.0, learn_df: bool = False, **kwargs):
        super().__init__(**kwargs)
        if not float(df) > 0:
            raise ValueError(f"Expected df > 0; got {df!r}.")
        self.df = float(df)
        self.learn_df = bool(learn_df)

    def build(self, event_shape):
        super().build(event_shape)
        self.raw_df = None
        if self.learn_df:
            raw = float(tfp.math.softplus_inverse(np.float64(self.df)))
            self.raw_df = self.add_weight(
                (self.event_dim,), initializer=keras.initializers.Constant(raw), name="raw_df"
            )

    def distribution(self):
        dtype = self.variable_dtype
        if self.raw_df is None:
            df = tf.fill([self.event_dim], tf.constant(self.df, dtype))
        else:
            df = tfp.util.DeferredTensor(self.raw_df.value, tf.math.softplus)
        return tfd.Independent(
            tfd.StudentT(df=df, loc=tf.zeros([], dtype), scale=tf.ones([], dtype)),
            reinterpreted_batch_ndims=1,
            name="student_t",
        )

    def get_config(self):
        return {**super().get_config(), "df": self.df, "learn_df": self.learn_df}


def distribution_spec(dist: tfd.Distribution) -> dict:
    """A JSON spec ``{"name": ..., "params": {...}}`` of a TFP distribution with fixed values.

    Tensors become nested lists; nested distributions (``Independent``, ``Sample``, ...)
    become nested specs. Raises ``TypeError`` for values with no JSON form (variables,
    bijectors, callables).
    """
    params = {}
    for key, value in dist.parameters.items():
        if key == "name":
            continue
        params[key] = _param_to_json(value, f"{type(dist).__name__}.{key}")
    return {"name": type(dist).__name__, "params": params}


def _param_to_json(value, where: str):
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, tfd.Distribution):
        return distribution_spec(value)
    if isinstance(value, (tf.Variable, tfp.util.DeferredTensor)) or (
        hasattr(value, "trainable") and not isinstance(value, (tf.Tensor, np.ndarray))
    ):
        raise TypeError(f"{where} is a variable; a fixed base needs constant values.")
    if isinstance(value, (tf.Tensor, np.ndarray, np.generic, list, tuple)):
        try:
            return np.asarray(value).tolist()
        except (TypeError, ValueError) as err:
            raise TypeError(f"{where} has no JSON form: {value!r}.") from err
    raise TypeError(f"{where} has no JSON form: {type(value).__name__}.")


def distribution_from_spec(spec: dict, dtype) -> tfd.Distribution:
    """The TFP distribution a :func:`distribution_spec` describes; floats in ``dtype``."""
    if not isinstance(spec, dict) or set(spec) - {"name", "params"} or "name" not in spec:
        raise ValueError(
            f'Expected a distribution spec {{"name": "Laplace", "params": {{...}}}}; got {spec!r}.'
        )
    cls = getattr(tfd, spec["name"], None)
    if not (isinstance(cls, type) and issubclass(cls, tfd.Distribution)):
        raise ValueError(f"Expected the name of a tfp.distributions class; got {spec['name']!r}.")
    params = {}
    for key, value in dict(spec.get("params", {})).items():
        if isinstance(value, dict):
            value = distribution_from_spec(value, dtype)
        elif isinstance(value, (float, list)) and np.asarray(value).dtype.kind == "f":
            value = tf.constant(value, dtype=dtype)
        params[key] = value
    try:
        return cls(**params)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"Could not build tfd.{spec['name']} from {spec['params']!r}: {err}"
        ) from err


@keras.saving.register_keras_serializable(package="kflows")
class Fixed(Base):
    """Any fixed TFP distribution as the base (no weights).

    Args:
        distribution: a ``tfd.Distribution``, or a JSON spec such as
            ``{"name": "Laplace", "params": {"loc": 0.0, "scale": 1.0}}`` (``name`` is a
            ``tfp.distributions`` class; floats become tensors of the layer's dtype; a dict
            value is a nested spec). Scalar distributions are made ``[D]``-dimensional:
            with batch shape ``[]`` as ``D`` i.i.d. copies (``tfd.Sample``), with batch
            shape ``[D]`` as independent features (``tfd.Independent``).

    A spec always saves. A distribution object saves when all its parameters are
    constants (tensors, numbers, nested distributions); otherwise ``get_config`` raises a
    ``TypeError`` that says to pass a spec instead.

    Example:
        >>> base = kflows.Fixed({"name": "Laplace", "params": {"loc": 0.0, "scale": 1.0}})
        >>> logistic = tfp.distributions.Logistic(0.0, 1.0)
        >>> flow = kflows.Flow([kflows.MaskedAutoregressive()], base=logistic, event_dim=2)
        >>> flow.base.distribution().event_shape
        TensorShape([2])
    """

    def __init__(self, distribution, **kwargs):
        super().__init__(**kwargs)
        if isinstance(distribution, tfd.Distribution):
            self._spec = None
            # In a tuple so that Keras does not track the distribution's tf.Module state.
            self._given = (distribution,)
        elif isinstance(distribution, dict):
            self._spec = json.loads(json.dumps(distribution))
            self._given = (distribution_from_spec(self._spec, self.variable_dtype),)
        else:
            raise TypeError(
                "Expected a tfd.Distribution or a spec dict such as "
                f'{{"name": "Laplace", "params": {{...}}}}; got {type(distribution).__name__}.'
            )

    def build(self, event_shape):
        super().build(event_shape)
        if self._spec is not None:  # in the dtype the layer has now (a flow may set it)
            self._given = (distribution_from_spec(self._spec, self.variable_dtype),)
        dist = self.distribution()
        if dist.dtype != self.variable_dtype:
            raise ValueError(
                f"Expected a base distribution of dtype {self.variable_dtype}; got {dist.dtype} "
                f"from {self._given[0]!r}."
            )

    def distribution(self):
        dist, dim = self._given[0], self.event_dim
        if dist.event_shape.rank == 0:
            if dist.batch_shape.rank == 0:
                dist = tfd.Sample(dist, sample_shape=[dim])
            elif dist.batch_shape.rank == 1:
                dist = tfd.Independent(dist, reinterpreted_batch_ndims=1)
        if dist.event_shape != [dim] or dist.batch_shape.rank != 0:
            raise ValueError(
                f"Expected a base with event shape [{dim}] and batch shape []; got event shape "
                f"{dist.event_shape} and batch shape {dist.batch_shape} from {self._given[0]!r}."
            )
        return dist

    def get_config(self):
        spec = self._spec
        if spec is None:
            try:
                spec = distribution_spec(self._given[0])
            except TypeError as err:
                raise TypeError(
                    f"Cannot serialize the base {self._given[0]!r}: {err} Pass a JSON spec "
                    'instead, e.g. Fixed({"name": "Laplace", "params": {"loc": 0.0, '
                    '"scale": 1.0}}), or a distribution whose parameters are constants.'
                ) from err
        return {**super().get_config(), "distribution": spec}
