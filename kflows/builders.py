"""Ready-made flows for the common recipes."""

from __future__ import annotations

from kflows.bases import Base
from kflows.flow import Flow
from kflows.layers import Coupling, MaskedAutoregressive, Permute, Reverse


def _permutation(kind: str, seed: int | None, index: int, dtype):
    if kind == "reverse":
        return Reverse(dtype=dtype)
    if kind == "random":
        return Permute("random", seed=None if seed is None else seed + index, dtype=dtype)
    raise ValueError(f"Expected permutation 'reverse' or 'random'; got {kind!r}.")


def _stack(make_layer, num_layers: int, permutation: str, seed: int | None, dtype=None):
    if num_layers < 1:
        raise ValueError(f"Expected num_layers >= 1; got {num_layers}.")
    layers = []
    for i in range(num_layers):
        if i:
            layers.append(_permutation(permutation, seed, i, dtype))
        layers.append(make_layer(i))
    return layers


def maf(
    num_layers: int = 5,
    hidden_units=(128, 128),
    transform="affine",
    residual: bool = False,
    permutation: str = "reverse",
    base: Base | None = None,
    context_dim: int | None = None,
    seed: int | None = 0,
    dtype=None,
    name: str = "maf",
) -> Flow:
    """A masked autoregressive flow: ``num_layers`` MAF layers with permutations between.

    Args:
        num_layers: number of autoregressive layers.
        hidden_units: MADE hidden widths.
        transform: ``"affine"`` (MAF) or ``"spline"`` (autoregressive neural spline flow).
        residual: residual MADE blocks.
        permutation: ``"reverse"`` or ``"random"`` (seeded) between layers.
        base: base distribution layer (standard normal by default).
        context_dim: context features of a conditional flow.
        seed: seed of random permutations.
        dtype: compute dtype, e.g. ``"float64"``.
        name: model name.

    Example:
        >>> flow = kflows.maf(num_layers=5, hidden_units=(128, 128))
    """

    def make(_):
        return MaskedAutoregressive(
            transform=transform, hidden_units=hidden_units, residual=residual, dtype=dtype
        )

    layers = _stack(make, num_layers, permutation, seed, dtype)
    return Flow(layers, base=base, context_dim=context_dim, dtype=dtype, name=name)


def realnvp(
    num_layers: int = 5,
    hidden_units=(128, 128),
    transform="affine",
    mask: str = "half",
    residual: bool = False,
    permutation: str = "reverse",
    base: Base | None = None,
    context_dim: int | None = None,
    seed: int | None = 0,
    dtype=None,
    name: str = "realnvp",
) -> Flow:
    """A coupling flow (RealNVP): ``num_layers`` coupling layers with permutations between.

    With ``transform="spline"`` this is a coupling neural spline flow. Arguments as in
    :func:`maf`, plus ``mask`` (``"half"`` or ``"alternate"``).

    Example:
        >>> flow = kflows.realnvp(num_layers=6, hidden_units=(64, 64))
    """

    def make(_):
        return Coupling(
            transform=transform,
            mask=mask,
            hidden_units=hidden_units,
            residual=residual,
            dtype=dtype,
        )

    layers = _stack(make, num_layers, permutation, seed, dtype)
    return Flow(layers, base=base, context_dim=context_dim, dtype=dtype, name=name)
