"""The coupling bijector of RealNVP: kept features condition the transform of the others."""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from kflows.bijectors.variables import LayerBijector

tfb = tfp.bijectors


class Coupling(LayerBijector):
    """``y_B = tau(x_B; theta(x_A))``, ``y_A = x_A``: a coupling bijector with any mask.

    ``mask[i]`` True puts feature ``i`` in ``A``: it passes through unchanged (bit for bit)
    and conditions the others. ``transform_fn(x_A)`` receives the kept features in their
    original order (``[..., K]``) and returns an element-wise bijector on the other
    ``D - K`` features, also in their original order. The features are gathered inside the
    bijector, so a non-contiguous mask needs no ``tfb.Permute`` around it. One call of
    ``transform_fn`` gives the value and the log-det, in either direction.

    Args:
        transform_fn: ``x_A [..., K] -> tfb.Bijector`` acting element-wise on ``[..., D - K]``.
        mask: D booleans (a list or a boolean array); True = passed through.
        variables: the variables ``transform_fn`` reads (see :class:`LayerVariables`).
        name: the bijector's name.
        validate_args: check the number of features at run time when it is not static.

    Example:
        >>> fn = lambda kept: tfb.Shift(tf.reduce_sum(kept, -1, keepdims=True))
        >>> bijector = Coupling(fn, mask=[True, False, True])
        >>> bijector.forward(tf.constant([[1.0, 0.0, 2.0]])).numpy()
        array([[1., 3., 2.]], dtype=float32)

    References:
        Dinh, Sohl-Dickstein, Bengio. Density estimation using Real NVP. ICLR 2017.
    """

    def __init__(
        self,
        transform_fn,
        mask,
        variables=(),
        name: str = "coupling",
        *,
        validate_args: bool = False,
    ):
        parameters = dict(locals())
        if not callable(transform_fn):
            raise TypeError(f"Expected a callable transform_fn; got {transform_fn!r}.")
        keep = np.asarray(mask)
        if keep.dtype != bool or keep.ndim != 1:
            raise ValueError(f"Expected mask to be a list of booleans; got {mask!r}.")
        if keep.all() or not keep.any():
            raise ValueError(
                "Expected a mask that keeps some features and transforms others; "
                f"got {keep.tolist()}."
            )
        self._transform_fn = transform_fn
        self._keep = keep
        self._kept = np.flatnonzero(keep).astype(np.int32)
        self._other = np.flatnonzero(~keep).astype(np.int32)
        # Position of each feature in concat([kept, other]), to put them back in order.
        self._order = np.argsort(np.concatenate([self._kept, self._other])).astype(np.int32)
        # Kept features first (RealNVP's "half" mask): slices instead of gathers, whose
        # gradients (scatters) cost a third of a small coupling flow's training step.
        self._prefix = bool(np.array_equal(self._kept, np.arange(len(self._kept))))
        super().__init__(parameters, variables, validate_args, name)

    @property
    def mask(self) -> np.ndarray:
        """The boolean mask (a copy): True = passed through."""
        return self._keep.copy()

    def _split(self, z):
        size = z.shape[-1]
        if size is not None and size != len(self._keep):
            raise ValueError(
                f"Expected {len(self._keep)} features (the mask's length); got shape {z.shape}."
            )
        if size is None and self.validate_args:
            with tf.control_dependencies(
                [tf.debugging.assert_equal(tf.shape(z)[-1], len(self._keep))]
            ):
                z = tf.identity(z)
        if self._prefix:
            return z[..., : len(self._kept)], z[..., len(self._kept) :]
        return tf.gather(z, self._kept, axis=-1), tf.gather(z, self._other, axis=-1)

    def _join(self, kept, other):
        joined = tf.concat([kept, other], axis=-1)
        return joined if self._prefix else tf.gather(joined, self._order, axis=-1)

    def _forward_and_log_det(self, x):
        x_kept, x_other = self._split(x)
        transform = self._transform_fn(x_kept)
        y_other = transform.forward(x_other)
        fldj = transform.forward_log_det_jacobian(x_other, event_ndims=1)
        return self._join(x_kept, y_other), fldj

    def _inverse_and_log_det(self, y):
        y_kept, y_other = self._split(y)
        transform = self._transform_fn(y_kept)
        x_other = transform.inverse(y_other)
        ildj = transform.inverse_log_det_jacobian(y_other, event_ndims=1)
        return self._join(y_kept, x_other), ildj
