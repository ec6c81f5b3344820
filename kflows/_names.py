"""The public builder and layer names: the one list, read without importing TensorFlow.

``kflows.builders.__all__``, ``kflows.layers.__all__``, the lazy names of ``kflows`` and
the command line's ``--flow`` choices are all made from these tuples, so that a new
builder or layer is named once, here (and defined in its module, and imported for type
checkers in ``kflows/__init__.py``).
"""

#: The builders of :mod:`kflows.builders` (sorted; ``kflows train --flow`` offers them).
BUILDERS = (
    "bnaf",
    "bpf",
    "ffjord",
    "flow_matching",
    "gf",
    "glow",
    "maf",
    "naf",
    "ncsf",
    "nsf",
    "nsf_coupling",
    "planar",
    "radial",
    "realnvp",
    "residual",
    "sospf",
    "sylvester",
    "unaf",
)

#: The layers of :mod:`kflows.layers`, also served as ``kflows.<name>``.
LAYERS = (
    "FFJORD",
    "ActNorm",
    "BatchNorm",
    "BlockNeuralAutoregressive",
    "Coupling",
    "Elementwise",
    "FlowLayer",
    "Gaussianization",
    "InverseAutoregressive",
    "LULinear",
    "MaskedAutoregressive",
    "Permute",
    "Planar",
    "Radial",
    "Residual",
    "Reverse",
    "Standardize",
    "Sylvester",
)
