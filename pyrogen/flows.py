"""Builders that wire pyrogen's flow layers and networks into ready-to-use flows.

Every builder returns a Pyro ``ComposeTransformModule`` (or, with ``context_dim > 0``, a
``ConditionalComposeTransformModule`` whose ``condition(context)`` gives one) that can go
straight into :class:`pyro.distributions.TransformedDistribution`. Composition order is list
order: the first layer is applied first to base noise.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pyro.distributions.conditional import ConditionalComposeTransformModule
from pyro.distributions.torch_transform import ComposeTransformModule
from torch.distributions import Transform

from pyrogen.nn import MADE, DenseNN
from pyrogen.transforms import (
    AffineCoupling,
    ConditionalAffineCoupling,
    ConditionalInverseAutoregressive,
    ConditionalMaskedAutoregressive,
    InverseAutoregressive,
    LULinear,
    MaskedAutoregressive,
    Permute,
    Planar,
)

__all__ = ["iaf", "maf", "planar", "realnvp"]

_MIXINGS = ("reverse", "lu", "none")


def _check_common(input_dim: int, num_layers: int, context_dim: int, mixing: str) -> None:
    if not isinstance(input_dim, int) or input_dim < 1:
        raise ValueError(f"input_dim must be a positive int, got {input_dim!r}")
    if not isinstance(num_layers, int) or num_layers < 1:
        raise ValueError(f"num_layers must be a positive int, got {num_layers!r}")
    if not isinstance(context_dim, int) or context_dim < 0:
        raise ValueError(f"context_dim must be a non-negative int, got {context_dim!r}")
    if mixing not in _MIXINGS:
        raise ValueError(f"mixing must be one of {_MIXINGS}, got {mixing!r}")


def _mixer(input_dim: int, mixing: str) -> Transform | None:
    if mixing == "reverse" and input_dim > 1:
        return Permute(list(range(input_dim - 1, -1, -1)))
    if mixing == "lu":
        return LULinear(input_dim)
    return None


def _stack(
    make_layer: Callable[[], Transform],
    num_layers: int,
    input_dim: int,
    mixing: str,
    context_dim: int,
):
    parts: list[Transform] = []
    for i in range(num_layers):
        parts.append(make_layer())
        mixer = _mixer(input_dim, mixing) if i < num_layers - 1 else None
        if mixer is not None:
            parts.append(mixer)
    if context_dim:
        return ConditionalComposeTransformModule(parts)
    return ComposeTransformModule(parts)


def _default_hidden(input_dim: int) -> tuple[int, int]:
    width = max(32, 2 * input_dim)
    return (width, width)


def planar(input_dim: int, *, num_layers: int = 8) -> ComposeTransformModule:
    """A stack of :class:`~pyrogen.transforms.Planar` layers (Rezende & Mohamed 2015).

    Cost: forward (sampling) one O(D) pass per layer; inverse (scoring data) one Newton root
    find per layer. Identity at initialization.

    Shapes:
        x, y: ``(*batch, input_dim)``.
    Args:
        input_dim: ``D``.
        num_layers: number of planar layers.
    Raises:
        ValueError: non-positive ``input_dim`` or ``num_layers``.
    References:
        Rezende, Mohamed (2015). Variational Inference with Normalizing Flows.
        https://arxiv.org/abs/1505.05770
    Example:
        >>> import pyro.distributions as dist
        >>> d = dist.TransformedDistribution(dist.Normal(torch.zeros(2), 1).to_event(1), planar(2))
        >>> d.log_prob(torch.zeros(3, 2)).shape
        torch.Size([3])
    """
    _check_common(input_dim, num_layers, 0, "none")
    return _stack(lambda: Planar(input_dim), num_layers, input_dim, "none", 0)


def realnvp(
    input_dim: int,
    *,
    num_layers: int = 8,
    hidden_dims: Sequence[int] | None = None,
    context_dim: int = 0,
    mixing: str = "reverse",
    additive: bool = False,
    log_scale_bound: float | None = 5.0,
):
    """RealNVP: affine coupling layers with reversals (or LU layers) between them.

    Each coupling layer passes the first ``input_dim // 2`` features through and transforms the
    rest with a :class:`~pyrogen.nn.DenseNN` conditioner; the mixing layer between couplings
    lets every feature be transformed.

    Cost: both directions one conditioner pass per layer. Identity at initialization
    (mixing layers aside).

    Shapes:
        x, y: ``(*batch, input_dim)``.  context: ``(*batch, context_dim)``.
    Args:
        input_dim: ``D >= 2``.
        num_layers: number of coupling layers.
        hidden_dims: conditioner hidden sizes (default ``(max(32, 2D),) * 2``).
        context_dim: > 0 builds a conditional flow.
        mixing: ``"reverse"`` (fixed reversal), ``"lu"`` (:class:`~pyrogen.transforms.LULinear`)
            or ``"none"``.
        additive: NICE's volume-preserving additive coupling.
        log_scale_bound: soft bound on each log-scale (nats), ``None`` for none.
    Raises:
        ValueError: ``input_dim < 2`` or invalid keywords.
    References:
        Dinh, Sohl-Dickstein, Bengio (2017). Density estimation using Real NVP.
        https://arxiv.org/abs/1605.08803
    Example:
        >>> f = realnvp(4, num_layers=2)
        >>> x = torch.randn(3, 4)
        >>> torch.allclose(f.inv(f(x).clone()), x, atol=1e-6)
        True
    """
    _check_common(input_dim, num_layers, context_dim, mixing)
    if input_dim < 2:
        raise ValueError(
            f"realnvp needs input_dim >= 2 (a coupling splits the input), got {input_dim}"
        )
    hidden = tuple(hidden_dims) if hidden_dims is not None else _default_hidden(input_dim)
    split = input_dim // 2
    out = (input_dim - split) * (1 if additive else 2)
    kwargs = dict(additive=additive, log_scale_bound=log_scale_bound)

    def layer():
        net = DenseNN(split, hidden, out, context_dim=context_dim)
        if context_dim:
            return ConditionalAffineCoupling(split, net, **kwargs)
        return AffineCoupling(split, net, **kwargs)

    return _stack(layer, num_layers, input_dim, mixing, context_dim)


def _autoregressive(
    kind: str,
    input_dim: int,
    num_layers: int,
    hidden_dims: Sequence[int] | None,
    context_dim: int,
    mixing: str,
    log_scale_bound: float | None,
):
    _check_common(input_dim, num_layers, context_dim, mixing)
    hidden = tuple(hidden_dims) if hidden_dims is not None else _default_hidden(input_dim)
    plain = MaskedAutoregressive if kind == "maf" else InverseAutoregressive
    conditional = (
        ConditionalMaskedAutoregressive if kind == "maf" else ConditionalInverseAutoregressive
    )

    def layer():
        made = MADE(input_dim, hidden, num_params=2, context_dim=context_dim)
        cls = conditional if context_dim else plain
        return cls(made, log_scale_bound=log_scale_bound)

    return _stack(layer, num_layers, input_dim, mixing, context_dim)


def maf(
    input_dim: int,
    *,
    num_layers: int = 5,
    hidden_dims: Sequence[int] | None = None,
    context_dim: int = 0,
    mixing: str = "reverse",
    log_scale_bound: float | None = 5.0,
):
    """Masked autoregressive flow: :class:`~pyrogen.transforms.MaskedAutoregressive` layers.

    Cost: scoring data (inverse) is one MADE pass per layer; sampling (forward) is ``D``
    sequential MADE passes per layer. Use it as a density model (likelihood of data). Identity at
    initialization.

    Shapes:
        x, y: ``(*batch, input_dim)``.  context: ``(*batch, context_dim)``.
    Args:
        input_dim: ``D``.
        num_layers: number of MAF layers.
        hidden_dims: MADE hidden sizes (default ``(max(32, 2D),) * 2``).
        context_dim: > 0 builds a conditional flow.
        mixing: ``"reverse"``, ``"lu"`` or ``"none"`` between layers.
        log_scale_bound: soft bound on each log-scale (nats).
    Raises:
        ValueError: invalid keywords.
    References:
        Papamakarios, Pavlakou, Murray (2017). Masked Autoregressive Flow for Density
        Estimation. https://arxiv.org/abs/1705.07057
    Example:
        >>> f = maf(3, num_layers=2)
        >>> f(torch.randn(5, 3)).shape
        torch.Size([5, 3])
    """
    return _autoregressive(
        "maf", input_dim, num_layers, hidden_dims, context_dim, mixing, log_scale_bound
    )


def iaf(
    input_dim: int,
    *,
    num_layers: int = 5,
    hidden_dims: Sequence[int] | None = None,
    context_dim: int = 0,
    mixing: str = "reverse",
    log_scale_bound: float | None = 5.0,
):
    """Inverse autoregressive flow: :class:`~pyrogen.transforms.InverseAutoregressive` layers.

    Cost: sampling and scoring its own samples (forward) is one MADE pass per layer, the case
    of a variational guide; scoring external data (inverse) is ``D`` sequential passes per
    layer. Identity at initialization.

    Shapes:
        x, y: ``(*batch, input_dim)``.  context: ``(*batch, context_dim)``.
    Args:
        input_dim: ``D``.
        num_layers: number of IAF layers.
        hidden_dims: MADE hidden sizes (default ``(max(32, 2D),) * 2``).
        context_dim: > 0 builds a conditional flow (amortized guides).
        mixing: ``"reverse"``, ``"lu"`` or ``"none"`` between layers.
        log_scale_bound: soft bound on each log-scale (nats).
    Raises:
        ValueError: invalid keywords.
    References:
        Kingma et al. (2016). Improved Variational Inference with Inverse Autoregressive Flow.
        https://arxiv.org/abs/1606.04934
    Example:
        >>> f = iaf(3, num_layers=2, context_dim=4)
        >>> f.condition(torch.randn(4))(torch.randn(5, 3)).shape
        torch.Size([5, 3])
    """
    return _autoregressive(
        "iaf", input_dim, num_layers, hidden_dims, context_dim, mixing, log_scale_bound
    )
