"""Convolutional conditioner of image coupling layers and split priors (RealNVP, Glow)."""

from __future__ import annotations

import torch
from torch import nn

from pyrogen.util import check_count, check_tensor

__all__ = ["ConvNet"]


class ConvNet(nn.Module):
    """Glow's coupling network: ``3x3 conv -> ReLU -> 1x1 conv -> ReLU -> 3x3 conv``.

    Spatial size is preserved (padding 1). The last convolution is initialised to zero, so a
    coupling layer or split prior built on it starts as the identity (or the standard normal).

    Shapes:
        x: ``(*batch, in_channels, H, W)``.  out: ``(*batch, out_channels, H, W)``.
    Args:
        in_channels, hidden_channels, out_channels: channel counts (>= 1).
    Raises:
        ValueError: non-positive channel counts; an input with the wrong channel count.
    References:
        Kingma, Dhariwal (2018). Glow: Generative Flow with Invertible 1x1 Convolutions.
        https://arxiv.org/abs/1807.03039
    Example:
        >>> net = ConvNet(2, 16, 4)
        >>> net(torch.randn(3, 2, 8, 8)).shape
        torch.Size([3, 4, 8, 8])
    """

    def __init__(self, in_channels: int, hidden_channels: int, out_channels: int) -> None:
        super().__init__()
        for name, value in (
            ("in_channels", in_channels),
            ("hidden_channels", hidden_channels),
            ("out_channels", out_channels),
        ):
            check_count(value, name)
        self.in_channels, self.out_channels = in_channels, out_channels
        last = nn.Conv2d(hidden_channels, out_channels, 3, padding=1)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, hidden_channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(hidden_channels, hidden_channels, 1),
            nn.ReLU(),
            last,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_tensor(x, "x", (self.in_channels, None, None), like=self.net[0].weight,
                     check_finite=False)  # fmt: skip
        batch = x.shape[:-3]
        out = self.net(x.reshape(-1, *x.shape[-3:]))
        return out.reshape(*batch, *out.shape[-3:])
