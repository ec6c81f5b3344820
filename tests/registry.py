"""The one registry of layer constructors that drives every generic check.

Adding a layer = one file in kflows/layers/ + one entry here. Each entry is
``lambda dtype, dim: layer`` and builds a fresh, unbuilt layer with small networks so that
the suite stays fast. ``dim`` is the event size the tests will use (2 or 3).
"""

import kflows

SMALL = (16, 16)


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
    # FFJORD's inverse and log-det are only as exact as the ODE solve, and the generic checks
    # compare at atol 1e-6 in float64: tight tolerances there, cheaper ones in float32.
    "ffjord": lambda dtype, dim: kflows.FFJORD(
        hidden_units=(8,), rtol=_ode_tol(dtype), atol=_ode_tol(dtype), dtype=dtype
    ),
}

#: Layers that are not the identity at initialisation, by design (fixed permutations).
NOT_IDENTITY_AT_INIT = {"permute_random", "reverse"}

#: Layers that ignore the context (they still accept it).
NO_CONTEXT = {"permute_random", "reverse"}

#: Layers whose autodiff Jacobian ``pfor`` cannot vectorize (the ODE solver's adjoint
#: gradient is a while loop over TensorLists); the Jacobian check loops over rows instead.
NOT_VECTORIZABLE = {"ffjord"}
