"""A spectrally normalised MLP: a contraction, the residual branch of an invertible ResNet."""

from __future__ import annotations

import numbers

import keras
import tensorflow as tf

from kflows._tracking import track_items
from kflows._validate import integer
from kflows.networks.conditioner import Conditioner, broadcast_concat


def lipswish(x):
    """``x * sigmoid(x) / 1.1``: Swish scaled to be 1-Lipschitz (Chen et al., 2019).

    Swish's slope peaks at about 1.0998, so dividing by 1.1 bounds it by one; unlike ELU
    its derivative is smooth, and unlike tanh it does not saturate on the positive side.
    """
    return x * tf.math.sigmoid(x) / tf.cast(1.1, x.dtype)


#: Smooth activations whose slope is at most one, so they keep the network a contraction.
LIPSCHITZ_ACTIVATIONS = {"lipswish": lipswish, "elu": tf.nn.elu, "tanh": tf.math.tanh}


def _normalized(v, fallback):
    """``v / |v|`` along the last axis, or ``fallback`` where ``v`` is (numerically) zero.

    A zero kernel (the zero-initialised last layer) maps every vector to zero; keeping the
    previous vector then, instead of dividing by zero or storing zeros, lets the power
    iteration resume once the kernel moves.
    """
    norm = tf.norm(v, axis=-1, keepdims=True)
    tiny = tf.cast(1e-30, v.dtype)
    return tf.where(norm > tiny, v / tf.maximum(norm, tiny), fallback)


def spectral_norm_estimate(kernel, u, max_iterations: int, tolerance: float):
    """Power-iteration estimate of the largest singular value of ``kernel`` ``[n_in, n_out]``.

    Starts from ``u`` ``[n_out]`` and repeats ``u <- normalize(W^T v)``,
    ``v <- normalize(W u)`` until the estimate ``|W u|`` changes by at most ``tolerance``
    (relative) in a step, or ``max_iterations`` steps ran (a ``tf.while_loop``: the count
    depends on the weights only, so graphs and XLA are fine). Returns ``(sigma, u)`` with
    ``sigma = v^T W u``: the vectors are constants (no gradient), ``sigma`` is
    differentiable in ``kernel`` (Miyato et al., 2018). ``sigma`` never exceeds the true
    spectral norm. From the stored vector of a trained layer (close to the top singular
    vector) it stops after a step or two; from a random start, 10-70 steps bring it within
    1% of the spectral norm for random matrices of 3 to 128 rows (worse only when the two
    largest singular values nearly tie, where the estimate is still within a few percent).
    """
    w = tf.stop_gradient(kernel)
    u = tf.stop_gradient(u)
    start = tf.ones([w.shape[0]], w.dtype) / w.shape[0] ** 0.5
    v = _normalized(tf.linalg.matvec(w, u), start)
    tolerance = tf.cast(tolerance, w.dtype)

    def step(u, v, previous, done):
        u = _normalized(tf.linalg.matvec(w, v, transpose_a=True), u)
        wu = tf.linalg.matvec(w, u)
        sigma = tf.norm(wu)
        return u, _normalized(wu, v), sigma, tf.abs(sigma - previous) <= tolerance * sigma

    u, v, _, _ = tf.while_loop(
        lambda u, v, previous, done: tf.logical_not(done),
        step,
        (u, v, tf.zeros([], w.dtype), tf.constant(False)),
        maximum_iterations=max_iterations,
    )
    sigma = tf.tensordot(v, tf.linalg.matvec(kernel, u), 1)
    return sigma, u


@keras.saving.register_keras_serializable(package="kflows")
class LipschitzMLP(Conditioner):
    """An MLP with spectrally normalised kernels: Lipschitz constant below ``coeff < 1``.

    Each Dense kernel ``W`` is used as ``W / max(1, sigma(W) / coeff)``, with ``sigma`` a
    power-iteration estimate of its spectral norm computed *at call time* from the current
    kernel, so the bound holds whatever the weights are (after an optimizer step, or
    weights set by hand). The power iteration starts from a stored vector per kernel, a
    non-trainable weight: calls with ``training=True`` store the new vector (so over
    training the estimate tracks the top singular vector); other calls, and a SavedModel
    export, leave it frozen and still iterate from it (the same steps). The
    activations are smooth and 1-Lipschitz, so the network's Lipschitz constant is at most
    ``coeff ** (number of layers)`` (up to the power iteration's accuracy: the estimate is
    a lower bound of ``sigma``; see :func:`spectral_norm_estimate`). The context,
    if any, is concatenated to the input (the bound then holds in ``x`` for every context).
    The last layer is zero-initialised, so the network starts at zero.

    Args:
        hidden_units: widths of the hidden layers.
        activation: ``"lipswish"`` (default; Chen et al.), ``"elu"`` or ``"tanh"``.
        coeff: the bound on each layer's spectral norm, in ``(0, 1)``.
        power_iterations: most power-iteration steps per call (an integer >= 1).
        power_tolerance: the iteration stops when the estimate changes by at most this
            (relative) in a step.

    Example:
        >>> net = kflows.networks.LipschitzMLP(hidden_units=(16,), coeff=0.9)
        >>> net.set_output(2, 1)
        >>> net.build((None, 2))
        >>> net(tf.ones([3, 2])).shape  # zero at initialisation
        TensorShape([3, 2, 1])

    References:
        Miyato, Kataoka, Koyama, Yoshida. Spectral Normalization for Generative Adversarial
        Networks. ICLR 2018. Behrmann, Grathwohl, Chen, Duvenaud, Jacobsen. Invertible
        Residual Networks. ICML 2019. Chen, Behrmann, Duvenaud, Jacobsen. Residual Flows
        for Invertible Generative Modeling. NeurIPS 2019.
    """

    def __init__(
        self,
        hidden_units=(64, 64),
        activation: str = "lipswish",
        coeff: float = 0.97,
        power_iterations: int = 200,
        power_tolerance: float = 1e-5,
        **kwargs,
    ):
        if kwargs.pop("residual", False):
            raise ValueError(
                "Expected residual=False for a LipschitzMLP: a skip connection inside the "
                "residual branch would break its Lipschitz bound; got residual=True."
            )
        super().__init__(hidden_units=hidden_units, activation="linear", **kwargs)
        if activation not in LIPSCHITZ_ACTIVATIONS:
            raise ValueError(
                f"Expected activation in {sorted(LIPSCHITZ_ACTIVATIONS)} (1-Lipschitz, "
                f"smooth); got {activation!r}."
            )
        if isinstance(coeff, bool) or not isinstance(coeff, numbers.Real) or not 0 < coeff < 1:
            raise ValueError(f"Expected 0 < coeff < 1; got {coeff!r}.")
        integer(power_iterations, "power_iterations")
        self.activation_name = activation
        self.activation = LIPSCHITZ_ACTIVATIONS[activation]
        self.coeff = float(coeff)
        if not 0 < power_tolerance < 1:
            raise ValueError(f"Expected 0 < power_tolerance < 1; got {power_tolerance!r}.")
        self.power_iterations = int(power_iterations)
        self.power_tolerance = float(power_tolerance)

    def build(self, x_shape, context_shape=None):
        n_in = int(x_shape[-1]) + (int(context_shape[-1]) if context_shape is not None else 0)
        self._width = n_in
        widths = (*self.hidden_units, self.out_features * self.num_params)
        self.kernels, self.biases, self.vectors = [], [], []
        for i, units in enumerate(widths):
            last = i == len(widths) - 1
            self.kernels.append(
                self.add_weight(
                    shape=(n_in, units),
                    initializer="zeros" if last else "glorot_uniform",
                    name=f"kernel_{i}",
                )
            )
            self.biases.append(
                self.add_weight(shape=(units,), initializer="zeros", name=f"bias_{i}")
            )
            self.vectors.append(
                self.add_weight(
                    shape=(units,),
                    initializer=keras.initializers.RandomNormal(seed=i),
                    trainable=False,
                    name=f"power_vector_{i}",
                )
            )
            n_in = units
        for name in ("kernels", "biases", "vectors"):
            track_items(self, name, getattr(self, name))

    def normalized_kernels(self, training: bool = False) -> list:
        """The kernels divided by ``max(1, sigma / coeff)``, in the variable dtype.

        With ``training=True`` the power-iteration vectors are updated (one assign each).
        """
        kernels = []
        for kernel, vector in zip(self.kernels, self.vectors, strict=True):
            w = tf.convert_to_tensor(kernel)
            sigma, u = spectral_norm_estimate(
                w, tf.convert_to_tensor(vector), self.power_iterations, self.power_tolerance
            )
            if training:
                vector.assign(u)
            kernels.append(w / tf.maximum(tf.ones([], w.dtype), sigma / self.coeff))
        return kernels

    def function(self, context=None, training: bool = False):
        """``g(x)`` with the kernels normalised once, for repeated evaluation.

        ``g`` maps ``[..., D]`` (leading dimensions broadcasting against the context's) to
        ``[..., out_features * num_params]`` in ``x``'s dtype; each evaluation is one
        :meth:`call` with those kernels.
        """
        kernels = self.normalized_kernels(training)

        def g(x):
            out = self.call(x, context, kernels=kernels)
            return tf.reshape(out, tf.concat([tf.shape(out)[:-2], [-1]], 0))

        return g

    def call(self, x, context=None, training=False, kernels=None):
        """``[..., D_in]`` (+ context) to ``[..., out_features, num_params]``, in ``x``'s dtype.

        ``kernels``: normalised kernels from :meth:`normalized_kernels` (computed here,
        with ``training``, when None). The hidden layers compute in the compute dtype.
        """
        if kernels is None:
            kernels = self.normalized_kernels(bool(training))
        compute = tf.as_dtype(self.compute_dtype)
        h = x if context is None else broadcast_concat(x, tf.cast(context, x.dtype))
        batch = tf.shape(h)[:-1]
        h = tf.cast(tf.reshape(h, [-1, self._width]), compute)
        for i, (w, b) in enumerate(zip(kernels, self.biases, strict=True)):
            h = tf.matmul(h, tf.cast(w, compute)) + tf.cast(b, compute)
            if i < len(kernels) - 1:
                h = self.activation(h)
        shape = tf.concat([batch, [self.out_features, self.num_params]], 0)
        return tf.reshape(tf.cast(h, x.dtype), shape)

    def get_config(self):
        config = super().get_config()
        config.pop("residual", None)
        return {
            **config,
            "activation": self.activation_name,
            "coeff": self.coeff,
            "power_iterations": self.power_iterations,
            "power_tolerance": self.power_tolerance,
        }
