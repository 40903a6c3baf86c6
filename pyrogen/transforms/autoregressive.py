"""Affine autoregressive flows over a MADE conditioner: MAF and IAF, plain and conditional."""

from __future__ import annotations

import torch
from torch import nn
from torch.distributions import constraints

from pyrogen.nn.networks import MADE, BoundContext
from pyrogen.transforms.base import Bijector, ConditionalBijector
from pyrogen.transforms.coupling import _check_bound, soft_bound

__all__ = [
    "ConditionalInverseAutoregressive",
    "ConditionalMaskedAutoregressive",
    "InverseAutoregressive",
    "MaskedAutoregressive",
]


class _AffineAutoregressive(Bijector):
    """Shared parts of MAF and IAF: ``y = x * exp(s(c)) + mu(c)``, ``c`` = y (MAF) or x (IAF)."""

    domain = constraints.independent(constraints.real, 1)
    codomain = constraints.independent(constraints.real, 1)

    def __init__(self, conditioner: nn.Module, *, log_scale_bound: float | None = 5.0) -> None:
        net = conditioner.net if isinstance(conditioner, BoundContext) else conditioner
        if not isinstance(net, MADE):
            raise TypeError(
                f"conditioner must be a pyrogen.nn.MADE, got {type(conditioner).__name__}"
            )
        if net.num_params != 2:
            raise ValueError(
                f"conditioner.num_params must be 2 (shift, log-scale), got {net.num_params}"
            )
        _check_bound(log_scale_bound)
        super().__init__((net.input_dim,))
        self.input_dim = net.input_dim
        self.conditioner = conditioner
        self.log_scale_bound = log_scale_bound

    def _shift_log_scale(self, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.conditioner(c)
        return out[..., 0, :], soft_bound(out[..., 1, :], self.log_scale_bound)

    def _solve_sequentially(self, step, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Iterate ``c <- step(c)`` D times from zero; after pass k the first k are exact."""
        c, log_scale = step(torch.zeros_like(like))
        for _ in range(self.input_dim - 1):
            c, log_scale = step(c)
        return c, log_scale

    def extra_repr(self) -> str:
        return f"input_dim={self.input_dim}, log_scale_bound={self.log_scale_bound}"


class MaskedAutoregressive(_AffineAutoregressive):
    r"""Masked autoregressive flow layer (MAF): cheap inverse (scoring), sequential forward.

    What it computes, with :math:`(\mu, s) = \mathrm{MADE}(y)` autoregressive in ``y``:

    .. math::

        y_i = x_i \exp(\tilde s_i(y_{<i})) + \mu_i(y_{<i}),\qquad
        x = (y - \mu(y)) \odot \exp(-\tilde s(y)),\qquad
        \log|\det J_f(x)| = \textstyle\sum_i \tilde s_i(y_{<i}),

    with :math:`\tilde s = B\tanh(s/B)`.

    Cost: the inverse (density evaluation of data) is one MADE pass; the forward (sampling)
    takes ``D`` sequential MADE passes. Identity at initialization (MADE's last layer is zero).

    Shapes:
        x, y: ``(*batch, D)``.  ladj: ``(*batch,)`` (nats).
    Args:
        conditioner: a :class:`~pyrogen.nn.MADE` with ``num_params=2``; its ``order`` sets the
            autoregressive order.
        log_scale_bound: ``B`` (nats), or ``None`` for no bound.
    Raises:
        TypeError: the conditioner is not a MADE.
        ValueError: ``num_params != 2`` or ``log_scale_bound <= 0``.
    References:
        Papamakarios, Pavlakou, Murray (2017). Masked Autoregressive Flow for Density
        Estimation. https://arxiv.org/abs/1705.07057
    Example:
        >>> from pyrogen.nn import MADE
        >>> f = MaskedAutoregressive(MADE(3, [16], order="reversed"))
        >>> f(torch.randn(2, 3)).shape
        torch.Size([2, 3])
    """

    def forward_and_ladj(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        def step(y):
            shift, log_scale = self._shift_log_scale(y)
            return x * torch.exp(log_scale) + shift, log_scale

        y, log_scale = self._solve_sequentially(step, x)
        return y, log_scale.sum(-1)

    def inverse_and_ladj(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shift, log_scale = self._shift_log_scale(y)
        return (y - shift) * torch.exp(-log_scale), -log_scale.sum(-1)


class InverseAutoregressive(_AffineAutoregressive):
    r"""Inverse autoregressive flow layer (IAF): cheap forward (sampling), sequential inverse.

    What it computes, with :math:`(\mu, s) = \mathrm{MADE}(x)` autoregressive in ``x``:

    .. math::

        y = x \odot \exp(\tilde s(x)) + \mu(x),\qquad
        x_i = (y_i - \mu_i(x_{<i})) \exp(-\tilde s_i(x_{<i})),\qquad
        \log|\det J_f(x)| = \textstyle\sum_i \tilde s_i(x_{<i}).

    Cost: the forward (sampling and scoring its own samples, as in a guide) is one MADE pass;
    the inverse (scoring external data) takes ``D`` sequential passes. Identity at
    initialization.

    Shapes:
        x, y: ``(*batch, D)``.  ladj: ``(*batch,)`` (nats).
    Args:
        conditioner: a :class:`~pyrogen.nn.MADE` with ``num_params=2``.
        log_scale_bound: ``B`` (nats), or ``None`` for no bound.
    Raises:
        TypeError: the conditioner is not a MADE.
        ValueError: ``num_params != 2`` or ``log_scale_bound <= 0``.
    References:
        Kingma, Salimans, Jozefowicz, Chen, Sutskever, Welling (2016). Improved Variational
        Inference with Inverse Autoregressive Flow. https://arxiv.org/abs/1606.04934
    Example:
        >>> from pyrogen.nn import MADE
        >>> f = InverseAutoregressive(MADE(3, [16]))
        >>> f(torch.randn(2, 3)).shape
        torch.Size([2, 3])
    """

    def forward_and_ladj(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shift, log_scale = self._shift_log_scale(x)
        return x * torch.exp(log_scale) + shift, log_scale.sum(-1)

    def inverse_and_ladj(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        def step(x):
            shift, log_scale = self._shift_log_scale(x)
            return (y - shift) * torch.exp(-log_scale), log_scale

        x, log_scale = self._solve_sequentially(step, y)
        return x, -log_scale.sum(-1)


class _ConditionalAffineAutoregressive(ConditionalBijector):
    _layer: type[_AffineAutoregressive]

    def __init__(self, conditioner: MADE, *, log_scale_bound: float | None = 5.0) -> None:
        super().__init__()
        if not isinstance(conditioner, MADE) or conditioner.context_dim < 1:
            raise TypeError("conditioner must be a pyrogen.nn.MADE with context_dim > 0")
        self._layer(conditioner, log_scale_bound=log_scale_bound)  # validate once
        self.conditioner = conditioner
        self.log_scale_bound = log_scale_bound

    def condition(self, context: torch.Tensor) -> _AffineAutoregressive:
        return self._layer(
            BoundContext(self.conditioner, context), log_scale_bound=self.log_scale_bound
        )


class ConditionalMaskedAutoregressive(_ConditionalAffineAutoregressive):
    """MAF layer conditioned on a ``context``; ``condition(context)`` returns a
    :class:`MaskedAutoregressive` sharing the MADE's parameters.

    Shapes:
        context: ``(*batch, context_dim)``.
    Args:
        conditioner: a :class:`~pyrogen.nn.MADE` with ``context_dim > 0``, ``num_params=2``.
        log_scale_bound: as in :class:`MaskedAutoregressive`.
    Raises:
        TypeError: the conditioner is not a MADE with a context.
    References:
        Papamakarios, Pavlakou, Murray (2017). Masked Autoregressive Flow for Density
        Estimation. https://arxiv.org/abs/1705.07057
    """

    _layer = MaskedAutoregressive


class ConditionalInverseAutoregressive(_ConditionalAffineAutoregressive):
    """IAF layer conditioned on a ``context`` (e.g. the data, in an amortized guide);
    ``condition(context)`` returns an :class:`InverseAutoregressive`.

    Shapes:
        context: ``(*batch, context_dim)``.
    Args:
        conditioner: a :class:`~pyrogen.nn.MADE` with ``context_dim > 0``, ``num_params=2``.
        log_scale_bound: as in :class:`InverseAutoregressive`.
    Raises:
        TypeError: the conditioner is not a MADE with a context.
    References:
        Kingma et al. (2016). Improved Variational Inference with Inverse Autoregressive Flow.
        https://arxiv.org/abs/1606.04934
    """

    _layer = InverseAutoregressive
