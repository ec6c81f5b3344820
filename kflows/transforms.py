"""Element-wise transforms that a conditioner parametrizes.

A transform turns a tensor of unconstrained parameters of shape ``[..., D, num_params]``
(the output of a conditioner network) into an element-wise TFP bijector acting on
``[..., D]``. Structures (:class:`~kflows.Coupling`, :class:`~kflows.MaskedAutoregressive`)
take a transform, so that structure x transform x network compose instead of multiplying
classes.

All-zero parameters give the identity: conditioners zero-initialise their last layer, so
every flow starts as the identity.
"""

from __future__ import annotations

import keras
import tensorflow as tf
import tensorflow_probability as tfp

tfb = tfp.bijectors

_TRANSFORMS: dict[str, type] = {}


def _register(name):
    def wrap(cls):
        _TRANSFORMS[name] = cls
        return keras.saving.register_keras_serializable(package="kflows")(cls)

    return wrap


def soft_clamp(x, bound):
    """Smoothly limits ``x`` to ``(-bound, bound)``; the identity near zero.

    ``bound * tanh(x / bound)`` keeps gradients alive everywhere, unlike a hard clip, and
    keeps ``exp(log_scale)`` away from overflow and from collapsing to zero.
    """
    return bound * tf.math.tanh(x / bound)


class Transform:
    """Base of the element-wise transforms.

    To add a transform: set ``num_params`` (parameters per feature), implement
    ``bijector(params)`` returning an element-wise ``tfb.Bijector`` (identity for all-zero
    ``params``), implement ``get_config``, and decorate the class with ``@_register(name)``.
    """

    num_params: int

    def bijector(self, params: tf.Tensor) -> tfb.Bijector:
        raise NotImplementedError

    def get_config(self) -> dict:
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __eq__(self, other):
        return type(self) is type(other) and self.get_config() == other.get_config()

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


@_register("affine")
class Affine(Transform):
    """``y = x * exp(log_scale) + shift`` with a soft-clamped log-scale.

    Args:
        log_scale_bound: the log-scale is ``bound * tanh(raw / bound)``, so one layer
            scales by at most ``exp(bound)`` either way.
    """

    num_params = 2

    def __init__(self, log_scale_bound: float = 5.0):
        if not log_scale_bound > 0:
            raise ValueError(f"Expected log_scale_bound > 0; got {log_scale_bound!r}.")
        self.log_scale_bound = float(log_scale_bound)

    def bijector(self, params):
        shift = params[..., 0]
        log_scale = soft_clamp(params[..., 1], self.log_scale_bound)
        return tfb.Shift(shift)(tfb.Scale(log_scale=log_scale))

    def get_config(self):
        return {"log_scale_bound": self.log_scale_bound}


def get(spec) -> Transform:
    """Resolves a transform from an instance, a name (``"affine"``) or a config dict.

    A dict is either ``{"name": "spline", **kwargs}`` or Keras' serialized form.
    """
    if isinstance(spec, Transform):
        return spec
    if isinstance(spec, str):
        if spec not in _TRANSFORMS:
            raise ValueError(f"Expected a transform name in {sorted(_TRANSFORMS)}; got {spec!r}.")
        return _TRANSFORMS[spec]()
    if isinstance(spec, dict):
        if "class_name" in spec:
            return keras.saving.deserialize_keras_object(spec)
        kwargs = dict(spec)
        name = kwargs.pop("name", None)
        if name not in _TRANSFORMS:
            raise ValueError(
                f"Expected a transform dict with 'name' in {sorted(_TRANSFORMS)}; got {spec!r}."
            )
        return _TRANSFORMS[name](**kwargs)
    raise TypeError(f"Expected a Transform, a name or a dict; got {type(spec).__name__}: {spec!r}.")


def serialize(transform: Transform) -> dict:
    return keras.saving.serialize_keras_object(transform)
