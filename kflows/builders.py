"""Ready-made flows for the common recipes.

Every builder takes the same core keywords: ``num_layers``, ``hidden_units``,
``conditioner`` (a dict of further arguments of each layer's network, e.g.
``{"residual": True}``), ``base``, ``context_dim``, ``event_dim``, ``dtype`` and ``name``
(plus ``transform`` where the layers have one). Counts are validated: ``num_layers``,
``event_dim`` and ``context_dim`` must be integers >= 1 (``2.5``, ``True`` or ``"3"`` are
refused, never rounded). With ``event_dim`` the flow comes back built, its weights created.
"""

from __future__ import annotations

import math

from kflows._names import BUILDERS
from kflows._validate import count as _count
from kflows.bases import Base, Fixed
from kflows.flow import Flow
from kflows.layers import (
    FFJORD,
    ActNorm,
    BlockNeuralAutoregressive,
    Coupling,
    Gaussianization,
    LULinear,
    MaskedAutoregressive,
    Permute,
    Planar,
    Radial,
    Residual,
    Reverse,
    Sylvester,
)
from kflows.matching import DEFAULT_VELOCITY, FlowMatching
from kflows.transforms import (
    Bernstein,
    CircularSpline,
    DeepSigmoidal,
    MonotonicNetwork,
    RationalQuadraticSpline,
    SumOfSquares,
)

__all__ = list(BUILDERS)  # one list of the names, in kflows/_names.py


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


def _maker(layer_class, hidden_units, conditioner, dtype, **options):
    """``make(i)``: a new ``layer_class`` layer with its own network, and ``options``."""

    def make(_):
        network = _network(hidden_units, conditioner)
        return layer_class(conditioner=network, dtype=dtype, **options)

    return make


def _repeat(make_step, num_layers: int) -> list:
    """The layers of ``num_layers`` steps: ``make_step(i)`` is step ``i``'s layer or layers."""
    layers = []
    for i in range(_count(num_layers, "num_layers")):
        step = make_step(i)
        layers += step if isinstance(step, list) else [step]
    return layers


def _stack(make_layer, num_layers: int, permutation: str, seed: int | None, dtype=None):
    """``num_layers`` layers ``make_layer(i)`` with a permutation between each two."""

    def step(i):
        between = [_permutation(permutation, seed, i, dtype)] if i else []
        return [*between, make_layer(i)]

    return _repeat(step, num_layers)


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
    make = _maker(MaskedAutoregressive, hidden_units, conditioner, dtype, transform=transform)
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
    make = _maker(Coupling, hidden_units, conditioner, dtype, transform=transform, mask=mask)
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
    coupling = _maker(Coupling, hidden_units, conditioner, dtype, transform=transform)
    layers = _repeat(
        lambda i: [ActNorm(dtype=dtype), LULinear(dtype=dtype), coupling(i)], num_layers
    )
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
    make = _maker(
        FFJORD,
        hidden_units,
        conditioner,
        dtype,
        time=time,
        trace=trace,
        num_probes=num_probes,
        seed=seed,
        solver=solver,
        rtol=rtol,
        atol=atol,
        solver_options=solver_options,
    )
    layers = _repeat(make, num_layers)
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


def planar(
    num_layers: int = 16,
    hidden_units=None,
    conditioner: dict | None = None,
    base: Base | None = None,
    context_dim: int | None = None,
    event_dim: int | None = None,
    dtype=None,
    name: str = "planar",
) -> Flow:
    """A planar flow: ``num_layers`` :class:`~kflows.Planar` layers, for variational inference.

    Fast direction: sampling (``sample_and_log_prob`` runs no root search); ``log_prob`` of
    other points solves one 1-D equation per layer. Each layer's parameters follow the
    context through a zero-initialised hypernetwork (``hidden_units``, ``conditioner``)
    when ``context_dim`` is given (amortised inference); otherwise there is no network.

    Args:
        num_layers: number of planar layers (each has ``2 D + 1`` parameters).
        hidden_units, conditioner: the hypernetwork of the context (as in :func:`maf`).
        base, context_dim, event_dim, dtype, name: as in :func:`maf`.

    Example:
        >>> flow = kflows.planar(num_layers=8, event_dim=2)
        >>> flow.sample_and_log_prob(4, seed=0)[1].shape
        TensorShape([4])

    References:
        Rezende, Mohamed. Variational Inference with Normalizing Flows. ICML 2015.
    """
    layers = _repeat(_maker(Planar, hidden_units, conditioner, dtype), num_layers)
    return _flow(layers, event_dim, context_dim, base=base, dtype=dtype, name=name)


def radial(
    num_layers: int = 16,
    hidden_units=None,
    conditioner: dict | None = None,
    base: Base | None = None,
    context_dim: int | None = None,
    event_dim: int | None = None,
    dtype=None,
    name: str = "radial",
) -> Flow:
    """A radial flow: ``num_layers`` :class:`~kflows.Radial` layers, for variational inference.

    Fast direction: sampling. Arguments as in :func:`planar`.

    Example:
        >>> flow = kflows.radial(num_layers=8, event_dim=2)
        >>> flow.flow_layers[0].fast_direction
        'sampling'

    References:
        Rezende, Mohamed. Variational Inference with Normalizing Flows. ICML 2015.
    """
    layers = _repeat(_maker(Radial, hidden_units, conditioner, dtype), num_layers)
    return _flow(layers, event_dim, context_dim, base=base, dtype=dtype, name=name)


def sylvester(
    num_layers: int = 8,
    hidden_units=None,
    num_reflections: int = 4,
    rank: int | None = None,
    conditioner: dict | None = None,
    base: Base | None = None,
    context_dim: int | None = None,
    event_dim: int | None = None,
    dtype=None,
    name: str = "sylvester",
) -> Flow:
    """A Sylvester flow: ``num_layers`` :class:`~kflows.Sylvester` layers.

    Householder Sylvester flows (H-SNF) by default: each layer's ``Q`` is a product of
    ``num_reflections`` Householder reflections. With ``num_reflections=0``, the triangular
    variant (T-SNF): ``Q`` is the identity, and a :class:`~kflows.Reverse` between layers
    alternates it with the reversal, as in the paper. Fast direction: sampling;
    ``log_prob`` of other points solves ``rank`` 1-D equations per layer.

    Args:
        num_layers: number of Sylvester layers.
        num_reflections: Householder reflections per layer (0: triangular variant).
        rank: ``M``, the columns of ``Q`` (None: all ``D``).
        hidden_units, conditioner, base, context_dim, event_dim, dtype, name: as in
            :func:`planar`.

    Example:
        >>> flow = kflows.sylvester(num_layers=4, num_reflections=2, event_dim=3)
        >>> flow.log_prob([[0.0, 1.0, -1.0]]).shape
        TensorShape([1])

    References:
        van den Berg, Hasenclever, Tomczak, Welling. Sylvester Normalizing Flows for
        Variational Inference. UAI 2018.
    """
    options = {"num_reflections": num_reflections, "rank": rank}
    make = _maker(Sylvester, hidden_units, conditioner, dtype, **options)
    if num_reflections == 0 and not isinstance(num_reflections, bool):  # triangular: T-SNF
        layers = _stack(make, num_layers, "reverse", None, dtype)
    else:
        layers = _repeat(make, num_layers)
    return _flow(layers, event_dim, context_dim, base=base, dtype=dtype, name=name)


def ncsf(
    num_layers: int = 5,
    hidden_units=None,
    bins: int = 8,
    base: Base | None = None,
    name: str = "ncsf",
    **kwargs,
) -> Flow:
    """A neural circular spline flow for angles: a density on the torus ``[-pi, pi)^D``.

    :func:`maf` with the :class:`~kflows.transforms.CircularSpline` transform (a spline
    C1 on the circle, then a learned rotation) and, by default, a base uniform on
    ``[-pi, pi)^D``. Permutations between the layers (``"reverse"`` by default) permute
    angles, so they map the torus onto itself. Data off the torus (a feature outside
    ``[-pi, pi]``) gets ``log_prob`` ``-inf``. Fast direction: density. Arguments as in
    :func:`maf`, plus the spline's ``bins``. Each layer's network reads the angles
    themselves (not their cosines and sines), so the density is smooth in each angle on
    its circle but may jump where an earlier angle crosses ``+-pi``.

    Example:
        >>> flow = kflows.ncsf(num_layers=2, hidden_units=(32, 32), event_dim=2)
        >>> float(flow.log_prob([[0.5, -1.0], [4.0, 0.0]])[1])  # 4 > pi: off the torus
        -inf

    References:
        Rezende, Papamakarios, Racaniere, Albergo, Kanwar, Shanahan, Cranmer. Normalizing
        Flows on Tori and Spheres. ICML 2020.
    """
    if base is None:
        base = Fixed(
            {"name": "Uniform", "params": {"low": -math.pi, "high": math.pi}},
            dtype=kwargs.get("dtype"),
        )
    spline = CircularSpline(bins=bins)
    return maf(num_layers, hidden_units, transform=spline, base=base, name=name, **kwargs)


def gf(
    num_layers: int = 5,
    hidden_units=None,
    num_kernels: int = 8,
    seed: int | None = 0,
    base: Base | None = None,
    context_dim: int | None = None,
    event_dim: int | None = None,
    dtype=None,
    name: str = "gf",
) -> Flow:
    """A Gaussianization flow: ``num_layers`` of a kernel Gaussianization and a rotation.

    Each step (data side first) Gaussianizes every feature with a
    :class:`~kflows.Gaussianization` layer of ``num_kernels`` kernels (initialised from
    the first training batch, which ``fit`` does), then mixes the features with a learned
    :class:`~kflows.LULinear` (an invertible linear map after a fixed random permutation
    drawn from ``seed``; the paper uses Householder reflections). No networks: the
    weights are the kernels and the linear maps. Fast direction: density (sampling
    inverts each Gaussianization numerically).

    Args:
        num_layers: number of Gaussianization + rotation steps.
        hidden_units: must be None: the flow has no networks (a width given here would
            have nothing to set, so it is refused rather than ignored).
        num_kernels: kernels per feature in each Gaussianization layer.
        seed: seed of the permutations of the linear layers (None: drawn).
        base, context_dim, event_dim, dtype, name: as in :func:`maf` (the layers ignore the
            context).

    Example:
        >>> flow = kflows.gf(num_layers=2, num_kernels=4)
        >>> [type(layer).__name__ for layer in flow.flow_layers]
        ['Gaussianization', 'LULinear', 'Gaussianization', 'LULinear']

    References:
        Meng, Song, Song, Ermon. Gaussianization Flows. AISTATS 2020.
    """
    if hidden_units is not None:
        raise ValueError(
            "Expected hidden_units=None: a Gaussianization flow has no networks (set "
            f"num_kernels instead); got {hidden_units!r}."
        )
    layers = _repeat(
        lambda i: [
            Gaussianization(num_kernels=num_kernels, dtype=dtype),
            LULinear("random", seed=None if seed is None else seed + i, dtype=dtype),
        ],
        num_layers,
    )
    return _flow(layers, event_dim, context_dim, base=base, dtype=dtype, name=name)


def residual(
    num_layers: int = 4,
    hidden_units=None,
    conditioner: dict | None = None,
    actnorm: bool = True,
    fixed_point_iterations: int = 100,
    newton_steps: int = 2,
    exact_max_dim: int = 16,
    num_terms: int = 10,
    num_probes: int = 1,
    seed: int | None = None,
    base: Base | None = None,
    context_dim: int | None = None,
    event_dim: int | None = None,
    dtype=None,
    name: str = "residual",
) -> Flow:
    """An invertible residual flow: ``num_layers`` blocks ``z = x + g(x)``, ActNorm before each.

    Each block is a :class:`~kflows.Residual` whose network ``g`` is a spectrally
    normalised :class:`~kflows.networks.LipschitzMLP` (``hidden_units``, and
    ``conditioner`` for its other arguments such as ``{"coeff": 0.9, "activation":
    "elu"}``); with ``actnorm`` an :class:`~kflows.ActNorm` (initialised on the first
    training batch) precedes each block on the data side, as in Chen et al. Fast
    direction: density (sampling runs ``fixed_point_iterations`` passes per block). The
    log-det is exact up to ``exact_max_dim`` features and a truncated Hutchinson power
    series (``num_terms``, ``num_probes``; block ``i`` uses probe seed ``seed + i``) above.

    Args:
        num_layers: number of residual blocks.
        actnorm: put an ActNorm before each block.
        fixed_point_iterations, newton_steps, exact_max_dim, num_terms, num_probes: as in
            :class:`~kflows.Residual`.
        seed: seed of the Hutchinson probes (None: new probes at each call).
        hidden_units, conditioner, base, context_dim, event_dim, dtype, name: as in
            :func:`maf`.

    Example:
        >>> flow = kflows.residual(num_layers=2, hidden_units=(32, 32), event_dim=2)
        >>> [type(layer).__name__ for layer in flow.flow_layers]
        ['ActNorm', 'Residual', 'ActNorm', 'Residual']

    References:
        Behrmann, Grathwohl, Chen, Duvenaud, Jacobsen. Invertible Residual Networks.
        ICML 2019. Chen, Behrmann, Duvenaud, Jacobsen. Residual Flows for Invertible
        Generative Modeling. NeurIPS 2019.
    """

    def step(i):
        norm = [ActNorm(dtype=dtype)] if actnorm else []
        block = Residual(
            conditioner=_network(hidden_units, conditioner),
            fixed_point_iterations=fixed_point_iterations,
            newton_steps=newton_steps,
            exact_max_dim=exact_max_dim,
            num_terms=num_terms,
            num_probes=num_probes,
            seed=None if seed is None else seed + i,
            dtype=dtype,
        )
        return [*norm, block]

    layers = _repeat(step, num_layers)
    return _flow(layers, event_dim, context_dim, base=base, dtype=dtype, name=name)


def naf(
    num_layers: int = 5,
    hidden_units=None,
    hidden: int = 8,
    name: str = "naf",
    **kwargs,
) -> Flow:
    """A neural autoregressive flow (deep sigmoidal): :func:`maf` with NAF's transform.

    Each feature's transform is ``logit(sum_k w_k sigmoid(a_k y + b_k))`` over ``hidden``
    sigmoids (:class:`~kflows.transforms.DeepSigmoidal`). Fast direction: density (one
    pass); sampling takes D passes, each a numerical inverse. Arguments as in :func:`maf`,
    plus ``hidden``.

    Example:
        >>> flow = kflows.naf(num_layers=3, hidden_units=(32, 32), hidden=8, event_dim=2)
        >>> flow.flow_layers[0].transform
        DeepSigmoidal(hidden=8)

    References:
        Huang, Krueger, Lacoste, Courville. Neural Autoregressive Flows. ICML 2018.
    """
    return maf(num_layers, hidden_units, transform=DeepSigmoidal(hidden), name=name, **kwargs)


def unaf(
    num_layers: int = 5,
    hidden_units=None,
    hidden: int = 8,
    nodes: int = 33,
    name: str = "unaf",
    **kwargs,
) -> Flow:
    """An unconstrained monotonic neural network flow (UMNN-MAF): :func:`maf` with UMNN.

    Each feature's transform integrates a positive one-hidden-layer network of ``hidden``
    units (its weights from the conditioner) with a ``nodes``-point Clenshaw-Curtis rule
    (:class:`~kflows.transforms.MonotonicNetwork`). Fast direction: density. Arguments as
    in :func:`maf`, plus ``hidden`` and ``nodes``.

    Example:
        >>> flow = kflows.unaf(num_layers=3, hidden_units=(32, 32), nodes=17, event_dim=2)
        >>> flow.flow_layers[0].transform
        MonotonicNetwork(hidden=8, nodes=17)

    References:
        Wehenkel, Louppe. Unconstrained Monotonic Neural Networks. NeurIPS 2019.
    """
    transform = MonotonicNetwork(hidden, nodes)
    return maf(num_layers, hidden_units, transform=transform, name=name, **kwargs)


def sospf(
    num_layers: int = 5,
    hidden_units=None,
    polynomials: int = 4,
    degree: int = 3,
    bound: float = 4.0,
    name: str = "sospf",
    **kwargs,
) -> Flow:
    """A sum-of-squares polynomial flow: :func:`maf` with the SOS transform.

    Each feature's transform is the integral of a sum of ``polynomials`` squared
    polynomials of ``degree`` (:class:`~kflows.transforms.SumOfSquares`), linear outside
    ``[-bound, bound]``. Fast direction: density. Arguments as in :func:`maf`, plus
    ``polynomials``, ``degree`` and ``bound``.

    Example:
        >>> flow = kflows.sospf(num_layers=3, hidden_units=(32, 32), degree=3, event_dim=2)
        >>> flow.flow_layers[0].transform
        SumOfSquares(polynomials=4, degree=3, bound=4.0)

    References:
        Jaini, Selby, Yu. Sum-of-Squares Polynomial Flow. ICML 2019.
    """
    transform = SumOfSquares(polynomials, degree, bound)
    return maf(num_layers, hidden_units, transform=transform, name=name, **kwargs)


def bpf(
    num_layers: int = 5,
    hidden_units=None,
    degree: int = 16,
    bound: float = 4.0,
    name: str = "bpf",
    **kwargs,
) -> Flow:
    """A Bernstein-polynomial flow: :func:`maf` with a Bernstein polynomial transform.

    Each feature's transform is a Bernstein polynomial of ``degree`` with increasing
    coefficients on ``[-bound, bound]``, linear outside
    (:class:`~kflows.transforms.Bernstein`). Fast direction: density. Arguments as in
    :func:`maf`, plus ``degree`` and ``bound``.

    Example:
        >>> flow = kflows.bpf(num_layers=3, hidden_units=(32, 32), degree=8, event_dim=2)
        >>> flow.flow_layers[0].transform
        Bernstein(degree=8, bound=4.0)

    References:
        Ramasinghe, Fernando, Seneviratne, Lucey. Robust Normalizing Flows using
        Bernstein-type Polynomials. BMVC 2022 (arXiv 2102.03509).
    """
    transform = Bernstein(degree, bound)
    return maf(num_layers, hidden_units, transform=transform, name=name, **kwargs)


def bnaf(
    num_layers: int = 1,
    hidden_units=None,
    leak: float = 0.5,
    weight_norm: bool = True,
    steps: int | None = None,
    permutation: str = "reverse",
    seed: int | None = 0,
    base: Base | None = None,
    context_dim: int | None = None,
    event_dim: int | None = None,
    dtype=None,
    name: str = "bnaf",
) -> Flow:
    """A block neural autoregressive flow: ``num_layers`` BNAF layers, permutations between.

    Fast direction: density (one network pass); sampling takes D root searches per layer.
    ``hidden_units`` are the block widths per feature: ``(16, 16)`` gives two hidden layers
    of ``16 * D`` units each (the default, :class:`~kflows.BlockNeuralAutoregressive`'s).
    ``leak``, ``weight_norm`` and ``steps`` are the layer's; ``permutation``, ``seed``,
    ``base``, ``context_dim``, ``event_dim``, ``dtype`` and ``name`` as in :func:`maf`.

    Example:
        >>> flow = kflows.bnaf(num_layers=2, hidden_units=(8,), event_dim=2)
        >>> [type(layer).__name__ for layer in flow.flow_layers]
        ['BlockNeuralAutoregressive', 'Reverse', 'BlockNeuralAutoregressive']

    References:
        De Cao, Titov, Aziz. Block Neural Autoregressive Flow. UAI 2019.
    """
    options = {} if hidden_units is None else {"hidden_units": hidden_units}

    def make(_):
        return BlockNeuralAutoregressive(
            leak=leak, weight_norm=weight_norm, steps=steps, dtype=dtype, **options
        )

    layers = _stack(make, num_layers, permutation, seed, dtype)
    return _flow(layers, event_dim, context_dim, base=base, dtype=dtype, name=name)
