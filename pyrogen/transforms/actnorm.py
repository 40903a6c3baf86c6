"""Glow's activation normalization with data-dependent initialization."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.distributions import constraints

from pyrogen.transforms.base import Bijector

__all__ = ["ActNorm"]


class ActNorm(Bijector):
    r"""Per-channel affine map with data-dependent initialization (Glow's ActNorm).

    What it computes, per channel ``c`` (the first event dimension), with ``n`` the product of
    the other event sizes (``H W`` for images, 1 for vectors):
    :math:`y = x e^{\log\sigma_c} + \mu_c`, :math:`\log|\det J| = n \sum_c \log\sigma_c`.

    Initialization: when its first call is an inverse (it first sees **data**, as in
    ``log_prob`` of observations), or on :meth:`initialize`, it sets :math:`\mu_c` and
    :math:`\log\sigma_c` to the per-channel mean and log standard deviation of that batch (its
    output then has zero mean and unit variance per channel). A first forward call (sampling)
    ends the initialization with the identity. ``initialized`` is a buffer, so a reloaded model
    is not re-initialised.

    Cost: both directions O(size of x), no network pass.

    Shapes:
        x, y: ``(*batch, *event_shape)``.  ladj: ``(*batch,)`` (nats).
    Args:
        event_shape: ``(D,)`` for vectors or ``(C, H, W)`` for images.
        eps: added to the standard deviation at initialization.
    Raises:
        ValueError: an empty ``event_shape``, non-positive sizes, ``eps <= 0``, or a
            data-dependent initialization from fewer than 2 values per channel.
    References:
        Kingma, Dhariwal (2018). Glow: Generative Flow with Invertible 1x1 Convolutions.
        https://arxiv.org/abs/1807.03039
    Example:
        >>> f = ActNorm((2,))
        >>> y = 3.0 + 2.0 * torch.randn(1000, 2)
        >>> x = f.inv(y)
        >>> bool(x.mean(0).abs().max() < 1e-4), bool((x.std(0) - 1).abs().max() < 1e-2)
        (True, True)
    """

    def __init__(self, event_shape: Sequence[int], *, eps: float = 1e-6) -> None:
        event_shape = tuple(event_shape)
        if not event_shape or not all(isinstance(n, int) and n >= 1 for n in event_shape):
            raise ValueError(
                f"event_shape must be a non-empty tuple of positive ints, got {event_shape!r}"
            )
        if not eps > 0:
            raise ValueError(f"eps must be > 0, got {eps!r}")
        super().__init__(event_shape)
        self.domain = constraints.independent(constraints.real, len(event_shape))
        self.codomain = constraints.independent(constraints.real, len(event_shape))
        self.eps = eps
        param_shape = (event_shape[0],) + (1,) * (len(event_shape) - 1)
        self.shift = nn.Parameter(torch.zeros(param_shape))
        self.log_scale = nn.Parameter(torch.zeros(param_shape))
        self.register_buffer("initialized", torch.tensor(False))

    def _ladj(self, x: torch.Tensor) -> torch.Tensor:
        per_channel = math.prod(self.event_shape[1:])
        batch = x.shape[: x.dim() - len(self.event_shape)]
        return (per_channel * self.log_scale.sum()).expand(batch)

    @torch.no_grad()
    def initialize(self, y: torch.Tensor) -> None:
        """Set shift and log-scale from data ``y`` of shape ``(*batch, *event_shape)``."""
        channel_first = y.movedim(y.dim() - len(self.event_shape), 0).reshape(
            self.event_shape[0], -1
        )
        if channel_first.shape[1] < 2:
            raise ValueError("ActNorm needs at least 2 values per channel to initialize")
        self.shift.copy_(channel_first.mean(1).reshape(self.shift.shape))
        std = channel_first.std(1).reshape(self.shift.shape)
        self.log_scale.copy_(torch.log(std + self.eps))
        self.initialized.fill_(True)

    def forward_and_ladj(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.initialized.fill_(True)
        return x * torch.exp(self.log_scale) + self.shift, self._ladj(x)

    def inverse_and_ladj(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not bool(self.initialized):
            self.initialize(y)
        return (y - self.shift) * torch.exp(-self.log_scale), -self._ladj(y)

    def extra_repr(self) -> str:
        return f"event_shape={self.event_shape}"
