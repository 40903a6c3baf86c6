"""Image flow builders: Glow and image RealNVP, multi-scale flows returned as an
:class:`~pyrogen.distributions.ImageFlow`."""

from __future__ import annotations

from collections.abc import Sequence

from pyrogen.distributions.image import ImageFlow, check_image_shape
from pyrogen.nn import ConvNet
from pyrogen.transforms import ActNorm, ImageCoupling, Invertible1x1Conv, MultiScale
from pyrogen.util import check_count

__all__ = ["glow", "realnvp_image"]


def _check_image_shape(input_shape: Sequence[int], num_levels: int) -> tuple[int, int, int]:
    c, h, w = check_image_shape(input_shape)
    check_count(num_levels, "num_levels")
    f = 2**num_levels
    if h % f or w % f:
        raise ValueError(
            f"input_shape {(c, h, w)}: height and width must be divisible by 2**num_levels={f} "
            f"(pad the images), got {h}x{w}"
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
