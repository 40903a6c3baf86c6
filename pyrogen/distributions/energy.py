"""Continuous energy-based distributions sampled by Langevin dynamics."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import ClassVar

import torch
from pyro.distributions import constraints
from torch import nn

from pyrogen.distributions.annealing import AnnealingPath
from pyrogen.distributions.energy_model import EnergyModel
from pyrogen.util import check_count, check_positive, check_tensor

__all__ = ["EnergyBasedDistribution"]


def _value_and_grad(energy: Callable, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        e = energy(x)
        (g,) = torch.autograd.grad(e.sum(), x)
    return e.detach(), g


def langevin(
    energy: Callable, x: torch.Tensor, num_steps: int, step_size: float, adjusted: bool, k: int
) -> torch.Tensor:
    """``num_steps`` ULA (or MALA) steps on ``energy`` from ``x``; ``k`` event dims."""
    eps = step_size
    x = x.detach()
    e, g = _value_and_grad(energy, x)
    dims = tuple(range(-k, 0))
    for _ in range(num_steps):
        proposal = x - eps * g + math.sqrt(2 * eps) * torch.randn_like(x)
        e_new, g_new = _value_and_grad(energy, proposal)
        if not adjusted:
            x, e, g = proposal, e_new, g_new
            continue
        forward = ((proposal - x + eps * g) ** 2).sum(dims) / (4 * eps)
        backward = ((x - proposal + eps * g_new) ** 2).sum(dims) / (4 * eps)
        log_accept = (e - e_new) - backward + forward
        accept = torch.rand_like(log_accept).log() < log_accept
        mask = accept.reshape(accept.shape + (1,) * k)
        x = torch.where(mask, proposal, x)
        e = torch.where(accept, e_new, e)
        g = torch.where(mask, g_new, g)
    return x.detach()


class _GaussianPath(AnnealingPath):
    """From :math:`\\mathcal N(0, s^2 I)` to the EBM: :math:`\\log f_\\beta(x) =
    -(1-\\beta) |x|^2 / (2 s^2) - \\beta E(x)`, one MALA step per transition."""

    def __init__(self, ebm: EnergyBasedDistribution) -> None:
        self.ebm, self.s = ebm, ebm.init_scale

    def base_log_partition(self) -> torch.Tensor:
        d = self.ebm.event_shape.numel()
        like = self.ebm.like
        value = 0.5 * d * math.log(2 * math.pi * self.s**2)
        return torch.full(self.ebm.batch_shape, value, dtype=like.dtype, device=like.device)

    def sample_base(self, num_chains: int) -> torch.Tensor:
        shape = (num_chains, *self.ebm.batch_shape, *self.ebm.event_shape)
        like = self.ebm.like
        return self.s * torch.randn(shape, dtype=like.dtype, device=like.device)

    def _energy(self, beta) -> Callable:
        dims = tuple(range(-len(self.ebm.event_shape), 0))
        return lambda x: (1 - beta) * (x**2).sum(dims) / (2 * self.s**2) + beta * self.ebm.energy(x)

    def log_f(self, x: torch.Tensor, beta) -> torch.Tensor:
        return -self._energy(beta)(x)

    def transition(self, x: torch.Tensor, beta) -> torch.Tensor:
        k = len(self.ebm.event_shape)
        return langevin(self._energy(beta), x, 1, self.ebm.step_size, True, k)


class EnergyBasedDistribution(EnergyModel):
    r"""A continuous distribution :math:`p(x) = e^{-E_\theta(x)} / Z` defined by any energy
    network, sampled by Langevin dynamics.

    What it computes: ``unnormalized_log_prob(x) = -energy_fn(x)``. Sampling runs
    ``num_steps`` steps of the unadjusted Langevin algorithm (ULA),

    .. math:: x' = x - \epsilon \nabla_x E(x) + \sqrt{2\epsilon}\, \xi, \quad \xi \sim \mathcal
        N(0, I),

    from :math:`x_0 \sim \mathcal N(0, \text{init_scale}^2 I)` (or from given states with
    :meth:`markov_chain`); with ``adjusted=True`` each step is a Metropolis-adjusted Langevin
    (MALA) proposal accepted with probability :math:`\min(1, \frac{p(x') q(x \mid x')}{p(x)
    q(x' \mid x)})`, which makes ``p`` exactly invariant. ULA is biased by :math:`O(\epsilon)`;
    both need enough steps to mix (the defaults suit energies whose modes are a few units
    apart at unit scale, like the toy densities in :mod:`pyrogen.datasets`). ``log_prob`` needs
    ``log Z``: pass it (``log_partition=``) or attach an estimate with
    :meth:`attach_log_partition` (e.g. by quadrature in 2-D, or
    ``log_partition(method="ais")``, which anneals from :math:`\mathcal N(0,
    \text{init_scale}^2 I)` with one MALA step per temperature); otherwise it raises.

    Shapes:
        ``energy_fn``: ``(*batch, *event_shape) -> (*batch,)``.
        Values: ``(*sample, *batch, *event_shape)`` (``batch_shape`` is ``()`` unless expanded).
    Dtype: that of the network's first parameter (else its first floating-point buffer);
    values of another precision are converted to it. An energy with no tensors of its own (a
    plain callable) is evaluated in the value's own floating dtype, and draws it in torch's
    default dtype.
    Args:
        energy_fn: an ``nn.Module`` (or callable) returning the energy in nats.
        event_shape: the shape of one draw, e.g. ``(2,)``.
        num_steps: Langevin steps per ``sample`` (>= 1).
        step_size: :math:`\epsilon > 0`.
        adjusted: use MALA instead of ULA.
        init_scale: standard deviation of the initial states (> 0).
        log_partition: ``log Z`` in nats, if known.
    Raises:
        ValueError: ``num_steps < 1``, ``step_size <= 0``, ``init_scale <= 0``; ``log_prob``
            without ``log Z``; an energy of the wrong shape.
        TypeError: ``energy_fn`` not callable.
    References:
        Roberts, Tweedie (1996). Exponential convergence of Langevin distributions and their
        discrete approximations. https://doi.org/10.2307/3318418
        Du, Mordatch (2019). Implicit Generation and Modeling with Energy-Based Models.
        https://arxiv.org/abs/1903.08689
    Example:
        >>> ebm = EnergyBasedDistribution(lambda x: (x**2).sum(-1) / 2, (2,), num_steps=200,
        ...                               step_size=0.1)
        >>> ebm.sample((500,)).shape
        torch.Size([500, 2])
    """

    arg_constraints: ClassVar[dict] = {}
    support = constraints.real_vector
    has_rsample = False

    def __init__(
        self,
        energy_fn: nn.Module,
        event_shape,
        *,
        num_steps: int = 500,
        step_size: float = 0.01,
        adjusted: bool = False,
        init_scale: float = 1.0,
        log_partition: float | None = None,
        validate_args: bool | None = None,
    ) -> None:
        if not callable(energy_fn):
            raise TypeError(f"energy_fn must be callable, got {type(energy_fn).__name__}")
        self.energy_fn = energy_fn
        self.num_steps = check_count(num_steps, "num_steps")
        self.step_size = check_positive(step_size, "step_size")
        self.init_scale = check_positive(init_scale, "init_scale")
        self.adjusted = bool(adjusted)
        if isinstance(event_shape, (str, bytes)) or not hasattr(event_shape, "__iter__"):
            raise ValueError(f"event_shape must be a tuple of positive ints, got {event_shape!r}")
        event_shape = tuple(event_shape)
        if not event_shape or not all(
            isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in event_shape
        ):
            raise ValueError(f"event_shape must be a tuple of positive ints, got {event_shape!r}")
        event_shape = torch.Size(event_shape)
        if len(event_shape) != 1:
            self.support = constraints.independent(constraints.real, len(event_shape))
        super().__init__(
            torch.Size(), event_shape, log_partition=log_partition, validate_args=validate_args
        )

    def _own_tensor(self) -> torch.Tensor | None:
        """The energy network's first parameter, else its first floating-point buffer, else
        ``None`` (a plain callable, or a module without tensors: no dtype of its own)."""
        if isinstance(self.energy_fn, nn.Module):
            for p in self.energy_fn.parameters():
                return p
            for b in self.energy_fn.buffers():
                if b.is_floating_point():
                    return b
        return None

    @property
    def like(self) -> torch.Tensor:
        """The energy network's first parameter (else its first floating-point buffer): the
        dtype and device of the draws; else an empty tensor of the default dtype."""
        own = self._own_tensor()
        return torch.empty(()) if own is None else own

    def _value_like(self, value) -> torch.Tensor:
        # an energy without tensors of its own is evaluated in the value's precision
        own = self._own_tensor()
        if own is None and isinstance(value, torch.Tensor) and value.is_floating_point():
            return value
        return self.like

    @property
    def log_partition_value(self) -> float | None:
        """The attached ``log Z`` as a number (``None`` if none)."""
        z = self.attached_log_partition
        return None if z is None else float(z.reshape(-1)[0]) if z.numel() else None

    def energy(self, x: torch.Tensor) -> torch.Tensor:
        """:math:`E(x)` in nats, shape ``(*sample,)``.

        Raises:
            ValueError: the network returns a tensor of the wrong shape.
        """
        e = self.energy_fn(x)
        expected = x.shape[: x.dim() - len(self.event_shape)]
        if e.shape != expected:
            raise ValueError(
                f"energy_fn returned shape {tuple(e.shape)}, expected {tuple(expected)}"
            )
        return e

    def free_energy(self, x: torch.Tensor) -> torch.Tensor:
        """Equal to :meth:`energy` (no latent units)."""
        return self.energy(x)

    def annealing_path(self, *, data=None, base_visible_bias=None) -> AnnealingPath:
        """Path from :math:`\\mathcal N(0, \\text{init_scale}^2 I)` to the model,
        :math:`\\log f_\\beta = -(1-\\beta) |x|^2/(2 s^2) - \\beta E(x)`, one MALA step
        (``step_size``) per temperature.

        Raises:
            ValueError: ``data`` or ``base_visible_bias`` (binary-model options) given.
        """
        if data is not None or base_visible_bias is not None:
            raise ValueError("data and base_visible_bias apply to binary models only")
        return _GaussianPath(self)

    def markov_chain(self, value: torch.Tensor, num_steps: int) -> torch.Tensor:
        """Run ``num_steps`` Langevin steps (ULA, or MALA if ``adjusted``) from ``value``.

        Shapes:
            value, returns: ``(*sample, *event_shape)``. No gradient flows to the parameters.
        """
        check_count(num_steps, "num_steps", minimum=0)
        check_tensor(value, "value", tuple(self.event_shape), like=self._own_tensor())
        k = len(self.event_shape)
        out = langevin(self.energy, value, num_steps, self.step_size, self.adjusted, k)
        if not bool(torch.isfinite(out).all()):
            raise FloatingPointError(
                f"the Langevin chain diverged (non-finite states after {num_steps} steps): "
                f"step_size={self.step_size:g} is too large for this energy; use a smaller one"
            )
        return out

    def sample(self, sample_shape: tuple[int, ...] = ()) -> torch.Tensor:
        """``num_steps`` Langevin steps from :math:`\\mathcal N(0, \\text{init_scale}^2 I)`.

        Shapes:
            returns ``sample_shape + batch_shape + event_shape``.
        """
        like = self.like
        shape = torch.Size(sample_shape) + self.batch_shape + self.event_shape
        init = self.init_scale * torch.randn(shape, dtype=like.dtype, device=like.device)
        return self.markov_chain(init, self.num_steps)
