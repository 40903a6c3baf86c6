"""Builders that wire pyrogen's flow layers and networks into ready-to-use flows.

Every vector builder returns a Pyro ``ComposeTransformModule`` (or, with ``context_dim > 0``, a
``ConditionalComposeTransformModule`` whose ``condition(context)`` gives one) that can go
straight into :class:`pyro.distributions.TransformedDistribution`. The image builders
(:func:`glow`, :func:`realnvp_image`) return an :class:`ImageFlow`, which adds the base
distribution, pixel preprocessing, dequantization and bits/dim. Composition order is list
order: the first layer is applied first to base noise.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import pyro.distributions as dist
import torch
from pyro.distributions.conditional import ConditionalComposeTransformModule
from pyro.distributions.torch_transform import ComposeTransformModule
from torch import nn
from torch.distributions import Transform

from pyrogen.datasets import bits_per_dim, dequantize, logit_transform
from pyrogen.nn import MADE, ConvNet, DenseNN
from pyrogen.transforms import (
    ActNorm,
    AffineCoupling,
    ConditionalAffineCoupling,
    ConditionalInverseAutoregressive,
    ConditionalMaskedAutoregressive,
    ImageCoupling,
    InverseAutoregressive,
    Invertible1x1Conv,
    LULinear,
    MaskedAutoregressive,
    MultiScale,
    Permute,
    Planar,
)
from pyrogen.util import check_count, check_module_class

__all__ = ["ImageFlow", "glow", "iaf", "maf", "planar", "realnvp", "realnvp_image"]

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
    activation: type[nn.Module] = nn.ReLU,
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
        activation: hidden nonlinearity of the conditioner networks (an ``nn.Module`` class);
            ``nn.Tanh`` makes every layer affine far out in the tails.
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
    _check_common(input_dim, num_layers, context_dim, mixing)
    check_module_class(activation, "activation")
    if input_dim < 2:
        raise ValueError(
            f"realnvp needs input_dim >= 2 (a coupling splits the input), got {input_dim}"
        )
    hidden = tuple(hidden_dims) if hidden_dims is not None else _default_hidden(input_dim)
    split = input_dim // 2
    out = (input_dim - split) * (1 if additive else 2)
    kwargs = dict(additive=additive, log_scale_bound=log_scale_bound)

    def layer():
        net = DenseNN(split, hidden, out, context_dim=context_dim, activation=activation)
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
    activation: type[nn.Module],
):
    _check_common(input_dim, num_layers, context_dim, mixing)
    check_module_class(activation, "activation")
    hidden = tuple(hidden_dims) if hidden_dims is not None else _default_hidden(input_dim)
    plain = MaskedAutoregressive if kind == "maf" else InverseAutoregressive
    conditional = (
        ConditionalMaskedAutoregressive if kind == "maf" else ConditionalInverseAutoregressive
    )

    def layer():
        made = MADE(input_dim, hidden, num_params=2, context_dim=context_dim, activation=activation)
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
    activation: type[nn.Module] = nn.ReLU,
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
        activation: hidden nonlinearity of the conditioner networks (an ``nn.Module`` class);
            ``nn.Tanh`` makes every layer affine far out in the tails.
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
    return _autoregressive(
        "maf",
        input_dim,
        num_layers,
        hidden_dims,
        context_dim,
        mixing,
        log_scale_bound,
        activation,
    )


def iaf(
    input_dim: int,
    *,
    num_layers: int = 5,
    hidden_dims: Sequence[int] | None = None,
    context_dim: int = 0,
    mixing: str = "reverse",
    log_scale_bound: float | None = 5.0,
    activation: type[nn.Module] = nn.ReLU,
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
        activation: hidden nonlinearity of the conditioner networks (an ``nn.Module`` class);
            ``nn.Tanh`` makes every layer affine far out in the tails.
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
    return _autoregressive(
        "iaf",
        input_dim,
        num_layers,
        hidden_dims,
        context_dim,
        mixing,
        log_scale_bound,
        activation,
    )


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
