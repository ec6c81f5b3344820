"""kflows: normalizing flows for TensorFlow and Keras 3.

Keras owns the weights, TensorFlow Probability owns the maths: every layer is a Keras 3
layer (:mod:`kflows.layers`, networks in :mod:`kflows.networks`) that builds a TFP
bijector (:mod:`kflows.bijectors`) from its weights, and :class:`Flow` is a
``keras.Model`` whose density is a ``tfd.TransformedDistribution``.

``import kflows`` is cheap: the names below are imported on first use (PEP 562), so the
command line answers ``--help`` without importing TensorFlow, and ``kflows.data`` reads
data with numpy alone. The first name that needs TensorFlow imports it without its
start-up log lines (see ``kflows._quiet``; set ``TF_CPP_MIN_LOG_LEVEL`` to see them)
and checks that Keras runs on TensorFlow.

Keras finds kflows' classes by name only once their modules are imported: load a
``.keras`` file with :func:`kflows.load`, which imports them all.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
from typing import TYPE_CHECKING

from kflows import _names

__version__ = "0.1.0"

if TYPE_CHECKING:  # for type checkers and the API docs (griffe); at run time, _NAMES below
    from kflows.bases import (
        Base,
        DiagonalNormal,
        Fixed,
        GaussianMixture,
        StandardNormal,
        StudentT,
    )
    from kflows.builders import (
        bnaf,
        bpf,
        ffjord,
        flow_matching,
        gf,
        glow,
        maf,
        naf,
        ncsf,
        nsf,
        nsf_coupling,
        planar,
        radial,
        realnvp,
        residual,
        sospf,
        sylvester,
        unaf,
    )
    from kflows.flow import Flow
    from kflows.layers import (
        FFJORD,
        ActNorm,
        BatchNorm,
        BlockNeuralAutoregressive,
        Coupling,
        Elementwise,
        FlowLayer,
        Gaussianization,
        InverseAutoregressive,
        LULinear,
        MaskedAutoregressive,
        Permute,
        Planar,
        Radial,
        Residual,
        Reverse,
        Standardize,
        Sylvester,
    )
    from kflows.matching import FlowMatching
    from kflows.nan_guard import NonFiniteError
    from kflows.networks import MADE, MLP, Conditioner
    from kflows.saving import load
    from kflows.serving import export

#: Where each public name lives (imported on first use); the same as the imports above
#: (a test checks). The builders and layers are listed once, in kflows/_names.py.
_NAMES = {
    **dict.fromkeys(
        ("Base", "DiagonalNormal", "Fixed", "GaussianMixture", "StandardNormal", "StudentT"),
        "bases",
    ),
    **dict.fromkeys(_names.BUILDERS, "builders"),
    **dict.fromkeys(_names.LAYERS, "layers"),
    **dict.fromkeys(("Conditioner", "MADE", "MLP"), "networks"),
    "Flow": "flow",
    "FlowMatching": "matching",
    "NonFiniteError": "nan_guard",
    "export": "serving",
    "load": "saving",
}
#: Submodules that import neither TensorFlow nor Keras.
_WITHOUT_TENSORFLOW = ("_quiet", "cli", "data", "plot")

#: The public API.
__all__ = sorted(
    {
        *_NAMES,
        *("bijectors", "data", "diagnostics", "inputs", "networks", "transforms"),
    }
)


def __getattr__(name: str):
    module = _NAMES.get(name, name)
    if module == name and importlib.util.find_spec(f"kflows.{name}") is None:
        raise AttributeError(f"module 'kflows' has no attribute {name!r}")
    if module not in _WITHOUT_TENSORFLOW:
        from kflows import _quiet

        _quiet.import_tensorflow()
        importlib.import_module("kflows._backend")  # fails early on a non-TensorFlow backend
    value = importlib.import_module(f"kflows.{module}")
    if module != name:
        value = getattr(value, name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    submodules = (m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))
    return sorted({*globals(), *_NAMES, *submodules})
