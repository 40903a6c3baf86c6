"""Affine and additive coupling layers (NICE, RealNVP, Glow), plain and conditional."""

from __future__ import annotations

import torch
from torch import nn
from torch.distributions import constraints

from pyrogen.nn.networks import BoundContext
from pyrogen.transforms.base import Bijector, ConditionalBijector

__all__ = ["AffineCoupling", "ConditionalAffineCoupling", "soft_bound"]


def soft_bound(log_scale: torch.Tensor, bound: float | None) -> torch.Tensor:
    """Softly bound a log-scale to ``(-bound, bound)`` as ``bound * tanh(log_scale / bound)``.

    Shapes: any; returns the same shape. ``bound=None`` returns the input unchanged.
    """
    if bound is None:
        return log_scale
    return bound * torch.tanh(log_scale / bound)


def _check_bound(log_scale_bound: float | None) -> None:
    if log_scale_bound is not None and not log_scale_bound > 0:
        raise ValueError(f"log_scale_bound must be > 0 or None, got {log_scale_bound!r}")


class AffineCoupling(Bijector):
    r"""Affine coupling layer (RealNVP; additive NICE variant).

    What it computes, with :math:`x = [x_a, x_b]` split after ``split_dim`` features and
    :math:`(\mu, s) = \mathrm{conditioner}(x_a)`:

    .. math::

        y_a = x_a,\quad y_b = x_b \odot \exp(\tilde s) + \mu,\quad
        \tilde s = B \tanh(s / B),\quad \log|\det J| = \textstyle\sum_i \tilde s_i.

    With ``additive=True`` (NICE) :math:`\tilde s = 0` and the conditioner outputs :math:`\mu`
    only (volume preserving, log-det zero). Inverse:
    :math:`x_b = (y_b - \mu) \odot \exp(-\tilde s)`.

    Cost: both directions cheap (one conditioner pass each). Identity at initialization when
    the conditioner's last layer is zero (as :class:`~pyrogen.nn.DenseNN`'s is).

    Shapes:
        x, y: ``(*batch, input_dim)``.  ladj: ``(*batch,)`` (nats).
    Args:
        split_dim: number ``d`` of features passed through unchanged, ``1 <= d < input_dim``.
        conditioner: maps ``(*batch, d)`` to ``(*batch, 2 * (input_dim - d))`` (shift then
            log-scale) or ``(*batch, input_dim - d)`` when additive.
        input_dim: total dimension ``D``; read from ``conditioner.output_dim`` when omitted.
        additive: NICE's additive coupling (no scale).
        log_scale_bound: ``B`` of the soft bound on the log-scale (nats); ``None``: unbounded.
    Raises:
        ValueError: bad ``split_dim``/``input_dim``, ``log_scale_bound <= 0``, or a
            conditioner output of the wrong size.
    References:
        Dinh, Krueger, Bengio (2015). NICE: Non-linear Independent Components Estimation.
        https://arxiv.org/abs/1410.8516
        Dinh, Sohl-Dickstein, Bengio (2017). Density estimation using Real NVP.
        https://arxiv.org/abs/1605.08803
    Example:
        >>> from pyrogen.nn import DenseNN
        >>> f = AffineCoupling(2, DenseNN(2, [16], 4))
        >>> x = torch.randn(3, 4)
        >>> torch.allclose(f.inv(f(x).clone()), x)
        True
    """

    domain = constraints.independent(constraints.real, 1)
    codomain = constraints.independent(constraints.real, 1)

    def __init__(
        self,
        split_dim: int,
        conditioner: nn.Module,
        *,
        input_dim: int | None = None,
        additive: bool = False,
        log_scale_bound: float | None = 5.0,
    ) -> None:
        if input_dim is None:
            out = getattr(conditioner, "output_dim", None)
            if out is None:
                raise ValueError("input_dim is required when the conditioner has no output_dim")
            input_dim = split_dim + (out if additive else out // 2)
        if not isinstance(split_dim, int) or not 1 <= split_dim < input_dim:
            raise ValueError(
                f"split_dim must be an int with 1 <= split_dim < input_dim={input_dim}, "
                f"got {split_dim!r}"
            )
        _check_bound(log_scale_bound)
        out = getattr(conditioner, "output_dim", None)
        expected = (input_dim - split_dim) * (1 if additive else 2)
        if out is not None and out != expected:
            raise ValueError(
                f"conditioner.output_dim must be {expected} for input_dim={input_dim}, "
                f"split_dim={split_dim}, additive={additive}; got {out}"
            )
        super().__init__((input_dim,))
        self.split_dim, self.input_dim = split_dim, input_dim
        self.additive, self.log_scale_bound = additive, log_scale_bound
        self.conditioner = conditioner

    def _shift_log_scale(self, x_a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        out = self.conditioner(x_a)
        n = self.input_dim - self.split_dim
        if out.shape[-1] != n * (1 if self.additive else 2):
            raise ValueError(
                f"conditioner returned {out.shape[-1]} features, expected "
                f"{n * (1 if self.additive else 2)}"
            )
        if self.additive:
            return out, None
        return out[..., :n], soft_bound(out[..., n:], self.log_scale_bound)

    def forward_and_ladj(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x_a, x_b = x[..., : self.split_dim], x[..., self.split_dim :]
        shift, log_scale = self._shift_log_scale(x_a)
        if log_scale is None:
            y_b, ladj = x_b + shift, x.new_zeros(()).expand(shift.shape[:-1])
        else:
            y_b, ladj = x_b * torch.exp(log_scale) + shift, log_scale.sum(-1)
        x_a = x_a.expand(y_b.shape[:-1] + x_a.shape[-1:])
        return torch.cat([x_a, y_b], dim=-1), ladj

    def inverse_and_ladj(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y_a, y_b = y[..., : self.split_dim], y[..., self.split_dim :]
        shift, log_scale = self._shift_log_scale(y_a)
        if log_scale is None:
            x_b, ladj = y_b - shift, y.new_zeros(()).expand(shift.shape[:-1])
        else:
            x_b, ladj = (y_b - shift) * torch.exp(-log_scale), -log_scale.sum(-1)
        y_a = y_a.expand(x_b.shape[:-1] + y_a.shape[-1:])
        return torch.cat([y_a, x_b], dim=-1), ladj

    def extra_repr(self) -> str:
        return (
            f"input_dim={self.input_dim}, split_dim={self.split_dim}, additive={self.additive}, "
            f"log_scale_bound={self.log_scale_bound}"
        )


class ConditionalAffineCoupling(ConditionalBijector):
    """Affine coupling whose conditioner also takes a ``context``; see :class:`AffineCoupling`.

    ``condition(context)`` returns an :class:`AffineCoupling` sharing this module's conditioner.

    Shapes:
        context: ``(*batch, context_dim)``, broadcast against the input's batch shape.
    Args:
        split_dim, input_dim, additive, log_scale_bound: as in :class:`AffineCoupling`.
        conditioner: called as ``conditioner(x_a, context)``, e.g. a
            :class:`~pyrogen.nn.DenseNN` with ``context_dim > 0``.
    Raises:
        ValueError: as :class:`AffineCoupling`.
    References:
        Dinh, Sohl-Dickstein, Bengio (2017). Density estimation using Real NVP.
        https://arxiv.org/abs/1605.08803
    Example:
        >>> from pyrogen.nn import DenseNN
        >>> f = ConditionalAffineCoupling(1, DenseNN(1, [8], 2, context_dim=3))
        >>> f.condition(torch.randn(5, 3))(torch.randn(5, 2)).shape
        torch.Size([5, 2])
    """

    def __init__(
        self,
        split_dim: int,
        conditioner: nn.Module,
        *,
        input_dim: int | None = None,
        additive: bool = False,
        log_scale_bound: float | None = 5.0,
    ) -> None:
        super().__init__()
        self.conditioner = conditioner
        self._kwargs = dict(input_dim=input_dim, additive=additive, log_scale_bound=log_scale_bound)
        self.split_dim = split_dim
        AffineCoupling(split_dim, conditioner, **self._kwargs)  # validate the arguments once

    def condition(self, context: torch.Tensor) -> AffineCoupling:
        return AffineCoupling(
            self.split_dim, BoundContext(self.conditioner, context), **self._kwargs
        )
