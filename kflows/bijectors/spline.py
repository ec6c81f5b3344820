"""The rational-quadratic spline of neural spline flows, the identity outside its range."""

from __future__ import annotations

import functools

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from kflows.bijectors.elementwise import ElementwiseParams
from kflows.bijectors.one_pass import OnePassBijector

tfb = tfp.bijectors


def _float_dtype(values) -> tf.DType:
    """The first floating dtype among ``values`` (float32 if none has one)."""
    for value in values:
        dtype = getattr(value, "dtype", None)
        if dtype is not None and tf.as_dtype(dtype).is_floating:
            return tf.as_dtype(dtype)
    return tf.float32


def _static_shape(value) -> tf.TensorShape:
    shape = getattr(value, "shape", None)
    return tf.TensorShape(np.shape(value) if shape is None else shape)


@functools.lru_cache(maxsize=64)
def _table_matrix(bins: int, bound: float, boundary_slope: bool = False):
    """``(matrix [3K - 1, 6K], offset [6K])``: the bin table from the concatenated
    ``(widths, heights, slopes)``, as ``params @ matrix + offset`` (rows of the table in
    :meth:`RationalQuadraticSpline._bin_table` order). With ``boundary_slope`` the
    parameters end with one more column, the end knots' shared derivative (``[3K, 6K]``)."""
    size = 3 * bins - 1 + int(boundary_slope)
    matrix = np.zeros((size, 6, bins))
    offset = np.zeros((6, bins))
    for k in range(bins):
        for row, first in ((0, 0), (2, bins)):  # the x side from widths, y from heights
            matrix[first : first + k, row, k] = 1.0  # left knot: sizes of the bins before
            matrix[first : first + k + 1, row + 1, k] = 1.0  # right knot
        if k > 0:
            matrix[2 * bins + k - 1, 4, k] = 1.0  # d_k: slope at interior knot k
        if k < bins - 1:
            matrix[2 * bins + k, 5, k] = 1.0  # d_k+1
    offset[[0, 1, 2, 3]] = -bound
    matrix[:, [1, 3], bins - 1] = 0.0  # the last right knot is bound itself
    offset[[1, 3], bins - 1] = bound
    if boundary_slope:  # the end knots' derivative: the last parameter, at both ends
        matrix[size - 1, 4, 0] = matrix[size - 1, 5, bins - 1] = 1.0
    else:
        offset[4, 0] = offset[5, bins - 1] = 1.0  # the end knots' derivative: 1
    return matrix.reshape(size, 6 * bins), offset.reshape(6 * bins)


def _split_last(t, rows: int, cols: int):
    """``t [..., rows * cols]`` as ``[..., rows, cols]``; a static target shape when at most
    one batch dimension is unknown (the usual ``[None, D]``), so no shape ops."""
    batch = t.shape[:-1]
    if sum(d is None for d in batch) <= 1:
        return tf.reshape(t, [-1 if d is None else d for d in batch] + [rows, cols])
    return tf.reshape(t, tf.concat([tf.shape(t)[:-1], [rows, cols]], axis=0))


class RationalQuadraticSpline(ElementwiseParams, OnePassBijector):
    """Monotonic rational-quadratic spline on ``[-bound, bound]``, the identity outside.

    The same map as ``tfb.RationalQuadraticSpline(bin_widths, bin_heights, knot_slopes,
    range_min=-bound)`` (Durkan et al., 2019), written for speed and for safe gradients:

    - one pass gives the value and the log-det, in either direction (the one-pass memo of
      :class:`OnePassBijector`): the knots, the bin lookup and the bin's quantities are
      computed once for both;
    - the bin lookup is a comparison with the knots and a one-hot sum, a handful of
      element-wise ops whose gradients are element-wise too (no gather, no scatter);
    - the inverse is the root of the spline's quadratic in the stable form
      ``2c / (-b - sqrt(b^2 - 4ac))``;
    - the map inside a bin has a hand-written gradient (a third of the ops autodiff
      emits), the inverse's from the implicit function theorem: right everywhere, exactly
      on the knots included (TFP's inverse sets the root to zero there with a ``tf.where``
      and so loses the gradient), and differentiable again for higher derivatives;
    - inputs outside ``(-bound, bound)`` are swapped for zero before any arithmetic, so
      values and gradients stay finite for huge inputs (``|x| ~ 1e20`` in float32); NaN
      in gives NaN out, log-det included;
    - no shape assertions or dynamic broadcasting: the parameters share one batch shape,
      which broadcasts with the input's like any element-wise op.

    Args:
        bin_widths: ``[..., K]`` positive widths of the ``K`` bins, summing to
            ``2 * bound`` over the last axis (the last bin ends at ``bound`` itself, so a
            sum off by rounding opens no gap there).
        bin_heights: ``[..., K]`` positive heights, summing to ``2 * bound`` (likewise).
        knot_slopes: ``[..., K - 1]`` positive derivatives at the interior knots; the two
            end knots have derivative 1, matching the identity tails.
        bound: the spline acts on ``[-bound, bound]`` (a Python number).
        boundary_slope: ``[...]`` positive derivative shared by the two end knots instead
            of 1 (None: 1). Equal end derivatives make the spline C1 as a map of the circle
            ``[-bound, bound)`` (Rezende et al., 2020, see :mod:`kflows.bijectors.circular`);
            the tails outside stay the identity, so the map is then only continuous there.
        name: the bijector's name.

    Raises:
        ValueError: if the parameters' static shapes do not fit together or ``bound`` is
            not positive.

    Example:
        >>> spline = RationalQuadraticSpline([1.0, 1.0], [0.5, 1.5], [2.0], bound=1.0)
        >>> spline.forward(tf.constant([-5.0, -1.0, 0.0, 0.5, 5.0])).numpy()
        array([-5.   , -1.   , -0.5  ,  0.375,  5.   ], dtype=float32)

    References:
        Durkan, Bekasov, Murray, Papamakarios. Neural Spline Flows. NeurIPS 2019.
    """

    def __init__(
        self,
        bin_widths,
        bin_heights,
        knot_slopes,
        bound: float,
        name: str = "rational_quadratic_spline",
        boundary_slope=None,
    ):
        parameters = dict(locals())
        if not bound > 0:
            raise ValueError(f"Expected bound > 0; got {bound!r}.")
        widths, heights, slopes = (_static_shape(p) for p in (bin_widths, bin_heights, knot_slopes))
        if widths.rank is None or widths.rank < 1 or widths[-1] is None:
            raise ValueError(
                f"Expected bin_widths of static rank >= 1 and a static number of bins; got "
                f"shape {widths}."
            )
        bins = widths[-1]
        expected = {"bin_heights": (heights, bins), "knot_slopes": (slopes, bins - 1)}
        for label, (shape, size) in expected.items():
            if shape.rank != widths.rank or not shape[:-1].is_compatible_with(widths[:-1]):
                raise ValueError(
                    f"Expected {label} to have the batch shape of bin_widths "
                    f"{widths[:-1]}; got shape {shape}."
                )
            if shape[-1] != size:
                raise ValueError(
                    f"Expected {size} {label} (bin_widths has {bins} bins); got shape {shape}."
                )
        if boundary_slope is not None:
            shape = _static_shape(boundary_slope)
            if shape.rank != widths.rank - 1 or not shape.is_compatible_with(widths[:-1]):
                raise ValueError(
                    f"Expected boundary_slope of the batch shape of bin_widths {widths[:-1]}; "
                    f"got shape {shape}."
                )
        self._params = (bin_widths, bin_heights, knot_slopes)
        self._boundary_slope = boundary_slope
        self._bound = float(bound)
        super().__init__(parameters, name, _float_dtype(self._params))

    @classmethod
    def _is_increasing(cls):
        return True

    @property
    def bound(self) -> float:
        """The spline acts on ``[-bound, bound]``."""
        return self._bound

    @property
    def bin_widths(self):
        return self._params[0]

    @property
    def bin_heights(self):
        return self._params[1]

    @property
    def knot_slopes(self):
        return self._params[2]

    @property
    def boundary_slope(self):
        """The end knots' shared derivative (None: 1, matching the identity tails)."""
        return self._boundary_slope

    def _bin_table(self):
        """Per bin, both ends on each side and the derivative at each end: ``[..., 6, K]``.

        Rows: left and right knot on the x side, the same on the y side, ``d_k``,
        ``d_k+1``. All are linear in the parameters, so one matmul with a constant matrix
        builds them: the knots are prefix sums of the bin sizes (``tf.cumsum`` on a short
        last axis is ten times slower on CPU), the derivatives copies of the slopes padded
        with the end knots' derivative (1, or ``boundary_slope``). The outer knots are
        exactly ``-bound`` and ``bound``; a bin's width and height are the differences of
        its knots, as in TFP, so the spline is continuous even where matmuls round (TF32 on
        GPUs).
        """
        widths, heights, slopes = (tf.convert_to_tensor(p, self.dtype) for p in self._params)
        columns = [widths, heights, slopes]
        if self._boundary_slope is not None:
            columns.append(tf.convert_to_tensor(self._boundary_slope, self.dtype)[..., None])
        matrix, offset = _table_matrix(widths.shape[-1], self._bound, len(columns) == 4)
        params = tf.concat(columns, axis=-1)
        # A matmul needs a matrix: one spline's parameters (rank 1) become a row.
        rows = params if params.shape.rank > 1 else params[tf.newaxis]
        table = tf.matmul(rows, tf.constant(matrix, self.dtype)) + tf.constant(offset, self.dtype)
        table = _split_last(table, 6, widths.shape[-1])
        return table if params.shape.rank > 1 else table[0]

    def _spline(self, z, inverse: bool):
        """The value at ``z`` and the forward log-det at the ``x`` side, in one pass.

        Args:
            z: ``x`` (forward) or ``y`` (inverse).
            inverse: the direction.

        Returns:
            ``(value, fldj)``: ``forward(z)`` or ``inverse(z)``, and the forward log-det at
            ``x`` (``z`` itself or the inverse's value).
        """
        table = self._bin_table()
        bins = table.shape[-1]
        outside = tf.abs(z) >= self._bound  # False for NaN: NaN goes through the spline
        z_in = tf.where(outside, tf.zeros([], z.dtype), z)
        # The bin of z: the number of left knots <= z (at least the first, -bound), as a
        # one-hot row: exactly one bin, even if rounding left a knot out of order.
        left_knots = table[..., 2 if inverse else 0, :]
        count = tf.reduce_sum(tf.cast(z_in[..., tf.newaxis] >= left_knots, z.dtype), axis=-1)
        bin_numbers = tf.constant(np.arange(1, bins + 1), z.dtype)
        one_hot = tf.cast(tf.equal(count[..., tf.newaxis], bin_numbers), z.dtype)
        # Tiled rather than broadcast against the table: a third faster on CPU.
        rows = tf.tile(one_hot[..., tf.newaxis, :], [1] * (one_hot.shape.rank - 1) + [6, 1])
        picked = tf.reduce_sum(table * rows, axis=-1)
        x_k, x_kp1, y_k, y_kp1, d_k, d_kp1 = tf.unstack(picked, axis=-1)
        width, height = x_kp1 - x_k, y_kp1 - y_k
        # z against the bin's start on its own side; the bin's other start plus the offset
        # in the bin gives the value.
        start, other_start = (y_k, x_k) if inverse else (x_k, y_k)
        offset, log_det = _in_bin(z_in - start, width, height, d_k, d_kp1, inverse=inverse)
        value = other_start + offset
        zero = tf.zeros([], z.dtype)
        return tf.where(outside, z, value), tf.where(outside, zero, log_det)

    def _forward_and_log_det(self, x):
        return self._spline(x, inverse=False)

    def _inverse_and_log_det(self, y):
        x, fldj = self._spline(y, inverse=True)
        return x, -fldj


def _in_bin(rel, width, height, d_k, d_kp1, inverse: bool):
    """The spline inside each point's bin: the offset of the value and the forward log-det.

    Element-wise on tensors of one shape: ``rel``, the point's distance from the bin's
    start (``x - x_k``, or ``y - y_k`` if ``inverse``), and the bin's ``width``,
    ``height`` and derivatives ``d_k``, ``d_kp1`` at its two ends. Returns ``(y - y_k or
    x - x_k, forward log-det)``.

    The gradient is written by hand: autodiff of these ops emits three times as many,
    mostly shape bookkeeping (every binary op with a dynamic batch dimension gets
    ``Shape``, ``BroadcastGradientArgs``, ``Sum`` and ``Reshape``), which dominated the
    trace of a spline flow's step. The inverse's gradient is the implicit function
    theorem's, ``dxi/dtheta = -(dy/dtheta) / (dy/dxi)``, with no cut at the knots. The
    gradient reads the forward's intermediate tensors, which tapes record, so a second
    derivative through it is right too.
    """

    @tf.custom_gradient
    def in_bin(rel, width, height, d_k, d_kp1):
        # In the bin, xi = (x - x_k) / width lies in [0, 1] and y - y_k = height * g(xi),
        # g = (s xi^2 + d_k t) / (s + curvature t), t = xi (1 - xi), s = height / width.
        slope = height / width
        two_slope = 2.0 * slope
        curvature = d_k + d_kp1 - two_slope
        if inverse:
            term = rel * curvature
            a = height * (slope - d_k) + term
            b = height * d_k - term
            c = slope * rel  # minus the c of a xi^2 + b xi + c = 0
            # Its root in [0, 1], in the form without cancellation (b > 0 at rel = 0).
            xi = 2.0 * c / (b + tf.sqrt(b * b + 4.0 * a * c))
        else:
            xi = rel / width
        one_minus = 1.0 - xi
        t = xi * one_minus
        xi_squared = xi * xi
        denominator = slope + curvature * t
        g = (slope * xi_squared + d_k * t) / denominator
        offset = xi * width if inverse else height * g
        # dy/dx = s^2 q / denominator^2; s / denominator lies in (0, 2]: no overflow.
        q = d_kp1 * xi_squared + two_slope * t + d_k * one_minus * one_minus
        ratio = slope / denominator
        log_det = tf.math.log(q) + 2.0 * tf.math.log(ratio)

        def grad(g_offset, g_log_det):
            inv_denominator = 1.0 / denominator
            inv_q = 1.0 / q
            d_t = 1.0 - 2.0 * xi  # dt / dxi
            # Partials of y - y_k = height g (at fixed xi) and of the log-det
            # L = log q + 2 log s - 2 log denominator.
            height_over = height * inv_denominator
            dy_dxi = height * ratio * q * inv_denominator
            d_denominator_ds = 1.0 - 2.0 * t
            dy_ds = height_over * (xi_squared - g * d_denominator_ds)
            dy_dd_k = height_over * t * (1.0 - g)
            dy_dd_kp1 = -height_over * t * g
            two_over = 2.0 * inv_denominator
            dl_dxi = 2.0 * (d_kp1 * xi + slope * d_t - d_k * one_minus) * inv_q - (
                two_over * curvature * d_t
            )
            dl_ds = 2.0 * t * inv_q + 2.0 / slope - two_over * d_denominator_ds
            two_t_over = two_over * t
            dl_dd_k = one_minus * one_minus * inv_q - two_t_over
            dl_dd_kp1 = xi_squared * inv_q - two_t_over
            if inverse:
                # xi solves y - y_k = height g(xi): dxi/drel = 1 / (dy/dxi), and for the
                # parameters dxi/dtheta = -(dy/dtheta) / (dy/dxi).
                g_rel = (g_offset * width + g_log_det * dl_dxi) / dy_dxi
                g_y, g_width = -g_rel, g_offset * xi
            else:
                g_rel = (g_offset * dy_dxi + g_log_det * dl_dxi) / width
                g_y, g_width = g_offset, -g_rel * xi
            g_s = (g_y * dy_ds + g_log_det * dl_ds) / width  # ds/dheight = 1 / width
            return (
                g_rel,
                g_width - g_s * slope,  # ds/dwidth = -s / width
                g_y * g + g_s,
                g_y * dy_dd_k + g_log_det * dl_dd_k,
                g_y * dy_dd_kp1 + g_log_det * dl_dd_kp1,
            )

        return (offset, log_det), grad

    return in_bin(rel, width, height, d_k, d_kp1)
