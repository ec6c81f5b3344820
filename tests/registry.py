"""The one registry of layer constructors that drives every generic check.

Adding a layer = one file in kflows/layers/ + one entry here. Each entry is
``lambda dtype, dim: layer`` and builds a fresh, unbuilt layer with small networks so that
the suite stays fast. ``dim`` is the event size the tests use (3, and 7 where a larger D
catches what small ones hide: at D <= 3 a wrong permutation can undo itself).

What a layer is (its fast direction, whether it reads the context, what it is at
initialisation) is declared on its class; the sets below are derived from those traits.
"""

import numpy as np

import kflows

SMALL = {"hidden_units": (16, 16)}


def _adapted_standardize(dtype, dim):
    layer = kflows.Standardize(dtype=dtype)
    rng = np.random.default_rng(0)
    layer.adapt(0.5 + 1.5 * rng.standard_normal((256, dim)))
    return layer


def _ode_tol(dtype):
    # A network computing in float16 or bfloat16 is too noisy for an adaptive solver to
    # reach 1e-6: it would take tiny steps (tens of seconds per solve).
    if str(dtype).startswith("mixed"):
        return 1e-3
    return 1e-8 if str(dtype) == "float64" else 1e-6


LAYERS = {
    "maf_affine": lambda dtype, dim: kflows.MaskedAutoregressive(conditioner=SMALL, dtype=dtype),
    "maf_residual_random": lambda dtype, dim: kflows.MaskedAutoregressive(
        conditioner=kflows.MADE(
            hidden_units=(16, 16), residual=True, order="random", seed=3, dtype=dtype
        ),
        dtype=dtype,
    ),
    "iaf_affine": lambda dtype, dim: kflows.InverseAutoregressive(conditioner=SMALL, dtype=dtype),
    "coupling_half": lambda dtype, dim: kflows.Coupling(conditioner=SMALL, dtype=dtype),
    "coupling_alternate_residual": lambda dtype, dim: kflows.Coupling(
        mask="alternate", conditioner={**SMALL, "residual": True}, dtype=dtype
    ),
    "coupling_custom_mask": lambda dtype, dim: kflows.Coupling(
        mask=[i % 3 == 1 for i in range(dim)], conditioner=SMALL, dtype=dtype
    ),
    # The design's own test: a new transform and a new network, each one class, no new layer.
    "coupling_additive_gated": lambda dtype, dim: kflows.Coupling(
        transform="additive",
        mask="alternate",
        conditioner=kflows.networks.GatedMLP(hidden_units=(16, 16), dtype=dtype),
        dtype=dtype,
    ),
    "permute_random": lambda dtype, dim: kflows.Permute(seed=1, dtype=dtype),
    "reverse": lambda dtype, dim: kflows.Reverse(dtype=dtype),
    "spline_autoregressive": lambda dtype, dim: kflows.MaskedAutoregressive(
        transform={"name": "spline", "bins": 5, "bound": 2.0}, conditioner=SMALL, dtype=dtype
    ),
    "spline_coupling": lambda dtype, dim: kflows.Coupling(
        transform={"name": "spline", "bins": 4, "bound": 2.5},
        mask="alternate",
        conditioner=SMALL,
        dtype=dtype,
    ),
    "lu_linear": lambda dtype, dim: kflows.LULinear(dtype=dtype),
    "lu_linear_random": lambda dtype, dim: kflows.LULinear("random", seed=2, dtype=dtype),
    # A monotone block-triangular network: density in one pass, D root searches to sample.
    "bnaf": lambda dtype, dim: kflows.BlockNeuralAutoregressive((4,), dtype=dtype),
    "actnorm": lambda dtype, dim: kflows.ActNorm(dtype=dtype),
    "batch_norm": lambda dtype, dim: kflows.BatchNorm(dtype=dtype),
    "standardize": lambda dtype, dim: _adapted_standardize(dtype, dim),
    "elementwise_sinh_arcsinh": lambda dtype, dim: kflows.Elementwise(
        "sinh_arcsinh", {"skewness": 0.3, "tailweight": 1.2}, dtype=dtype
    ),
    # Angles: maps of the circle [-pi, pi) (see CIRCULAR below).
    "maf_circular_spline": lambda dtype, dim: kflows.MaskedAutoregressive(
        transform={"name": "circular_spline", "bins": 4}, conditioner=SMALL, dtype=dtype
    ),
    "coupling_circular_spline": lambda dtype, dim: kflows.Coupling(
        transform={"name": "circular_spline", "bins": 4},
        mask="alternate",
        conditioner=SMALL,
        dtype=dtype,
    ),
    # Initialised from data (helpers.make_flow calls flow.initialize).
    "gaussianization": lambda dtype, dim: kflows.Gaussianization(num_kernels=3, dtype=dtype),
    # Flows for VI: explicit forward, 1-D root searches for the inverse; the context goes
    # through a hypernetwork (built only when the layer sees a context).
    "planar": lambda dtype, dim: kflows.Planar(conditioner={"hidden_units": (8,)}, dtype=dtype),
    "radial": lambda dtype, dim: kflows.Radial(conditioner={"hidden_units": (8,)}, dtype=dtype),
    # Rank 2 < D (3 and 7): the coordinates orthogonal to Q pass through, and the inverse
    # costs 2 root searches, not D (tests/test_vi_flows.py checks full rank at D = 5).
    "sylvester": lambda dtype, dim: kflows.Sylvester(
        num_reflections=2, rank=2, conditioner={"hidden_units": (8,)}, dtype=dtype
    ),
    # FFJORD's inverse and log-det are only as exact as the ODE solve, and the generic checks
    # compare at atol 1e-6 in float64: tight tolerances there, cheaper ones in float32.
    "ffjord": lambda dtype, dim: kflows.FFJORD(
        conditioner={"hidden_units": (8,)},
        rtol=_ode_tol(dtype),
        atol=_ode_tol(dtype),
        dtype=dtype,
    ),
    "residual": lambda dtype, dim: kflows.Residual(conditioner={"hidden_units": (8,)}, dtype=dtype),
    # Monotonic maps explicit from the data side (density in one pass); sampling inverts
    # them numerically (kflows/bijectors/monotonic.py).
    "maf_sigmoidal": lambda dtype, dim: kflows.MaskedAutoregressive(
        transform={"name": "sigmoidal", "hidden": 3}, conditioner=SMALL, dtype=dtype
    ),
    # One hidden layer: perturbed (16, 16) weights drive g's logit to -5 and below, where
    # the data spread beyond test_layers' [-9, 9] grid (slopes ~0.01).
    "maf_umnn": lambda dtype, dim: kflows.MaskedAutoregressive(
        transform={"name": "umnn", "hidden": 2, "nodes": 33},
        conditioner={"hidden_units": (8,)},
        dtype=dtype,
    ),
    "maf_sos": lambda dtype, dim: kflows.MaskedAutoregressive(
        transform={"name": "sos", "polynomials": 4, "degree": 2}, conditioner=SMALL, dtype=dtype
    ),
    "maf_bernstein": lambda dtype, dim: kflows.MaskedAutoregressive(
        transform={"name": "bernstein", "degree": 6}, conditioner=SMALL, dtype=dtype
    ),
    "coupling_sigmoidal": lambda dtype, dim: kflows.Coupling(
        transform={"name": "sigmoidal", "hidden": 3},
        mask="alternate",
        conditioner=SMALL,
        dtype=dtype,
    ),
}

_SAMPLES = {name: make("float32", 3) for name, make in LAYERS.items()}

#: Layers that are a fixed permutation at initialisation (volume-preserving, not identity).
NOT_IDENTITY_AT_INIT = {n for n, layer in _SAMPLES.items() if layer.initialisation == "permutation"}

#: Layers that ignore the context (they still accept it).
NO_CONTEXT = {n for n, layer in _SAMPLES.items() if not layer.uses_context}

#: Layers set at initialisation by data (``initialize``/``adapt``), by fixed arguments or by
#: random initializers, so neither the identity nor volume-preserving (Standardize is
#: adapted in its entry);
#: tests/test_normalization.py and tests/test_support.py check what they start as.
SET_AT_INIT = {
    n for n, layer in _SAMPLES.items() if layer.initialisation in ("data", "fixed", "random")
}

#: Layers defined on the circle ``[-pi, pi)`` only: data off it has density zero (log-det
#: ``-inf``), so their generic checks need data on it. helpers.make_flow gives their flows
#: a base uniform on ``[-pi, pi)^D`` (so the density integrates to one), and
#: tests/test_properties.py draws their inputs inside ``[-3, 3]``; the seeded normal data of
#: helpers.data used by tests/test_layers.py lies inside already (|x| < 3).
CIRCULAR = {"maf_circular_spline", "coupling_circular_spline"}
UNIFORM_ANGLES = {"name": "Uniform", "params": {"low": -np.pi, "high": np.pi}}

#: Layers whose bijector does not pickle: FFJORD's solver and trace functions are closures,
#: as are the ones TFP's own FFJORD examples pass in.
NOT_PICKLABLE = {"ffjord"}


def _has_weights(layer):
    if not layer.built:  # Standardize's entry is adapted, hence built
        layer.build((None, 3))
    return bool(layer.trainable_weights)


#: Layers without trainable weights (nothing for fit to learn in them).
FIXED = {name for name, make in LAYERS.items() if not _has_weights(make("float32", 3))}
