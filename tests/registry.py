"""The one registry of layer constructors that drives every generic check.

Adding a layer = one file in kflows/layers/ + one entry here. Each entry is
``lambda dtype, dim: layer`` and builds a fresh, unbuilt layer with small networks so that
the suite stays fast. ``dim`` is the event size the tests will use (2 or 3).
"""

import numpy as np

import kflows

SMALL = (16, 16)


def _adapted_standardize(dtype, dim):
    layer = kflows.Standardize(dtype=dtype)
    rng = np.random.default_rng(0)
    layer.adapt(0.5 + 1.5 * rng.standard_normal((256, dim)))
    return layer


def _ode_tol(dtype):
    return 1e-8 if str(dtype) == "float64" else 1e-6


LAYERS = {
    "maf_affine": lambda dtype, dim: kflows.MaskedAutoregressive(hidden_units=SMALL, dtype=dtype),
    "maf_residual_random": lambda dtype, dim: kflows.MaskedAutoregressive(
        hidden_units=SMALL, residual=True, order="random", seed=3, dtype=dtype
    ),
    "iaf_affine": lambda dtype, dim: kflows.InverseAutoregressive(hidden_units=SMALL, dtype=dtype),
    "coupling_half": lambda dtype, dim: kflows.Coupling(hidden_units=SMALL, dtype=dtype),
    "coupling_alternate_residual": lambda dtype, dim: kflows.AffineCoupling(
        mask="alternate", hidden_units=SMALL, residual=True, dtype=dtype
    ),
    "coupling_custom_mask": lambda dtype, dim: kflows.Coupling(
        mask=[i % 3 == 1 for i in range(dim)], hidden_units=SMALL, dtype=dtype
    ),
    "permute_random": lambda dtype, dim: kflows.Permute(seed=1, dtype=dtype),
    "reverse": lambda dtype, dim: kflows.Reverse(dtype=dtype),
    "spline_autoregressive": lambda dtype, dim: kflows.SplineAutoregressive(
        bins=5, bound=2.0, hidden_units=SMALL, dtype=dtype
    ),
    "spline_coupling": lambda dtype, dim: kflows.SplineCoupling(
        bins=4, bound=2.5, mask="alternate", hidden_units=SMALL, dtype=dtype
    ),
    "lu_linear": lambda dtype, dim: kflows.LULinear(dtype=dtype),
    "lu_linear_random": lambda dtype, dim: kflows.LULinear("random", seed=2, dtype=dtype),
    "actnorm": lambda dtype, dim: kflows.ActNorm(dtype=dtype),
    "batch_norm": lambda dtype, dim: kflows.BatchNorm(dtype=dtype),
    "standardize": lambda dtype, dim: _adapted_standardize(dtype, dim),
    "elementwise_sinh_arcsinh": lambda dtype, dim: kflows.Elementwise(
        "sinh_arcsinh", {"skewness": 0.3, "tailweight": 1.2}, dtype=dtype
    ),
    # FFJORD's inverse and log-det are only as exact as the ODE solve, and the generic checks
    # compare at atol 1e-6 in float64: tight tolerances there, cheaper ones in float32.
    "ffjord": lambda dtype, dim: kflows.FFJORD(
        hidden_units=(8,), rtol=_ode_tol(dtype), atol=_ode_tol(dtype), dtype=dtype
    ),
}

#: Layers that are not the identity at initialisation, by design (fixed permutations).
NOT_IDENTITY_AT_INIT = {"permute_random", "reverse", "lu_linear_random"}

#: Layers that ignore the context (they still accept it).
NO_CONTEXT = {
    "permute_random",
    "reverse",
    "lu_linear",
    "lu_linear_random",
    "actnorm",
    "batch_norm",
    "standardize",
    "elementwise_sinh_arcsinh",
}

#: Layers set at initialisation by data (``initialize``/``adapt``) or by fixed arguments, so
#: neither the identity nor volume-preserving (Standardize is adapted in its entry);
#: tests/test_normalization.py and tests/test_support.py check what they start as.
SET_AT_INIT = {"actnorm", "standardize", "elementwise_sinh_arcsinh"}

#: Layers without trainable weights (nothing for fit to learn in them).
FIXED = {"permute_random", "reverse", "standardize", "elementwise_sinh_arcsinh"}

#: Layers whose autodiff Jacobian ``pfor`` cannot vectorize (the ODE solver's adjoint
#: gradient is a while loop over TensorLists); the Jacobian check loops over rows instead.
NOT_VECTORIZABLE = {"ffjord"}

#: Layers whose bijector does not pickle: FFJORD's solver and trace functions are closures,
#: as are the ones TFP's own FFJORD examples pass in.
NOT_PICKLABLE = {"ffjord"}
