"""Builders that wire pyrogen's flow layers and networks into ready-to-use flows.

Every vector builder takes ``(input_dim, *, num_layers, context_dim, hidden_dims, activation,
...)`` and returns a :class:`~pyrogen.transforms.Compose` (with ``context_dim > 0``, a
:class:`~pyrogen.transforms.ConditionalCompose` whose ``condition(context)`` gives one) that can
go straight into :class:`pyro.distributions.TransformedDistribution` or
:class:`pyrogen.distributions.FlowDistribution`. The keywords mean the same in every builder:

- ``input_dim``: ``D``; ``num_layers``: number of flow layers (mixing layers between them
  are not counted); ``context_dim``: size of the context (0: unconditional);
- ``hidden_dims``: hidden sizes of each layer's network (default ``(max(32, 2D),) * 2``);
- ``activation``: the networks' hidden nonlinearity, an ``nn.Module`` class (``nn.Tanh``
  makes every layer affine far out in the tails);
- ``mixing``: ``"reverse"``, ``"lu"`` (:class:`~pyrogen.transforms.LULinear`), ``"qr"``
  (:class:`~pyrogen.transforms.QRLinear`) or ``"none"`` between layers.

The image builders
(:func:`glow`, :func:`realnvp_image`) return a
:class:`~pyrogen.distributions.ImageFlow`, a distribution over images that adds the base,
pixel preprocessing, dequantization and bits/dim (``pyrogen.flows.ImageFlow`` is the same
class). Composition order is list
order: the first layer is applied first to base noise.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import nn

from pyrogen.distributions.image import ImageFlow
from pyrogen.flows.compiled import compile, log_prob_function
from pyrogen.flows.image import glow, realnvp_image
from pyrogen.nn import MADE, DenseNN
from pyrogen.transforms import (
    Autoregressive,
    Bijector,
    Compose,
    ConditionalAutoregressive,
    ConditionalCompose,
    ConditionalCoupling,
    Coupling,
    Elementwise,
    LULinear,
    Permute,
    Planar,
    QRLinear,
    RationalQuadraticSpline,
)
from pyrogen.transforms.elementwise import Additive, Affine
from pyrogen.util import check_count, check_module_class

__all__ = [
    "ImageFlow",
    "compile",
    "glow",
    "iaf",
    "log_prob_function",
    "maf",
    "nsf",
    "planar",
    "realnvp",
    "realnvp_image",
    "spline_coupling",
]

_MIXINGS = ("reverse", "lu", "qr", "none")


def _check_common(input_dim, num_layers, context_dim, mixing, activation) -> None:
    for name, value, low in (("input_dim", input_dim, 1), ("num_layers", num_layers, 1)):
        check_count(value, name, minimum=low)
    check_count(context_dim, "context_dim", minimum=0)
    if mixing not in _MIXINGS:
        raise ValueError(f"mixing must be one of {_MIXINGS}, got {mixing!r}")
    check_module_class(activation, "activation")


def _mixer(input_dim: int, mixing: str) -> Bijector | None:
    if mixing == "reverse" and input_dim > 1:
        return Permute(list(range(input_dim - 1, -1, -1)))
    if mixing == "lu":
        return LULinear(input_dim)
    if mixing == "qr":
        return QRLinear(input_dim)
    return None


def _stack(make_layer: Callable[[], Bijector], num_layers: int, input_dim: int, mixing: str,
           context_dim: int) -> Compose:  # fmt: skip
    parts: list[Bijector] = []
    for i in range(num_layers):
        parts.append(make_layer())
        mixer = _mixer(input_dim, mixing) if i < num_layers - 1 else None
        if mixer is not None:
            parts.append(mixer)
    return ConditionalCompose(parts) if context_dim else Compose(parts)


def _hidden(input_dim: int, hidden_dims: Sequence[int] | None) -> tuple[int, ...]:
    if hidden_dims is not None:
        if isinstance(hidden_dims, (int, str)) or not hasattr(hidden_dims, "__iter__"):
            raise ValueError(f"hidden_dims must be a sequence of ints, got {hidden_dims!r}")
        return tuple(hidden_dims)
    width = max(32, 2 * input_dim)
    return (width, width)


def planar(
    input_dim: int,
    *,
    num_layers: int = 8,
    context_dim: int = 0,
    hidden_dims: Sequence[int] | None = None,
    activation: type[nn.Module] = nn.ReLU,
) -> Compose:
    """A stack of :class:`~pyrogen.transforms.Planar` layers (Rezende & Mohamed 2015).

    Cost: forward (sampling) one O(D) pass per layer; inverse (scoring data) one Newton root
    find per layer. Identity at initialization. ``hidden_dims`` and ``activation`` are accepted
    for the common builder contract and unused (a planar layer has no network).

    Shapes:
        x, y: ``(*batch, input_dim)``.
    Raises:
        ValueError: non-positive ``input_dim`` or ``num_layers``; ``context_dim > 0`` (planar
            layers take no context).
    References:
        Rezende, Mohamed (2015). Variational Inference with Normalizing Flows.
        https://arxiv.org/abs/1505.05770
    Example:
        >>> import pyro.distributions as dist
        >>> d = dist.TransformedDistribution(dist.Normal(torch.zeros(2), 1).to_event(1), planar(2))
        >>> d.log_prob(torch.zeros(3, 2)).shape
        torch.Size([3])
    """
    _check_common(input_dim, num_layers, context_dim, "none", activation)
    if context_dim:
        raise ValueError(f"planar flows take no context; got context_dim={context_dim}")
    return _stack(lambda: Planar(input_dim), num_layers, input_dim, "none", 0)


def _coupling(input_dim, num_layers, context_dim, hidden_dims, activation, mixing, make_map):
    _check_common(input_dim, num_layers, context_dim, mixing, activation)
    if input_dim < 2:
        raise ValueError(f"coupling flows need input_dim >= 2 (a split), got {input_dim}")
    hidden, split = _hidden(input_dim, hidden_dims), input_dim // 2

    def layer():
        g: Elementwise = make_map()
        out = (input_dim - split) * g.num_params
        net = DenseNN(split, hidden, out, context_dim=context_dim, activation=activation)
        cls = ConditionalCoupling if context_dim else Coupling
        return cls((input_dim,), net, transform=g, split_dim=split)

    return _stack(layer, num_layers, input_dim, mixing, context_dim)


def realnvp(
    input_dim: int,
    *,
    num_layers: int = 8,
    context_dim: int = 0,
    hidden_dims: Sequence[int] | None = None,
    activation: type[nn.Module] = nn.ReLU,
    mixing: str = "reverse",
    additive: bool = False,
    log_scale_bound: float | None = 5.0,
) -> Compose:
    """RealNVP: affine coupling layers with reversals (or LU layers) between them.

    Each coupling layer passes the first ``input_dim // 2`` features through and transforms the
    rest with a :class:`~pyrogen.nn.DenseNN` conditioner.

    Cost: both directions one conditioner pass per layer. Identity at initialization
    (mixing layers aside).

    Shapes:
        x, y: ``(*batch, input_dim)``.  context: ``(*batch, context_dim)``.
    Args:
        input_dim, num_layers, context_dim, hidden_dims, activation, mixing: the builder
            contract (module docstring); ``input_dim >= 2``.
        additive: NICE's volume-preserving additive coupling.
        log_scale_bound: soft bound on each log-scale (nats), ``None`` for none.
    Raises:
        ValueError: ``input_dim < 2`` or invalid keywords.
        TypeError: ``activation`` is not an ``nn.Module`` class.
    References:
        Dinh, Sohl-Dickstein, Bengio (2017). Density estimation using Real NVP.
        https://arxiv.org/abs/1605.08803
    Example:
        >>> f = realnvp(4, num_layers=2)
        >>> x = torch.randn(3, 4)
        >>> torch.allclose(f.inv(f(x).clone()), x, atol=1e-6)
        True
    """

    def make_map():
        return Additive() if additive else Affine(log_scale_bound)

    make_map()  # validate the bound once
    return _coupling(input_dim, num_layers, context_dim, hidden_dims, activation, mixing, make_map)


def spline_coupling(
    input_dim: int,
    *,
    num_layers: int = 5,
    context_dim: int = 0,
    hidden_dims: Sequence[int] | None = None,
    activation: type[nn.Module] = nn.ReLU,
    mixing: str = "reverse",
    num_bins: int = 8,
    bound: float = 3.0,
) -> Compose:
    """Rational-quadratic spline coupling flow (NSF-RQ-C): coupling layers whose elementwise map
    is a :class:`~pyrogen.transforms.RationalQuadraticSpline` with identity tails.

    Cost: both directions one conditioner pass per layer. Identity at initialization.

    Shapes:
        x, y: ``(*batch, input_dim)``.  context: ``(*batch, context_dim)``.
    Args:
        input_dim, num_layers, context_dim, hidden_dims, activation, mixing: the builder
            contract (module docstring); ``input_dim >= 2``.
        num_bins: spline bins ``K``; bound: the spline acts on ``[-bound, bound]``.
    Raises:
        ValueError: ``input_dim < 2`` or invalid keywords.
        TypeError: ``activation`` is not an ``nn.Module`` class.
    References:
        Durkan, Bekasov, Murray, Papamakarios (2019). Neural Spline Flows.
        https://arxiv.org/abs/1906.04032
    Example:
        >>> f = spline_coupling(4, num_layers=2)
        >>> x = torch.randn(3, 4)
        >>> torch.allclose(f.inv(f(x).clone()), x, atol=1e-6)
        True
    """

    def make_map():
        return RationalQuadraticSpline(num_bins, bound)

    make_map()
    return _coupling(input_dim, num_layers, context_dim, hidden_dims, activation, mixing, make_map)


def _autoregressive(input_dim, num_layers, context_dim, hidden_dims, activation, mixing,
                    make_map, cheap, order="natural") -> Compose:  # fmt: skip
    _check_common(input_dim, num_layers, context_dim, mixing, activation)
    hidden = _hidden(input_dim, hidden_dims)

    def layer():
        g: Elementwise = make_map()
        made = MADE(input_dim, hidden, num_params=g.num_params, context_dim=context_dim,
                    activation=activation, order=order)  # fmt: skip
        cls = ConditionalAutoregressive if context_dim else Autoregressive
        return cls(made, g, cheap=cheap)

    return _stack(layer, num_layers, input_dim, mixing, context_dim)


def maf(
    input_dim: int,
    *,
    num_layers: int = 5,
    context_dim: int = 0,
    hidden_dims: Sequence[int] | None = None,
    activation: type[nn.Module] = nn.ReLU,
    mixing: str = "reverse",
    log_scale_bound: float | None = 5.0,
    order: str = "random",
) -> Compose:
    """Masked autoregressive flow: affine :class:`~pyrogen.transforms.Autoregressive` layers
    with the cheap inverse.

    Cost: scoring data (inverse) is one MADE pass per layer; sampling (forward) is solved
    variable by variable, computing each MADE unit once (about one pass of arithmetic plus
    ``D`` small steps per layer). Use it as a density model. Identity at initialization.

    Each layer's MADE draws its own random autoregressive order by default (from torch's
    global generator when the flow is built; the orders are buffers, saved in the
    ``state_dict``), as Pyro's ``AffineAutoregressive`` does. On the 8x8 digits protocol of
    ``benchmarks/bench_maf_quality.py`` this gains several nats per image over alternating
    two orders (``order="natural"`` with reversals); the figures, over three seeds, are on the
    results page ``docs/results/bench_maf_quality_full.rst``.

    Shapes:
        x, y: ``(*batch, input_dim)``.  context: ``(*batch, context_dim)``.
    Args:
        input_dim, num_layers, context_dim, hidden_dims, activation, mixing: the builder
            contract (module docstring).
        log_scale_bound: soft bound on each log-scale (nats).
        order: each MADE's autoregressive order, ``"random"`` (a fresh one per layer),
            ``"natural"`` or ``"reversed"`` (see :func:`pyrogen.nn.made_degrees`).
    Raises:
        ValueError: invalid keywords.
        TypeError: ``activation`` is not an ``nn.Module`` class.
    References:
        Papamakarios, Pavlakou, Murray (2017). Masked Autoregressive Flow for Density
        Estimation. https://arxiv.org/abs/1705.07057
    Example:
        >>> f = maf(3, num_layers=2)
        >>> f(torch.randn(5, 3)).shape
        torch.Size([5, 3])
    """
    Affine(log_scale_bound)
    return _autoregressive(input_dim, num_layers, context_dim, hidden_dims, activation, mixing,
                           lambda: Affine(log_scale_bound), "inverse", order)  # fmt: skip


def iaf(
    input_dim: int,
    *,
    num_layers: int = 5,
    context_dim: int = 0,
    hidden_dims: Sequence[int] | None = None,
    activation: type[nn.Module] = nn.ReLU,
    mixing: str = "reverse",
    log_scale_bound: float | None = 5.0,
) -> Compose:
    """Inverse autoregressive flow: affine :class:`~pyrogen.transforms.Autoregressive` layers
    with the cheap forward.

    Cost: sampling and scoring its own samples (forward) is one MADE pass per layer, the case
    of a variational guide; scoring external data (inverse) is ``D`` sequential passes per
    layer. Identity at initialization.

    Shapes:
        x, y: ``(*batch, input_dim)``.  context: ``(*batch, context_dim)``.
    Args:
        input_dim, num_layers, context_dim, hidden_dims, activation, mixing: the builder
            contract (module docstring); ``context_dim > 0`` for amortized guides.
        log_scale_bound: soft bound on each log-scale (nats).
    Raises:
        ValueError: invalid keywords.
        TypeError: ``activation`` is not an ``nn.Module`` class.
    References:
        Kingma et al. (2016). Improved Variational Inference with Inverse Autoregressive Flow.
        https://arxiv.org/abs/1606.04934
    Example:
        >>> f = iaf(3, num_layers=2, context_dim=4)
        >>> f.condition(torch.randn(4))(torch.randn(5, 3)).shape
        torch.Size([5, 3])
    """
    Affine(log_scale_bound)
    return _autoregressive(input_dim, num_layers, context_dim, hidden_dims, activation, mixing,
                           lambda: Affine(log_scale_bound), "forward")  # fmt: skip


def nsf(
    input_dim: int,
    *,
    num_layers: int = 5,
    context_dim: int = 0,
    hidden_dims: Sequence[int] | None = None,
    activation: type[nn.Module] = nn.ReLU,
    mixing: str = "reverse",
    num_bins: int = 8,
    bound: float = 3.0,
    cheap: str = "inverse",
) -> Compose:
    """Autoregressive neural spline flow (NSF-RQ-AR): :class:`~pyrogen.transforms.Autoregressive`
    layers whose elementwise map is a :class:`~pyrogen.transforms.RationalQuadraticSpline`.

    Cost: with ``cheap="inverse"`` (default, a density model) scoring data is one MADE pass
    per layer and sampling ``D``; ``cheap="forward"`` swaps them (a guide). Identity at
    initialization.

    Shapes:
        x, y: ``(*batch, input_dim)``.  context: ``(*batch, context_dim)``.
    Args:
        input_dim, num_layers, context_dim, hidden_dims, activation, mixing: the builder
            contract (module docstring).
        num_bins: spline bins ``K``; bound: the spline acts on ``[-bound, bound]``.
        cheap: ``"inverse"`` or ``"forward"``.
    Raises:
        ValueError: invalid keywords.
        TypeError: ``activation`` is not an ``nn.Module`` class.
    References:
        Durkan, Bekasov, Murray, Papamakarios (2019). Neural Spline Flows.
        https://arxiv.org/abs/1906.04032
    Example:
        >>> f = nsf(3, num_layers=2, num_bins=4)
        >>> x = torch.randn(5, 3)
        >>> torch.allclose(f.inv(f(x).clone()), x, atol=1e-6)
        True
    """
    RationalQuadraticSpline(num_bins, bound)
    return _autoregressive(input_dim, num_layers, context_dim, hidden_dims, activation, mixing,
                           lambda: RationalQuadraticSpline(num_bins, bound), cheap)  # fmt: skip
