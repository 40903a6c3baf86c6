"""The fully visible Boltzmann machine as a Pyro distribution."""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from pyro.distributions import constraints

from pyrogen.distributions.annealing import AnnealingPath, base_rate_bias
from pyrogen.distributions.base import broadcast_params, enumerated_logsumexp, sample_enumerated
from pyrogen.distributions.energy_model import EnergyModel
from pyrogen.util import check_count, check_positive

__all__ = ["BoltzmannMachine"]


class _GeometricPath(AnnealingPath):
    """Geometric path from independent units with biases ``b_A`` to a Boltzmann machine:
    :math:`\\log f_\\beta(y) = (1-\\beta) b_A^\\top y - \\beta E(y) / T`, Gibbs-sweep
    transitions."""

    def __init__(self, bm: BoltzmannMachine, base_bias: torch.Tensor) -> None:
        self.bm, self.base_bias = bm, base_bias

    def base_log_partition(self) -> torch.Tensor:
        return F.softplus(self.base_bias).sum(-1)

    def sample_base(self, num_chains: int) -> torch.Tensor:
        probs = torch.sigmoid(self.base_bias).expand((num_chains, *self.base_bias.shape))
        return torch.bernoulli(probs)

    def log_f(self, y: torch.Tensor, beta) -> torch.Tensor:
        return (1 - beta) * (self.base_bias * y).sum(-1) - beta * self.bm.free_energy(y)

    def transition(self, y: torch.Tensor, beta) -> torch.Tensor:
        return self.bm.gibbs_sweep(y, beta=beta, base_bias=self.base_bias)


class BoltzmannMachine(EnergyModel):
    r"""Fully visible Boltzmann machine over binary vectors.

    What it computes: with :math:`y \in \{0,1\}^n`, a symmetric weight matrix ``W`` with zero
    diagonal and biases ``b``,

    .. math::
        E(y) = -\tfrac12 y^\top W y - b^\top y, \qquad p(y) = e^{-E(y)/T} / Z,

    at the temperature :math:`T > 0` (default 1); ``free_energy`` is :math:`E(y)/T` (no hidden
    units), so :math:`Z = \sum_y e^{-E(y)/T}`. ``log Z`` is exact by enumerating
    all :math:`2^n` states when ``n <= 20``, otherwise an attached estimate (see
    :class:`~pyrogen.distributions.BernoulliRBM`). Exact sampling for ``n <= 20``; otherwise
    ``num_gibbs_steps`` sweeps of single-site Gibbs sampling with
    :math:`p(y_i = 1 \mid y_{-i}) = \sigma((b_i + \sum_j W_{ij} y_j) / T)`, from uniform random
    states.

    Shapes:
        weight: ``(*batch, n, n)``.  bias: ``(*batch, n)``.  Values: ``(*sample, *batch, n)``;
        ``log_prob``: ``(*sample, *batch)``.
    Args:
        weight: ``W`` (symmetric, zero diagonal).
        bias: ``b``.
        temperature: :math:`T`, a finite number > 0 (high: near uniform; low: near the
            minimum-energy states).
        num_gibbs_steps: Gibbs sweeps per ``sample`` when exact sampling is impossible.
        log_partition: an estimate of ``log Z`` to use when it cannot be enumerated.
        validate_args: validation of values and parameters.
    Raises:
        ValueError: shapes that disagree, ``num_gibbs_steps < 1``, a temperature that is not a
            finite positive number; with validation on, a weight
            that is not symmetric with zero diagonal, or non-binary values.
    References:
        Ackley, Hinton, Sejnowski (1985). A Learning Algorithm for Boltzmann Machines.
        https://doi.org/10.1207/s15516709cog0901_7
    Example:
        >>> w = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
        >>> bm = BoltzmannMachine(w, torch.zeros(2))
        >>> states = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
        >>> round(float(bm.log_prob(states).exp().sum()), 6)
        1.0
    """

    arg_constraints: ClassVar[dict] = {"weight": constraints.real, "bias": constraints.real}
    support = constraints.independent(constraints.boolean, 1)
    has_enumerate_support = True

    def __init__(
        self,
        weight: torch.Tensor,
        bias: torch.Tensor,
        *,
        temperature: float = 1.0,
        num_gibbs_steps: int = 100,
        log_partition: torch.Tensor | None = None,
        validate_args: bool | None = None,
    ) -> None:
        if not isinstance(bias, torch.Tensor) or bias.dim() < 1:
            raise ValueError(f"bias must be a tensor of shape (*batch, n), got {bias!r}")
        n = bias.shape[-1]
        params, batch_shape = broadcast_params(
            {"weight": weight, "bias": bias}, {"weight": (n, n), "bias": (n,)}
        )
        self.weight, self.bias = params["weight"], params["bias"]
        self.num_gibbs_steps = check_count(num_gibbs_steps, "num_gibbs_steps")
        self.temperature = check_positive(temperature, "temperature")
        super().__init__(batch_shape, torch.Size([n]), validate_args=validate_args)
        if self._validate_args:
            w = self.weight
            if not torch.allclose(w, w.transpose(-1, -2)):
                raise ValueError("weight must be symmetric (W == W^T)")
            if bool((torch.diagonal(w, dim1=-2, dim2=-1) != 0).any()):
                raise ValueError("weight must have a zero diagonal")
        if log_partition is not None:
            self.attach_log_partition(log_partition)

    @property
    def num_units(self) -> int:
        return self.bias.shape[-1]

    @property
    def like(self) -> torch.Tensor:
        return self.weight

    def energy(self, y: torch.Tensor) -> torch.Tensor:
        """:math:`E(y)` in nats, shape ``(*sample, *batch)``."""
        y = y.to(self.weight.dtype)
        wy = (self.weight @ y.unsqueeze(-1)).squeeze(-1)
        return -0.5 * (y * wy).sum(-1) - (self.bias * y).sum(-1)

    def free_energy(self, y: torch.Tensor) -> torch.Tensor:
        """:math:`E(y) / T` in nats (a fully visible model has no units to sum out)."""
        return self.energy(y) / self.temperature

    @property
    def has_exact_log_partition(self) -> bool:
        return self.num_units <= self.max_enumerable_units

    def exact_log_partition(self) -> torch.Tensor:
        """:math:`\\log Z` by enumerating the :math:`2^n` states.

        Raises:
            ValueError: ``n > max_enumerable_units``.
        """
        if not self.has_exact_log_partition:
            raise ValueError(
                f"a BoltzmannMachine of {self.num_units} units is too large for an exact log Z "
                f"(at most {self.max_enumerable_units}); use log_partition(method='ais')"
            )
        return enumerated_logsumexp(lambda y: -self.free_energy(y), self.num_units, self.weight)

    def gibbs_sweep(self, y: torch.Tensor, *, beta=1.0, base_bias=None) -> torch.Tensor:
        """One sweep of single-site Gibbs updates (units in order) leaving
        :math:`p_\\beta(y) \\propto e^{(1-\\beta) b_A^\\top y - \\beta E(y)/T}` invariant
        (``beta=1``: the model). Shapes: ``y``, returns: ``(*sample, *batch, n)``."""
        y = y.clone()
        for i in range(self.num_units):
            field = (self.bias[..., i] + (self.weight[..., i, :] * y).sum(-1)) / self.temperature
            logits = beta * field
            if base_bias is not None:
                logits = logits + (1 - beta) * base_bias[..., i]
            y[..., i] = torch.bernoulli(torch.sigmoid(logits))
        return y

    def markov_chain(self, value: torch.Tensor, num_steps: int) -> torch.Tensor:
        """``num_steps`` sweeps of single-site Gibbs sampling (units in order) from ``value``.

        Shapes:
            value, returns: ``(*sample, *batch, n)``.
        Raises:
            ValueError: ``num_steps < 0``; ``value`` of the wrong width or, with validation
                on, not binary.
        """
        check_count(num_steps, "num_steps", minimum=0)
        y, _ = self._checked_value(value.detach(), self.parameter_batch_shape)
        # the parameters' own batch dims, not a plate's expansion of them: the chains may be
        # fewer (or more) than the rows of a plate
        y = y.expand(torch.broadcast_shapes(y.shape, self.bias.shape, self.weight.shape[:-1]))
        with torch.no_grad():
            for _ in range(num_steps):
                y = self.gibbs_sweep(y)
        return y

    def sample(self, sample_shape: tuple[int, ...] = ()) -> torch.Tensor:
        """Exact draws for ``n <= 20`` (enumeration), otherwise Gibbs sweeps.

        Shapes:
            returns ``sample_shape + batch_shape + (n,)``.
        """
        shape = torch.Size(sample_shape)
        with torch.no_grad():
            if self.has_exact_log_partition:
                return sample_enumerated(
                    self.unnormalized_log_prob, self.num_units, shape, self.batch_shape, self.bias
                )
            init = torch.bernoulli(
                self.bias.new_full(shape + self.batch_shape + self.event_shape, 0.5)
            )
            return self.markov_chain(init, self.num_gibbs_steps)

    def annealing_path(self, *, data=None, base_visible_bias=None) -> AnnealingPath:
        """Geometric path from independent units with biases :math:`b_A`
        (``base_visible_bias``, else the base rate of ``data``, else 0) to the model:
        :math:`\\log f_\\beta(y) = (1-\\beta) b_A^\\top y - \\beta E(y)/T`, with
        :meth:`gibbs_sweep` transitions."""
        shape = torch.Size((*self.batch_shape, self.num_units))
        return _GeometricPath(self, base_rate_bias(data, base_visible_bias, shape, self.weight))
