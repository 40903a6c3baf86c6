"""The fully visible Boltzmann machine as a Pyro distribution."""

from __future__ import annotations

from typing import ClassVar

import torch
from pyro.distributions import TorchDistribution, constraints

from pyrogen.distributions.base import (
    EnergyMixin,
    broadcast_params,
    enumerated_logsumexp,
    sample_enumerated,
)
from pyrogen.util import check_count

__all__ = ["BoltzmannMachine"]


class BoltzmannMachine(EnergyMixin, TorchDistribution):
    r"""Fully visible Boltzmann machine over binary vectors.

    What it computes: with :math:`y \in \{0,1\}^n`, a symmetric weight matrix ``W`` with zero
    diagonal and biases ``b``,

    .. math::
        E(y) = -\tfrac12 y^\top W y - b^\top y, \qquad p(y) = e^{-E(y)} / Z,

    ``free_energy`` is :math:`E` itself (no hidden units). ``log Z`` is exact by enumerating
    all :math:`2^n` states when ``n <= 20``, otherwise an attached estimate (see
    :class:`~pyrogen.distributions.BernoulliRBM`). Exact sampling for ``n <= 20``; otherwise
    ``num_gibbs_steps`` sweeps of single-site Gibbs sampling with
    :math:`p(y_i = 1 \mid y_{-i}) = \sigma(b_i + \sum_j W_{ij} y_j)`, from uniform random
    states.

    Shapes:
        weight: ``(*batch, n, n)``.  bias: ``(*batch, n)``.  Values: ``(*sample, *batch, n)``;
        ``log_prob``: ``(*sample, *batch)``.
    Args:
        weight: ``W`` (symmetric, zero diagonal).
        bias: ``b``.
        num_gibbs_steps: Gibbs sweeps per ``sample`` when exact sampling is impossible.
        log_partition: an estimate of ``log Z`` to use when it cannot be enumerated.
        validate_args: validation of values and parameters.
    Raises:
        ValueError: shapes that disagree, ``num_gibbs_steps < 1``; with validation on, a weight
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
    has_rsample = False

    def __init__(
        self,
        weight: torch.Tensor,
        bias: torch.Tensor,
        *,
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
        super().__init__(batch_shape, torch.Size([n]), validate_args=validate_args)
        if self._validate_args:
            w = self.weight
            if not torch.allclose(w, w.transpose(-1, -2)):
                raise ValueError("weight must be symmetric (W == W^T)")
            if bool((torch.diagonal(w, dim1=-2, dim2=-1) != 0).any()):
                raise ValueError("weight must have a zero diagonal")
        self._init_energy(log_partition)

    @property
    def num_units(self) -> int:
        return self.bias.shape[-1]

    def _params(self) -> tuple[torch.Tensor, ...]:
        return (self.weight, self.bias)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(BoltzmannMachine, _instance)
        batch_shape = torch.Size(batch_shape)
        torch.broadcast_shapes(batch_shape, self.batch_shape)
        new.weight, new.bias = self.weight, self.bias  # unexpanded: every method broadcasts
        new.num_gibbs_steps = self.num_gibbs_steps
        super(BoltzmannMachine, new).__init__(batch_shape, self.event_shape, validate_args=False)
        new._init_energy(None if self._attached is None else self._attached.expand(batch_shape))
        new._validate_args = self._validate_args
        return new

    def energy(self, y: torch.Tensor) -> torch.Tensor:
        """:math:`E(y)` in nats, shape ``(*sample, *batch)``."""
        wy = (self.weight @ y.unsqueeze(-1)).squeeze(-1)
        return -0.5 * (y * wy).sum(-1) - (self.bias * y).sum(-1)

    def free_energy(self, y: torch.Tensor) -> torch.Tensor:
        """Equal to :meth:`energy` (a fully visible model has no units to sum out)."""
        return self.energy(y)

    def _enumerable(self) -> bool:
        return self.num_units <= self.max_enumerable_units

    def _exact_log_partition(self) -> torch.Tensor:
        return enumerated_logsumexp(lambda y: -self.energy(y), self.num_units, self.weight)

    def markov_chain(self, value: torch.Tensor, num_steps: int) -> torch.Tensor:
        """``num_steps`` sweeps of single-site Gibbs sampling (units in order) from ``value``.

        Shapes:
            value, returns: ``(*sample, *batch, n)``.
        """
        check_count(num_steps, "num_steps", minimum=0)
        y = value.detach().clone()
        with torch.no_grad():
            for _ in range(num_steps):
                for i in range(self.num_units):
                    logits = self.bias[..., i] + (self.weight[..., i, :] * y).sum(-1)
                    y[..., i] = torch.bernoulli(torch.sigmoid(logits))
        return y

    def sample(self, sample_shape: tuple[int, ...] = ()) -> torch.Tensor:
        """Exact draws for ``n <= 20`` (enumeration), otherwise Gibbs sweeps.

        Shapes:
            returns ``sample_shape + batch_shape + (n,)``.
        """
        shape = torch.Size(sample_shape)
        with torch.no_grad():
            if self._enumerable():
                return sample_enumerated(
                    lambda y: -self.energy(y), self.num_units, shape, self.batch_shape, self.bias
                )
            init = torch.bernoulli(
                self.bias.new_full(shape + self.batch_shape + self.event_shape, 0.5)
            )
            return self.markov_chain(init, self.num_gibbs_steps)

    def _ais_path(self, base_visible_bias: torch.Tensor | None):
        from pyrogen.distributions.annealing import BoltzmannPath

        return BoltzmannPath(self, base_visible_bias)
