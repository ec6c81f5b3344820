"""Block neural autoregressive flow (BNAF): one monotone, block-triangular network per layer.

References:
    De Cao, Titov, Aziz. Block Neural Autoregressive Flow. UAI 2019.
"""

from __future__ import annotations

import functools
import math
import numbers

import keras
import tensorflow as tf

from kflows import bijectors
from kflows._tracking import track_items
from kflows._validate import is_integer
from kflows.bijectors.bnaf import block_weight
from kflows.layers.layer import FlowLayer, check_event_dim


def _weights(layer, context):
    """The BNAF bijector's ``(layers, shift)`` from ``layer``'s current weights."""
    dim, widths = layer.event_dim, [1, *layer.hidden_units, 1]
    layers = []
    for i, (kernel, bias) in enumerate(zip(layer.kernels, layer.biases, strict=True)):
        log_scale = layer.log_scales[i].value if layer.weight_norm else None
        weight, log_diagonal = block_weight(kernel.value, log_scale, dim, *widths[i : i + 2])
        layers.append((weight, log_diagonal, bias.value))
    if (context is None) != (layer.context_kernel is None):
        built = "with" if layer.context_kernel is not None else "without"
        raise ValueError(
            f"{layer.name} was built {built} a context; got context="
            f"{'None' if context is None else 'a tensor'}."
        )
    shift = None
    if context is not None:
        context = tf.convert_to_tensor(context, layer.context_kernel.dtype)
        # tensordot, not matmul: a context [C] shared by every row has rank 1.
        shift = tf.tensordot(context, layer.context_kernel.value, axes=1)
    return layers, shift


@keras.saving.register_keras_serializable(package="kflows")
class BlockNeuralAutoregressive(FlowLayer):
    """Block neural autoregressive flow layer (BNAF): ``z = f(x)``, a monotone network.

    ``f`` is a feed-forward network of ``D * h`` units per hidden layer, ``h`` per feature
    (``hidden_units`` lists the ``h`` of each hidden layer), with block lower-triangular
    weights (feature ``j``'s units read features ``<= j`` only), positive diagonal blocks
    (``exp`` of the raw weights) and an increasing activation, so ``z_j`` increases in
    ``x_j`` and the Jacobian is triangular. The last layer maps back to ``D`` outputs.
    The activation is a leaky tanh, ``tanh(a) + leak * a`` (the paper's tanh is bounded,
    so its ``f`` is not onto ``R^D``; see :mod:`kflows.bijectors.bnaf`). With
    ``weight_norm`` each unit's incoming weights are normalised to a learned scale, as in
    the paper.

    Fast direction: **density** (``f`` and its log-det in one pass). Sampling inverts
    ``f`` feature by feature: D scalar root searches
    (:func:`~kflows.bijectors.root.invert_increasing` in a bracket set by the slopes'
    known bounds; about 35 passes of ``f`` each in float64), exact to about 1e-15 in
    float64 and 1e-6 in float32. Context: a conditional BNAF adds ``context @ K`` (``K``
    zero-initialised) to the first layer's pre-activations, so ``f`` stays increasing in
    ``x``. Initialisation: random (a BNAF has no identity point); the first
    ``log_prob`` already gives a proper density.

    Args:
        hidden_units: the block width ``h`` of each hidden layer (units per feature), at
            least one layer.
        leak: slope of the activation's linear part, > 0.
        weight_norm: weight-normalise every linear layer (the paper's parametrisation).
        steps: bisection steps of each root search when sampling (None: ``k + 30`` in
            float64, ``k + 22`` in float32, where ``k = ceil(H log2((1 + leak) / leak)) + 1``
            doublings of the bracket suffice for ``H`` hidden layers; see
            :mod:`kflows.bijectors.bnaf`).

    Example:
        >>> flow = kflows.Flow([kflows.BlockNeuralAutoregressive((8, 8))], event_dim=2)
        >>> flow.log_prob([[0.0, 1.0]]).shape
        TensorShape([1])

    References:
        De Cao, Titov, Aziz. Block Neural Autoregressive Flow. UAI 2019.
    """

    fast_direction = "density"
    uses_context = True
    initialisation = "random"

    def __init__(
        self,
        hidden_units=(16, 16),
        leak: float = 0.5,
        weight_norm: bool = True,
        steps: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        units = tuple(hidden_units) if isinstance(hidden_units, (list, tuple)) else None
        if not units or not all(is_integer(h) and h >= 1 for h in units):
            raise ValueError(
                f"Expected hidden_units as a non-empty list of integers >= 1 (units per "
                f"feature); got {hidden_units!r}."
            )
        if isinstance(leak, bool) or not isinstance(leak, numbers.Real) or not leak > 0:
            raise ValueError(f"Expected leak > 0 (a float); got {leak!r}.")
        if not isinstance(weight_norm, bool):
            raise TypeError(f"Expected weight_norm True or False; got {weight_norm!r}.")
        if steps is not None and not (is_integer(steps) and steps >= 1):
            raise ValueError(f"Expected steps an integer >= 1 or None; got {steps!r}.")
        self.hidden_units = tuple(int(h) for h in units)
        self.leak = float(leak)
        self.weight_norm = weight_norm
        self.steps = None if steps is None else int(steps)

    def build(self, x_shape, context_shape=None):
        super().build(x_shape, context_shape)
        dim = check_event_dim(x_shape, 1, type(self).__name__)
        widths = [1, *self.hidden_units, 1]
        self.kernels, self.biases, self.log_scales = [], [], []
        for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
            self.kernels.append(
                self.add_weight(
                    (dim * n_in, dim * n_out), initializer="glorot_uniform", name=f"kernel_{i}"
                )
            )
            self.biases.append(
                self.add_weight((dim * n_out,), initializer="zeros", name=f"bias_{i}")
            )
            if self.weight_norm:
                # The n_in positive diagonal entries of a unit add up to about sqrt(n_in)
                # times its norm, and an activation's slope lies in [leak, 1 + leak]: scaled
                # by their geometric mean, the network's slope starts near one (within a
                # factor sqrt((1 + leak) / leak) per hidden layer) at zero and in the tails.
                start = -0.5 * math.log(n_in)
                if i:
                    start -= 0.5 * math.log(self.leak * (1.0 + self.leak))
                self.log_scales.append(
                    self.add_weight(
                        (dim * n_out,),
                        initializer=keras.initializers.Constant(start),
                        name=f"log_scale_{i}",
                    )
                )
        track_items(self, "kernel", self.kernels)
        track_items(self, "bias", self.biases)
        track_items(self, "log_scale", self.log_scales)
        self.context_kernel = None
        if context_shape is not None:
            self.context_kernel = self.add_weight(
                (int(context_shape[-1]), dim * widths[1]),
                initializer="zeros",
                name="context_kernel",
            )

    def make_bijector(self, context=None, training=False):
        # A partial of a module-level function, not a closure, so the bijector pickles.
        return bijectors.BlockNeuralAutoregressive(
            functools.partial(_weights, self, context),
            event_size=self.event_dim,
            leak=self.leak,
            steps=self.steps,
            variables=self.variables,
            name="bnaf",
        )

    def get_config(self):
        return {
            **super().get_config(),
            "hidden_units": list(self.hidden_units),
            "leak": self.leak,
            "weight_norm": self.weight_norm,
            "steps": self.steps,
        }
