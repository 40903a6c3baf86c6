"""Masked convolutions and the PixelCNN network (raster-order autoregressive over pixels)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pyrogen.util import check_context, check_count, check_tensor

__all__ = ["MaskedConv2d", "PixelCNNNetwork"]


class MaskedConv2d(nn.Conv2d):
    r"""2-D convolution masked so that each output sees only earlier pixels in raster order.

    What it computes: ``conv2d(x, W * M)`` with the mask ``M`` of van den Oord et al.: all
    kernel rows above the centre, the centre row left of the centre and, at the centre
    position, the channels of earlier data channels (type ``"A"``, for the first layer) or of
    earlier and the same data channel (type ``"B"``, for later layers). Channels are split
    into ``data_channels`` contiguous groups (R, G, B ... order).

    Shapes:
        x: ``(N, in_channels, H, W)``; returns ``(N, out_channels, H, W)`` (same padding).
    Args:
        in_channels, out_channels: multiples of ``data_channels``.
        kernel_size: odd, >= 1.
        mask_type: ``"A"`` or ``"B"``.
        data_channels: number of channels of the modelled image.
        out_repeats: the output channels are this many consecutive copies of the channel
            groups (2 for gated activations, whose two halves are multiplied channelwise); a
            positive int with ``out_channels`` divisible by ``out_repeats * data_channels``.
    Raises:
        ValueError: an even kernel, a bad ``mask_type``, channels not divisible by
            ``data_channels``, an ``out_repeats < 1``, or ``out_channels`` not divisible by
            ``out_repeats * data_channels``.
        TypeError: a size or ``out_repeats`` that is not an int.
    References:
        van den Oord, Kalchbrenner, Kavukcuoglu (2016). Pixel Recurrent Neural Networks.
        https://arxiv.org/abs/1601.06759
    Example:
        >>> conv = MaskedConv2d(1, 4, 3, "A")
        >>> conv(torch.zeros(2, 1, 5, 5)).shape
        torch.Size([2, 4, 5, 5])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        mask_type: str,
        *,
        data_channels: int = 1,
        out_repeats: int = 1,
    ) -> None:
        if mask_type not in ("A", "B"):
            raise ValueError(f"mask_type must be 'A' or 'B', got {mask_type!r}")
        _check_kernel(kernel_size, "kernel_size")
        check_count(data_channels, "data_channels")
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels)):
            if check_count(value, name) % data_channels:
                raise ValueError(
                    f"{name}={value} is not divisible by data_channels={data_channels}"
                )
        super().__init__(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        k, centre = kernel_size, kernel_size // 2
        mask = torch.zeros(out_channels, in_channels, k, k)
        mask[:, :, :centre, :] = 1
        mask[:, :, centre, :centre] = 1
        if out_channels % (check_count(out_repeats, "out_repeats") * data_channels):
            raise ValueError(
                f"out_channels={out_channels} must be divisible by out_repeats * data_channels "
                f"= {out_repeats} * {data_channels} (each copy splits evenly into the groups "
                f"of the data channels)"
            )
        per_repeat = out_channels // out_repeats
        group_out = (torch.arange(out_channels) % per_repeat) * data_channels // per_repeat
        group_in = torch.arange(in_channels) * data_channels // in_channels
        if mask_type == "A":
            allowed = group_in[None, :] < group_out[:, None]
        else:
            allowed = group_in[None, :] <= group_out[:, None]
        mask[:, :, centre, centre] = allowed.float()
        self.register_buffer("mask", mask)
        self.mask_type = mask_type

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_tensor(x, "x", (self.in_channels, None, None), like=self.weight, check_finite=False)
        if x.dim() > 4:
            raise ValueError(f"x must have shape (N, {self.in_channels}, H, W), got {x.shape}")
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)


def _check_kernel(value, name: str) -> int:
    if check_count(value, name) % 2 == 0:
        raise ValueError(f"{name} must be odd, got {value}")
    return value


def _expand_context(context: torch.Tensor, batch: torch.Size) -> torch.Tensor:
    """``context`` ``(*c, context_dim)`` expanded to ``(*batch, context_dim)``.

    Raises:
        ValueError: ``c`` does not broadcast to ``batch`` (the batch shape of the images).
    """
    try:
        fits = torch.broadcast_shapes(context.shape[:-1], batch) == batch
    except RuntimeError:
        fits = False
    if not fits:
        raise ValueError(
            f"context must have shape (*batch, {context.shape[-1]}) with a batch shape that "
            f"broadcasts to x's batch shape {tuple(batch)}, got {tuple(context.shape)}"
        )
    return context.expand(*batch, context.shape[-1])


class PixelCNNNetwork(nn.Module):
    r"""PixelCNN: logits of :math:`p(x_{c,i,j} \mid x_{<(c,i,j)})` for every pixel in one pass.

    Architecture (van den Oord et al. 2016): a type-A masked ``first_kernel_size`` convolution,
    ``num_layers`` residual blocks of type-B masked ``kernel_size`` convolutions (ReLU, or the
    gated activation :math:`\tanh(W_f * h) \odot \sigma(W_g * h)` with ``gated=True``), then
    two type-B 1x1 convolutions to ``num_logits`` logits per data channel. A ``context``
    vector (a class label one-hot or a VAE latent code) is added to every layer through a
    linear map (conditional PixelCNN), so the network can serve as a VAE decoder. The
    receptive field grows by ``kernel_size // 2`` rows per layer; as in the original
    PixelCNN it has a blind spot to the upper right (no separate vertical/horizontal stacks).

    Shapes:
        x: ``(*batch, C, H, W)`` with values in ``0..num_categories-1``.
        context: ``(*batch, context_dim)``.  returns: ``(*batch, C, H, W, num_logits)``.
    Args:
        data_channels: ``C``.
        num_categories: 2 (binary pixels, one logit) or more (categorical).
        hidden_channels: width (a multiple of ``C``).
        num_layers: residual blocks (>= 0).
        kernel_size, first_kernel_size: odd kernel sizes.
        gated: gated activations.
        context_dim: size of the conditioning vector (0: none).
    Raises:
        ValueError: bad sizes; a missing context when ``context_dim > 0``, or one whose batch
            shape does not broadcast to ``x``'s batch shape.
    References:
        van den Oord, Kalchbrenner, Kavukcuoglu (2016). Pixel Recurrent Neural Networks.
        https://arxiv.org/abs/1601.06759 ; van den Oord et al. (2016). Conditional Image
        Generation with PixelCNN Decoders. https://arxiv.org/abs/1606.05328
    Example:
        >>> net = PixelCNNNetwork(hidden_channels=8, num_layers=1)
        >>> net(torch.zeros(3, 1, 5, 5)).shape
        torch.Size([3, 1, 5, 5, 1])
    """

    def __init__(
        self,
        data_channels: int = 1,
        num_categories: int = 2,
        *,
        hidden_channels: int = 64,
        num_layers: int = 5,
        kernel_size: int = 3,
        first_kernel_size: int = 7,
        gated: bool = False,
        context_dim: int = 0,
    ) -> None:
        super().__init__()
        c = check_count(data_channels, "data_channels")
        self.num_categories = check_count(num_categories, "num_categories", minimum=2)
        if check_count(hidden_channels, "hidden_channels") % c:
            raise ValueError(
                f"hidden_channels={hidden_channels} must be a multiple of data_channels={c}"
            )
        _check_kernel(kernel_size, "kernel_size")
        _check_kernel(first_kernel_size, "first_kernel_size")
        self.num_logits = 1 if num_categories == 2 else num_categories
        check_count(num_layers, "num_layers", minimum=0)
        self.context_dim = check_count(context_dim, "context_dim", minimum=0)
        self.data_channels, self.gated = c, bool(gated)
        width = 2 * hidden_channels if gated else hidden_channels
        repeats = 2 if gated else 1
        self.first = MaskedConv2d(
            c, width, first_kernel_size, "A", data_channels=c, out_repeats=repeats
        )
        self.blocks = nn.ModuleList(
            MaskedConv2d(
                hidden_channels, width, kernel_size, "B", data_channels=c, out_repeats=repeats
            )
            for _ in range(num_layers)
        )
        self.head = MaskedConv2d(hidden_channels, hidden_channels, 1, "B", data_channels=c)
        self.out = MaskedConv2d(hidden_channels, c * self.num_logits, 1, "B", data_channels=c)
        self.context_maps = (
            nn.ModuleList(nn.Linear(context_dim, width) for _ in range(num_layers + 1))
            if context_dim
            else None
        )

    @property
    def receptive_field(self) -> int:
        """Reach ``R`` of the network in pixels: the logits at ``(i, j)`` depend only on the
        input rows ``i - R .. i`` and columns ``j - R .. j + R``.

        ``R`` is the sum of ``kernel_size // 2`` over the masked convolutions (the 1x1 head
        adds none; residual connections, activations and the context term act per pixel).
        Ancestral sampling runs the network on that window only.
        """
        convs = (self.first, *self.blocks, self.head, self.out)
        return sum(conv.kernel_size[0] // 2 for conv in convs)

    def _activate(self, h: torch.Tensor) -> torch.Tensor:
        if not self.gated:
            return torch.relu(h)
        f, g = h.chunk(2, dim=1)
        return torch.tanh(f) * torch.sigmoid(g)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        check_tensor(x, "x", (self.data_channels, None, None), like=self.out.weight,
                     check_finite=False)  # fmt: skip
        k = self.num_categories
        if (
            torch.distributions.Distribution._validate_args
            and not torch._C._are_functorch_transforms_active()
            and bool(((x < 0) | (x > k - 1) | (x != x.round())).any())
        ):
            raise ValueError(f"x must hold pixel values in 0..{k - 1} (num_categories={k})")
        context = check_context(context, self.context_dim, self.out.weight, "network")
        *batch, c, h, w = x.shape
        inp = x.reshape(-1, c, h, w)
        if self.num_categories > 2:
            inp = inp / (self.num_categories - 1)
        ctx = None
        if self.context_maps is not None:
            if context is None:
                raise ValueError(
                    f"this network needs a context of shape (*batch, {self.context_dim})"
                )
            ctx = _expand_context(context, torch.Size(batch)).reshape(-1, self.context_dim)
        hidden = self.first(inp)
        if ctx is not None:
            hidden = hidden + self.context_maps[0](ctx)[:, :, None, None]
        hidden = self._activate(hidden)
        for i, block in enumerate(self.blocks):
            update = block(hidden)
            if ctx is not None:
                update = update + self.context_maps[i + 1](ctx)[:, :, None, None]
            hidden = hidden + self._activate(update)
        logits = self.out(torch.relu(self.head(torch.relu(hidden))))
        logits = logits.reshape(-1, c, self.num_logits, h, w).permute(0, 1, 3, 4, 2)
        return logits.reshape(*batch, c, h, w, self.num_logits)
