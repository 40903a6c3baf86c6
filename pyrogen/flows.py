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
(:func:`glow`, :func:`realnvp_image`) return an :class:`ImageFlow`, which adds the base
distribution, pixel preprocessing, dequantization and bits/dim. Composition order is list
order: the first layer is applied first to base noise.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import pyro.distributions as dist
import torch
from torch import nn
from torch.distributions import Transform

from pyrogen.datasets import bits_per_dim, dequantize, logit_transform
from pyrogen.nn import MADE, ConvNet, DenseNN
from pyrogen.transforms import (
    ActNorm,
    Autoregressive,
    Bijector,
    Compose,
    ConditionalAutoregressive,
    ConditionalCompose,
    ConditionalCoupling,
    Coupling,
    Elementwise,
    ImageCoupling,
    Invertible1x1Conv,
    LULinear,
    MultiScale,
    Permute,
    Planar,
    QRLinear,
    RationalQuadraticSpline,
)
from pyrogen.transforms.elementwise import Additive, Affine
from pyrogen.util import check_count, check_module_class

__all__ = [
    "ImageFlow",
    "glow",
    "iaf",
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
    ``benchmarks/bench_maf_quality.py`` this gains about 3 nats per image over alternating
    two orders (``order="natural"`` with reversals).

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


# -- image flows -------------------------------------------------------------------------------


def _check_image_shape(
    input_shape: Sequence[int], num_levels: int | None = None
) -> tuple[int, int, int]:
    shape = tuple(input_shape)
    if len(shape) != 3 or not all(isinstance(n, int) and n >= 1 for n in shape):
        raise ValueError(f"input_shape must be (C, H, W) of positive ints, got {input_shape!r}")
    if num_levels is None:
        return shape
    check_count(num_levels, "num_levels")
    c, h, w = shape
    f = 2**num_levels
    if h % f or w % f:
        raise ValueError(
            f"height and width must be divisible by 2**num_levels={f} (pad the images), got {h}x{w}"
        )
    return c, h, w


def _multiscale(input_shape, num_levels, make_steps, hidden_channels) -> MultiScale:
    """Build the levels from the innermost out; ``make_steps(c, h, w)`` gives one level's steps
    on the squeezed shape."""
    c, h, w = _check_image_shape(input_shape, num_levels)
    check_count(hidden_channels, "hidden_channels")
    shapes = []
    for _ in range(num_levels):
        shapes.append((c, h, w))
        c, h, w = 2 * c, h // 2, w // 2  # the kept half after squeeze and split
    inner = None
    for level, (c, h, w) in reversed(list(enumerate(shapes))):
        steps = make_steps(4 * c, h // 2, w // 2)
        if level == num_levels - 1:
            inner = MultiScale(c, steps)
        else:
            prior = ConvNet(2 * c, hidden_channels, 4 * c)
            inner = MultiScale(c, steps, inner=inner, prior=prior)
    assert inner is not None
    return inner


def glow(
    input_shape: Sequence[int],
    *,
    num_levels: int = 2,
    num_steps: int = 8,
    hidden_channels: int = 128,
    additive: bool = False,
    pixel_levels: int | None = 256,
) -> ImageFlow:
    """Glow: a multi-scale flow whose steps are ActNorm, an invertible 1x1 convolution and an
    affine coupling with a channel mask, with a learned Gaussian prior at every split.

    Each of the ``num_levels`` levels squeezes, applies ``num_steps`` steps (data-to-noise
    order: ActNorm, 1x1 convolution, coupling) and factors out half of the channels under a
    conditional Gaussian (see :class:`~pyrogen.transforms.MultiScale`); the last level does
    not split. Coupling and prior networks are :class:`~pyrogen.nn.ConvNet`.

    Cost: both directions one pass of every network. ActNorm initializes from the first data
    batch it scores.

    Shapes:
        x: ``(*batch, C, H, W)``, with H and W divisible by 2 to the power ``num_levels``.
    Args:
        input_shape: ``(C, H, W)``.
        num_levels: number of squeeze levels (>= 1).
        num_steps: flow steps per level (>= 1).
        hidden_channels: width of the coupling and prior networks.
        additive: additive coupling (Glow's volume-preserving variant).
        pixel_levels: number of pixel levels (256 for 8-bit, 17 for digits), or ``None`` for a
            flow on real-valued data without the pixel preprocessing; see :class:`ImageFlow`.
    Returns:
        an :class:`ImageFlow`.
    Raises:
        ValueError: a bad ``input_shape`` (including sizes not divisible by
            ``2**num_levels``) or non-positive counts.
    References:
        Kingma, Dhariwal (2018). Glow: Generative Flow with Invertible 1x1 Convolutions.
        https://arxiv.org/abs/1807.03039
    Example:
        >>> flow = glow((1, 8, 8), num_levels=2, num_steps=2, hidden_channels=16, pixel_levels=17)
        >>> flow.distribution().sample((3,)).shape
        torch.Size([3, 1, 8, 8])
    """
    check_count(num_steps, "num_steps")

    def steps(c: int, h: int, w: int) -> list:
        layers = []
        for _ in range(num_steps):
            cond = ConvNet(c // 2, hidden_channels, (c - c // 2) * (1 if additive else 2))
            coupling = ImageCoupling(c, cond, mask="channel", additive=additive)
            # forward (noise-to-data) order is the reverse of Glow's data-to-noise step
            layers = [coupling, Invertible1x1Conv(c), ActNorm((c, h, w)), *layers]
        return layers

    transform = _multiscale(input_shape, num_levels, steps, hidden_channels)
    return ImageFlow(transform, input_shape, pixel_levels=pixel_levels)


def realnvp_image(
    input_shape: Sequence[int],
    *,
    num_levels: int = 2,
    num_steps: int = 4,
    hidden_channels: int = 64,
    pixel_levels: int | None = 256,
) -> ImageFlow:
    """Image RealNVP: a multi-scale flow of affine couplings with alternating checkerboard and
    channel masks (and ActNorm in place of batch normalization), with a learned Gaussian prior
    at every split.

    Each level squeezes, applies ``num_steps`` couplings (data-to-noise order: checkerboard
    parity 0 and 1, then channel masks parity 0 and 1, repeating), each followed by ActNorm,
    and factors out half of the channels (:class:`~pyrogen.transforms.MultiScale`).

    Cost: both directions one pass of every network.

    Shapes:
        x: ``(*batch, C, H, W)``, with H and W divisible by 2 to the power ``num_levels``.
    Args:
        input_shape, num_levels, hidden_channels, pixel_levels: as in :func:`glow`.
        num_steps: couplings per level (>= 1).
    Returns:
        an :class:`ImageFlow`.
    Raises:
        ValueError: as :func:`glow`.
    References:
        Dinh, Sohl-Dickstein, Bengio (2017). Density estimation using Real NVP.
        https://arxiv.org/abs/1605.08803
    Example:
        >>> flow = realnvp_image((1, 8, 8), num_steps=2, hidden_channels=16, pixel_levels=17)
        >>> flow.distribution().sample((3,)).shape
        torch.Size([3, 1, 8, 8])
    """
    check_count(num_steps, "num_steps")

    def steps(c: int, h: int, w: int) -> list:
        layers = []
        for i in range(num_steps):
            kind = ("checkerboard", "checkerboard", "channel", "channel")[i % 4]
            parity = i % 2
            if kind == "checkerboard":
                cond = ConvNet(c, hidden_channels, 2 * c)
            else:
                kept = c // 2 if parity == 0 else c - c // 2
                cond = ConvNet(kept, hidden_channels, 2 * (c - kept))
            coupling = ImageCoupling(c, cond, mask=kind, parity=parity)
            layers = [ActNorm((c, h, w)), coupling, *layers]
        return layers

    transform = _multiscale(input_shape, num_levels, steps, hidden_channels)
    return ImageFlow(transform, input_shape, pixel_levels=pixel_levels)


class ImageFlow(nn.Module):
    r"""A flow over images, with uniform dequantization and bits/dim accounting.

    The model is :math:`\epsilon \sim N(0, I)` of shape ``(C, H, W)``, :math:`h = f(\epsilon)`
    (``transform``, noise to data) and, with ``pixel_levels = L``, the inverse logit
    preprocessing :math:`v = L (\sigma(h) - \alpha) / (1 - 2\alpha)` onto the continuous pixel
    scale (:func:`pyrogen.datasets.logit_transform`), whose log-determinant is part of the
    density. For integer pixels :math:`k`, uniform dequantization :math:`v = k + u`,
    :math:`u \sim U[0, 1)^D`, gives the bound :math:`\log P(k) \ge \mathbb E_u \log p(k + u)`
    (Theis et al. 2016). The map's range is slightly wider than :math:`[0, L)` per pixel; the
    density's mass outside the cube :math:`[0, L)^D` is lost to the discrete model, so the
    bound stays conservative.

    - :meth:`distribution` is a ``TransformedDistribution`` over ``v`` (use it as
      ``pyro.sample("x", flow.distribution(), obs=dequantize(k))`` with the module registered
      through ``pyro.module``); its ``log_prob`` is an exact continuous density in nats.
    - :meth:`log_prob` is the Monte Carlo estimate of the bound on :math:`\log P(k)` from
      ``num_draws`` dequantizations (nats per image) and :meth:`bits_per_dim` converts it,
      :math:`-\log P / (D \ln 2)` with :math:`D = C H W`.
    - :meth:`sample` draws integer-valued-scale images :math:`v` at a temperature
      :math:`T` (base :math:`N(0, T^2 I)`, Glow's reduced-temperature samples).

    Shapes:
        x: ``(*batch, C, H, W)``.  log_prob: ``(*batch,)``.
    Args:
        transform: a bijection on ``(C, H, W)`` (noise to data), e.g. from :func:`glow`.
        input_shape: ``(C, H, W)``.
        pixel_levels: ``L`` or ``None`` (no preprocessing: a density over real images).
        alpha: margin of the logit preprocessing.
    Raises:
        ValueError: a bad ``input_shape`` or ``pixel_levels < 2``; in :meth:`log_prob`,
            images of the wrong shape or pixels outside ``0..L-1``.
    References:
        Theis, van den Oord, Bethge (2016). A note on the evaluation of generative models.
        https://arxiv.org/abs/1511.01844
    """

    def __init__(
        self,
        transform: Transform,
        input_shape: Sequence[int],
        *,
        pixel_levels: int | None = 256,
        alpha: float = 0.05,
    ) -> None:
        super().__init__()
        _check_image_shape(input_shape)
        if pixel_levels is not None:
            check_count(pixel_levels, "pixel_levels", minimum=2)
        self.transform = transform
        self.input_shape = tuple(input_shape)
        self.pixel_levels, self.alpha = pixel_levels, alpha
        self.register_buffer("_anchor", torch.zeros(()))

    @property
    def num_dims(self) -> int:
        """``D = C * H * W``."""
        return math.prod(self.input_shape)

    def distribution(self, temperature: float = 1.0) -> dist.TransformedDistribution:
        """The density over continuous pixel values ``v`` (nats), base sd ``temperature``."""
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature!r}")
        # the buffer follows .to(device) and .double() of this module
        base = dist.Normal(self._anchor.expand(self.input_shape), temperature).to_event(3)
        parts = [self.transform]
        if self.pixel_levels is not None:
            parts.append(logit_transform(self.pixel_levels, alpha=self.alpha))
        return dist.TransformedDistribution(base, parts)

    def _check_pixels(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor) or tuple(x.shape[-3:]) != self.input_shape:
            raise ValueError(
                f"images must have shape (*batch, {', '.join(map(str, self.input_shape))}), "
                f"got {tuple(getattr(x, 'shape', ()))}"
            )
        if self.pixel_levels is not None:
            bad = (x < 0) | (x > self.pixel_levels - 1) | (x != x.round())
            if bool(bad.any()):
                raise ValueError(f"pixels must be integers in 0..{self.pixel_levels - 1}")

    def log_prob(self, x: torch.Tensor, *, num_draws: int = 1) -> torch.Tensor:
        """Dequantized bound on ``log P(x)`` (nats per image), averaged over ``num_draws``
        uniform dequantizations (without pixel levels: the exact density of ``x``)."""
        self._check_pixels(x)
        check_count(num_draws, "num_draws")
        d = self.distribution()
        if self.pixel_levels is None:
            return d.log_prob(x)
        return torch.stack([d.log_prob(dequantize(x)) for _ in range(num_draws)]).mean(0)

    def bits_per_dim(self, x: torch.Tensor, *, num_draws: int = 1) -> torch.Tensor:
        """:meth:`log_prob` in bits per dimension, ``(*batch,)``."""
        return bits_per_dim(self.log_prob(x, num_draws=num_draws), self.num_dims)

    def sample(self, sample_shape: tuple = (), *, temperature: float = 1.0) -> torch.Tensor:
        """Images on the continuous pixel scale, ``(*sample_shape, C, H, W)``."""
        with torch.no_grad():
            return self.distribution(temperature).sample(sample_shape)
