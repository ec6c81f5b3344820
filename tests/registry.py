"""The one registry of layer constructors that drives every generic check.

Adding a layer = one file in kflows/layers/ + one entry here. Each entry is
``lambda dtype, dim: layer`` and builds a fresh, unbuilt layer with small networks so that
the suite stays fast. ``dim`` is the event size the tests will use (2 or 3).
"""

import kflows

SMALL = (16, 16)

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
}

#: Layers that are not the identity at initialisation, by design (fixed permutations).
NOT_IDENTITY_AT_INIT = {"permute_random", "reverse"}

#: Layers that ignore the context (they still accept it).
NO_CONTEXT = {"permute_random", "reverse"}

#: Layers without trainable weights (nothing for fit to learn in them).
FIXED = {"permute_random", "reverse"}
