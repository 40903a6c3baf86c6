"""Squeeze (space-to-depth) for multi-scale image flows."""

from __future__ import annotations

import torch
from torch.distributions import constraints

from pyrogen.transforms.base import Bijector
from pyrogen.util import check_count

__all__ = ["Squeeze"]


class Squeeze(Bijector):
    r"""Space-to-depth: each ``f x f`` block of pixels becomes ``f^2`` channels (RealNVP, Glow).

    What it computes: :math:`y[c f^2 + a f + b, i, j] = x[c, i f + a, j f + b]`,
    :math:`0 \le a, b < f`: a permutation, :math:`\log|\det J| = 0`. Cost: a reshape and a
    permute in both directions; no parameters.

    Shapes:
        x: ``(*batch, C, H, W)``, ``H`` and ``W`` divisible by ``f``.
        y: ``(*batch, C f^2, H / f, W / f)``.  ladj: ``(*batch,)`` (zeros).
    Args:
        factor: ``f >= 2``.  num_channels: ``C``, or ``None`` for any.
    Raises:
        ValueError: ``factor < 2``; sizes not divisible by ``f`` (or channels by ``f^2``).
    References:
        Dinh, Sohl-Dickstein, Bengio (2017). Density estimation using Real NVP.
        https://arxiv.org/abs/1605.08803
    Example:
        >>> s = Squeeze()
        >>> s(torch.zeros(5, 1, 4, 6)).shape, s.forward_shape((1, 4, 6))
        (torch.Size([5, 4, 2, 3]), (4, 2, 3))
    """

    domain = constraints.independent(constraints.real, 3)
    codomain = constraints.independent(constraints.real, 3)

    def __init__(self, factor: int = 2, *, num_channels: int | None = None) -> None:
        check_count(factor, "factor", minimum=2)
        if num_channels is not None:
            check_count(num_channels, "num_channels")
        super().__init__((num_channels, None, None))
        self.factor = factor

    def _shape(self, shape, inverse: bool) -> tuple:
        """``(*batch, C, H, W)`` after the map (``None`` sizes stay ``None``); raises for sizes
        that do not divide."""
        *batch, c, h, w = shape
        f, ff = self.factor, self.factor**2
        if inverse and c is not None and c % ff:
            raise ValueError(f"channels must be divisible by factor**2={ff}, got {c}")
        if not inverse and h is not None and w is not None and (h % f or w % f):
            raise ValueError(f"height and width must be divisible by factor={f}, got {h}x{w}")
        if inverse:
            return (*batch, c and c // ff, h and h * f, w and w * f)
        return (*batch, c and c * ff, h and h // f, w and w // f)

    def forward_shape(self, shape):
        return self._shape(shape, False)

    def inverse_shape(self, shape):
        return self._shape(shape, True)

    def forward_and_ladj(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        *batch, c, h, w = x.shape
        f, n, shape = self.factor, len(batch), self._shape(x.shape, False)
        y = x.reshape(*batch, c, h // f, f, w // f, f).permute(
            *range(n), n, n + 2, n + 4, n + 1, n + 3
        )
        return y.reshape(shape), x.new_zeros(batch)

    def inverse_and_ladj(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        *batch, _, h, w = y.shape
        f, n = self.factor, len(batch)
        shape = self._shape(y.shape, True)
        x = y.reshape(*batch, shape[-3], f, f, h, w).permute(
            *range(n), n, n + 3, n + 1, n + 4, n + 2
        )
        return x.reshape(shape), y.new_zeros(batch)

    def extra_repr(self) -> str:
        return f"factor={self.factor}"
