"""Ready-made flows for the common recipes.

Every builder takes the same core keywords: ``num_layers``, ``hidden_units``,
``conditioner`` (a dict of further arguments of each layer's network, e.g.
``{"residual": True}``), ``base``, ``context_dim``, ``event_dim``, ``dtype`` and ``name``
(plus ``transform`` where the layers have one). Counts are validated: ``num_layers``,
``event_dim`` and ``context_dim`` must be integers >= 1 (``2.5``, ``True`` or ``"3"`` are
refused, never rounded). With ``event_dim`` the flow comes back built, its weights created.
"""

from __future__ import annotations

import numbers

from kflows.bases import Base
from kflows.flow import Flow
from kflows.layers import (
    FFJORD,
    ActNorm,
    Coupling,
    LULinear,
    MaskedAutoregressive,
    Permute,
    Reverse,
)
from kflows.matching import DEFAULT_VELOCITY, FlowMatching
from kflows.transforms import RationalQuadraticSpline

__all__ = ["ffjord", "flow_matching", "glow", "maf", "nsf", "nsf_coupling", "realnvp"]


def _count(value, name: str, allow_none: bool = False) -> int | None:
    """``value`` as an int >= 1 (or None when allowed); bools, floats and strings are refused."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        expected = "an integer >= 1" + (" or None" if allow_none else "")
        raise TypeError(
            f"Expected {name} to be {expected}; got {value!r} ({type(value).__name__})."
        )
    if value < 1:
        raise ValueError(f"Expected {name} >= 1; got {value}.")
    return int(value)


def _flow(layers, event_dim, context_dim, **kwargs) -> Flow:
    """The :class:`Flow` of ``layers``, built for ``event_dim`` features when it is given."""
    event_dim = _count(event_dim, "event_dim", allow_none=True)
    context_dim = _count(context_dim, "context_dim", allow_none=True)
    return Flow(layers, context_dim=context_dim, event_dim=event_dim, **kwargs)


def _network(hidden_units, conditioner) -> dict:
    """The arguments of one layer's conditioner: ``hidden_units`` plus ``conditioner``."""
    if conditioner is not None and not isinstance(conditioner, dict):
        raise TypeError(
            "Expected conditioner as a dict of network arguments (each layer builds its own "
            f"network), e.g. {{'residual': True}}; got {type(conditioner).__name__}."
        )
    args = dict(conditioner or {})
    if hidden_units is not None:
        args["hidden_units"] = hidden_units
    return args


def _permutation(kind: str, seed: int | None, index: int, dtype):
    if kind == "reverse":
        return Reverse(dtype=dtype)
    if kind == "random":
        return Permute("random", seed=None if seed is None else seed + index, dtype=dtype)
    raise ValueError(f"Expected permutation 'reverse' or 'random'; got {kind!r}.")


def _stack(make_layer, num_layers: int, permutation: str, seed: int | None, dtype=None):
    layers = []
    for i in range(_count(num_layers, "num_layers")):
        if i:
            layers.append(_permutation(permutation, seed, i, dtype))
        layers.append(make_layer(i))
    return layers


def maf(
    num_layers: int = 5,
    hidden_units=None,
    transform="affine",
    conditioner: dict | None = None,
    permutation: str = "reverse",
    seed: int | None = 0,
    base: Base | None = None,
    context_dim: int | None = None,
    event_dim: int | None = None,
    dtype=None,
    name: str = "maf",
) -> Flow:
    """A masked autoregressive flow: ``num_layers`` MAF layers with permutations between.

    Args:
        num_layers: number of autoregressive layers.
        transform: ``"affine"`` (MAF) or ``"spline"`` (autoregressive neural spline flow).
        permutation: ``"reverse"`` or ``"random"`` (seeded) between layers.
        seed: seed of random permutations.
        hidden_units: widths of each layer's network (None: the network's default).
        conditioner: further arguments of each layer's network, e.g. ``{"residual": True,
            "order": "random"}``.
        base: base distribution layer (standard normal by default).
        context_dim: context features of a conditional flow.
        event_dim: number of features D; when given, the flow is returned built (its
            weights exist), otherwise it builds on the first data it sees.
        dtype: compute dtype, e.g. ``"float64"``.
        name: model name.

    Example:
        >>> flow = kflows.maf(num_layers=5, hidden_units=(128, 128), event_dim=3)
        >>> len(flow.flow_layers)  # five MAF layers and four reversals
        9
    """

    def make(_):
        network = _network(hidden_units, conditioner)
        return MaskedAutoregressive(transform=transform, conditioner=network, dtype=dtype)

    layers = _stack(make, num_layers, permutation, seed, dtype)
    return _flow(layers, event_dim, context_dim, base=base, dtype=dtype, name=name)


def realnvp(
    num_layers: int = 5,
    hidden_units=None,
    transform="affine",
    conditioner: dict | None = None,
    mask: str = "half",
    permutation: str = "reverse",
    seed: int | None = 0,
    base: Base | None = None,
    context_dim: int | None = None,
    event_dim: int | None = None,
    dtype=None,
    name: str = "realnvp",
) -> Flow:
    """A coupling flow (RealNVP): ``num_layers`` coupling layers with permutations between.

    With ``transform="spline"`` this is a coupling neural spline flow. Arguments as in
    :func:`maf`, plus ``mask`` (``"half"`` or ``"alternate"``).

    Example:
        >>> flow = kflows.realnvp(num_layers=6, hidden_units=(64, 64), event_dim=4)
        >>> flow.sample(2, seed=0).shape
        TensorShape([2, 4])
    """

    def make(_):
        network = _network(hidden_units, conditioner)
        return Coupling(transform=transform, mask=mask, conditioner=network, dtype=dtype)

    layers = _stack(make, num_layers, permutation, seed, dtype)
    return _flow(layers, event_dim, context_dim, base=base, dtype=dtype, name=name)


def nsf(
    num_layers: int = 5,
    hidden_units=None,
    bins: int = 8,
    bound: float = 3.0,
    name: str = "nsf",
    **kwargs,
) -> Flow:
    """An autoregressive neural spline flow: :func:`maf` with a rational-quadratic spline.

    Fast direction: density. Arguments as in :func:`maf`, plus the spline's ``bins`` and
    ``bound`` (the spline acts on ``[-bound, bound]`` and is the identity outside).

    Example:
        >>> flow = kflows.nsf(num_layers=5, hidden_units=(64, 64), bins=8, event_dim=2)
        >>> flow.flow_layers[0].transform
        RationalQuadraticSpline(bins=8, bound=3.0, ...)
    """
    spline = RationalQuadraticSpline(bins=bins, bound=bound)
    return maf(num_layers, hidden_units, transform=spline, name=name, **kwargs)


def nsf_coupling(
    num_layers: int = 5,
    hidden_units=None,
    bins: int = 8,
    bound: float = 3.0,
    name: str = "nsf_coupling",
    **kwargs,
) -> Flow:
    """A coupling neural spline flow: :func:`realnvp` with a rational-quadratic spline.

    Fast direction: both. Arguments as in :func:`realnvp`, plus the spline's ``bins`` and
    ``bound``.

    Example:
        >>> flow = kflows.nsf_coupling(num_layers=5, hidden_units=(64, 64), bins=8)
        >>> flow.flow_layers[0].fast_direction
        'both'
    """
    spline = RationalQuadraticSpline(bins=bins, bound=bound)
    return realnvp(num_layers, hidden_units, transform=spline, name=name, **kwargs)


def glow(
    num_layers: int = 5,
    hidden_units=None,
    transform="affine",
    conditioner: dict | None = None,
    base: Base | None = None,
    context_dim: int | None = None,
    event_dim: int | None = None,
    dtype=None,
    name: str = "glow",
) -> Flow:
    """A Glow-style flow for tabular data: ``num_layers`` steps of ActNorm, LULinear, coupling.

    Each step (data side first) normalises with :class:`~kflows.ActNorm` (initialised on
    the first training batch), mixes the features with a learned :class:`~kflows.LULinear`
    (so no fixed permutations are needed) and applies a :class:`~kflows.Coupling`. Fast
    direction: both. Arguments as in :func:`realnvp`.

    Example:
        >>> flow = kflows.glow(num_layers=4, hidden_units=(64, 64))
        >>> [type(layer).__name__ for layer in flow.flow_layers[:3]]
        ['ActNorm', 'LULinear', 'Coupling']

    References:
        Kingma, Dhariwal. Glow: Generative Flow with Invertible 1x1 Convolutions.
        NeurIPS 2018.
    """
    layers = []
    for _ in range(_count(num_layers, "num_layers")):
        network = _network(hidden_units, conditioner)
        layers += [
            ActNorm(dtype=dtype),
            LULinear(dtype=dtype),
            Coupling(transform=transform, conditioner=network, dtype=dtype),
        ]
    return _flow(layers, event_dim, context_dim, base=base, dtype=dtype, name=name)


def ffjord(
    num_layers: int = 1,
    hidden_units=None,
    conditioner: dict | None = None,
    time: float = 1.0,
    trace: str = "exact",
    solver: str = "dormand_prince",
    rtol: float = 1e-5,
    atol: float = 1e-5,
    solver_options: dict | None = None,
    num_probes: int = 1,
    seed: int | None = None,
    base: Base | None = None,
    context_dim: int | None = None,
    event_dim: int | None = None,
    dtype=None,
    name: str = "ffjord",
) -> Flow:
    """A continuous normalizing flow: ``num_layers`` FFJORD blocks, one ODE each.

    Neither direction is fast: every ``log_prob`` and every sample solves an ODE. Use
    ``trace="hutchinson"`` when ``D`` is large (tens of features or more). The other
    arguments are :class:`~kflows.FFJORD`'s; ``hidden_units`` and ``conditioner`` set each
    block's dynamics network (smooth ``tanh`` by default).

    Example:
        >>> flow = kflows.ffjord(hidden_units=(64, 64), rtol=1e-5, atol=1e-5)
        >>> flow.flow_layers[0].fast_direction
        'neither'
    """
    layers = [
        FFJORD(
            conditioner=_network(hidden_units, conditioner),
            time=time,
            trace=trace,
            num_probes=num_probes,
            seed=seed,
            solver=solver,
            rtol=rtol,
            atol=atol,
            solver_options=solver_options,
            dtype=dtype,
        )
        for _ in range(_count(num_layers, "num_layers"))
    ]
    return _flow(layers, event_dim, context_dim, base=base, dtype=dtype, name=name)


def flow_matching(
    num_layers: int = 1,
    hidden_units=None,
    conditioner: dict | None = None,
    sigma_min: float = 1e-4,
    time_sampler="uniform",
    coupling="independent",
    trace: str = "exact",
    solver: str = "dormand_prince",
    rtol: float = 1e-5,
    atol: float = 1e-5,
    solver_options: dict | None = None,
    num_probes: int = 1,
    probe_seed: int | None = None,
    seed: int | None = None,
    base: Base | None = None,
    context_dim: int | None = None,
    event_dim: int | None = None,
    dtype=None,
    name: str = "flow_matching",
) -> FlowMatching:
    """A continuous flow trained by flow matching (:class:`~kflows.FlowMatching`).

    One velocity field, an :class:`~kflows.FFJORD` layer whose network (by default
    :data:`~kflows.matching.DEFAULT_VELOCITY`, an MLP of widths (128, 128, 128) with
    ``swish``) sees ``[x, t]`` and the context. ``fit`` regresses it on the conditional
    optimal-transport path (one network pass per step, no ODE solve); ``log_prob`` and
    sampling solve its ODE (``solver``, ``rtol``, ``atol``, ``solver_options``, and
    ``trace``: ``"exact"``, or ``"hutchinson"`` with ``num_probes`` and ``probe_seed`` for
    large ``D``). A fixed-step ``solver="rk4"`` with ``solver_options={"num_steps": N}``
    samples at a known cost. ``fit``'s ``loss`` is the regression loss; ``evaluate``'s
    ``loss`` is the NLL (see :class:`~kflows.FlowMatching`).

    Args:
        num_layers: must be 1 (one velocity field; deepen it with ``hidden_units``); the
            keyword is shared with the other builders.
        sigma_min: width of the path at the data end, in ``[0, 1)``.
        time_sampler: ``"uniform"`` or ``"logit_normal"`` (or a dict with parameters).
        coupling: ``"independent"`` or ``"ot"`` (minibatch optimal transport; or a dict
            with ``reg`` and ``iterations``).
        probe_seed: seed of the Hutchinson probes (FFJORD's ``seed``).
        seed: seed of the training noise (None: drawn from Python's ``random``).
        hidden_units, conditioner, base, context_dim, event_dim, dtype, name: as in
            :func:`ffjord`.

    Returns:
        A :class:`~kflows.FlowMatching` model, built when ``event_dim`` is given.

    Raises:
        TypeError, ValueError: an argument of the wrong type or out of range.

    Example:
        >>> model = kflows.flow_matching(hidden_units=(64, 64), coupling="ot", event_dim=2)
        >>> model.flow_layers[0].fast_direction, model.coupling["name"]
        ('neither', 'ot')
    """
    if _count(num_layers, "num_layers") != 1:
        raise ValueError(
            "Expected num_layers=1: flow matching trains one velocity field (deepen its "
            f"network with hidden_units); got {num_layers}."
        )
    velocity = FFJORD(
        conditioner={**DEFAULT_VELOCITY, **_network(hidden_units, conditioner)},
        trace=trace,
        num_probes=num_probes,
        seed=probe_seed,
        solver=solver,
        rtol=rtol,
        atol=atol,
        solver_options=solver_options,
        dtype=dtype,
    )
    return FlowMatching(
        [velocity],
        base=base,
        context_dim=_count(context_dim, "context_dim", allow_none=True),
        event_dim=_count(event_dim, "event_dim", allow_none=True),
        sigma_min=sigma_min,
        time_sampler=time_sampler,
        coupling=coupling,
        seed=seed,
        dtype=dtype,
        name=name,
    )
