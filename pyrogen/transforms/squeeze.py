"""Squeeze (space-to-depth) for multi-scale image flows."""

from __future__ import annotations

import torch
from torch.distributions import constraints

from pyrogen.transforms.base import Bijector

__all__ = ["Squeeze"]


class Squeeze(Bijector):
    r"""Space-to-depth: each ``f x f`` block of pixels becomes ``f^2`` channels (RealNVP, Glow).

    What it computes: :math:`y[c f^2 + a f + b, i, j] = x[c, i f + a, j f + b]` for
    :math:`0 \le a, b < f`; a permutation of the entries, so
    :math:`\log|\det J| = 0`. The inverse is depth-to-space.

    Cost: a reshape and a permute in both directions; no parameters.

    Shapes:
        x: ``(*batch, C, H, W)`` with ``H`` and ``W`` divisible by ``f``.
        y: ``(*batch, C f^2, H / f, W / f)``.  ladj: ``(*batch,)`` (zeros).
    Args:
        factor: ``f >= 2``.
        num_channels: ``C``, or ``None`` to accept any number of channels.
    Raises:
        ValueError: ``factor < 2``; inputs whose height or width is not divisible by ``f``.
    References:
        Dinh, Sohl-Dickstein, Bengio (2017). Density estimation using Real NVP.
        https://arxiv.org/abs/1605.08803
    Example:
        >>> s = Squeeze()
        >>> s(torch.zeros(5, 1, 4, 6)).shape
        torch.Size([5, 4, 2, 3])
        >>> s.forward_shape((1, 4, 6))
        (4, 2, 3)
    """

    domain = constraints.independent(constraints.real, 3)
    codomain = constraints.independent(constraints.real, 3)

    def __init__(self, factor: int = 2, *, num_channels: int | None = None) -> None:
        if isinstance(factor, bool) or not isinstance(factor, int) or factor < 2:
            raise ValueError(f"factor must be an int >= 2, got {factor!r}")
        if num_channels is not None and (not isinstance(num_channels, int) or num_channels < 1):
            raise ValueError(f"num_channels must be a positive int or None, got {num_channels!r}")
        super().__init__((num_channels, None, None))
        self.factor = factor

    def _check(self, h: int, w: int) -> None:
        f = self.factor
        if h % f or w % f:
            raise ValueError(f"height and width must be divisible by factor={f}, got {h}x{w}")

    def forward_shape(self, shape):
        *batch, c, h, w = shape
        if h is not None and w is not None:
            self._check(h, w)
        f = self.factor
        return (
            *batch,
            None if c is None else c * f * f,
            None if h is None else h // f,
            None if w is None else w // f,
        )

    def inverse_shape(self, shape):
        *batch, c, h, w = shape
        f = self.factor
        if c is not None and c % (f * f):
            raise ValueError(f"channels must be divisible by factor**2={f * f}, got {c}")
        return (
            *batch,
            None if c is None else c // (f * f),
            None if h is None else h * f,
            None if w is None else w * f,
        )

    def forward_and_ladj(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        *batch, c, h, w = x.shape
        self._check(h, w)
        f = self.factor
        y = x.reshape(*batch, c, h // f, f, w // f, f)
        n = len(batch)
        y = y.permute(*range(n), n, n + 2, n + 4, n + 1, n + 3)
        y = y.reshape(*batch, c * f * f, h // f, w // f)
        return y, x.new_zeros(batch)

    def inverse_and_ladj(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        *batch, c, h, w = y.shape
        f = self.factor
        if c % (f * f):
            raise ValueError(f"channels must be divisible by factor**2={f * f}, got {c}")
        x = y.reshape(*batch, c // (f * f), f, f, h, w)
        n = len(batch)
        x = x.permute(*range(n), n, n + 3, n + 1, n + 4, n + 2)
        x = x.reshape(*batch, c // (f * f), h * f, w * f)
        return x, y.new_zeros(batch)

    def extra_repr(self) -> str:
        return f"factor={self.factor}"
