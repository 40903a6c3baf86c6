"""Deep Boltzmann machines: layered binary energy models with mean-field posteriors."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
import torch.nn.functional as F
from pyro.distributions import constraints

from pyrogen.distributions.annealing import BipartitePath, base_rate_bias
from pyrogen.distributions.base import broadcast_params, enumerated_logsumexp, sample_enumerated
from pyrogen.distributions.energy_model import EnergyModel
from pyrogen.util import check_count

__all__ = ["DeepBoltzmannMachine"]


def _down(weight: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """``W h``: ``(..., n_above) -> (..., n_below)``."""
    h = h.to(weight.dtype)
    return h @ weight.T if weight.dim() == 2 else (weight @ h.unsqueeze(-1)).squeeze(-1)


def _up(weight: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``x^T W``: ``(..., n_below) -> (..., n_above)``."""
    x = x.to(weight.dtype)
    return x @ weight if weight.dim() == 2 else (x.unsqueeze(-2) @ weight).squeeze(-2)


def _bernoulli_entropy(p: torch.Tensor) -> torch.Tensor:
    p = p.clamp(1e-12, 1 - 1e-12)
    return -(p * p.log() + (1 - p) * (1 - p).log()).sum(-1)


class DeepBoltzmannMachine(EnergyModel):
    r"""Deep Boltzmann machine: binary visible units :math:`h^0 = v` and ``L >= 2`` binary
    hidden layers :math:`h^1, \dots, h^L`, each connected only to its neighbours.

    What it computes:

    .. math::
        E(v, h^1, \dots, h^L) = -\sum_{l=0}^{L-1} {h^l}^\top W_l\, h^{l+1}
            - \sum_{l=0}^{L} b_l^\top h^l, \qquad p(v) = \frac1Z \sum_{h} e^{-E(v, h)}.

    Given its neighbours a layer is a product of Bernoullis, :math:`p(h^l_j = 1 \mid
    \cdot) = \sigma(b_{l,j} + (W_{l-1}^\top h^{l-1})_j + (W_l h^{l+1})_j)`, so the even layers
    (``v``, :math:`h^2`, ...) are independent given the odd ones and vice versa: block Gibbs
    alternates the two groups. Summing one group out analytically (softplus of its inputs)
    leaves a sum over the other; ``log Z`` is exact when the smaller group has at most
    ``max_enumerable_units`` (20) units, and the free energy :math:`F(v)` when the even hidden
    layers (:math:`h^2, h^4, \dots`) have at most 20 units together. Otherwise:

    - :meth:`mean_field`: the fully factorized posterior :math:`q(h \mid v) = \prod_l
      \prod_j \mu_{l,j}^{h}(1-\mu_{l,j})^{1-h}` by fixed-point updates
      :math:`\mu_l = \sigma(b_l + W_{l-1}^\top \mu_{l-1} + W_l \mu_{l+1})`;
    - :meth:`variational_free_energy`: :math:`E(v, \mu) - \mathcal H(q) \ge F(v)` (the energy
      is linear in each layer, so :math:`\mathbb E_q[E] = E(v, \mu)`), and
      :meth:`log_likelihood_lower_bound`: :math:`\log p(v) \ge -(E(v,\mu) - \mathcal H(q))
      - \log Z`, with ``log Z`` exact, attached or an AIS estimate;
    - ``log_partition(method="ais")``: AIS over the even layers with the odd layers summed out
      (Salakhutdinov and Hinton 2009, section 4), a
      :class:`~pyrogen.distributions.BipartitePath`.

    ``log_prob`` is exact when both ``F`` and ``log Z`` are, and raises otherwise (use the
    lower bound). Train with :class:`~pyrogen.infer.MeanFieldPCD`.

    Shapes:
        weights: entry ``l`` is ``(*batch, n_l, n_{l+1})``.
        biases: entry ``l`` is ``(*batch, n_l)``.
        values: ``(*sample, *batch, n_0)``; hidden layer ``l`` is ``(*sample, *batch, n_l)``.
    Args:
        weights: :math:`W_0, \dots, W_{L-1}` (``L >= 2``).
        biases: :math:`b_0, \dots, b_L`.
        num_gibbs_steps: block-Gibbs sweeps per ``sample`` when exact sampling is impossible.
        num_mean_field_steps: fixed-point sweeps of :meth:`mean_field` (>= 1).
        log_partition: an estimate of ``log Z`` (nats) to attach.
        validate_args: validation of values.
    Raises:
        ValueError: fewer than two hidden layers, sizes that do not chain, ``len(biases) !=
            len(weights) + 1``, counts below 1; ``log_prob``/``free_energy`` beyond the
            enumerable sizes.
    References:
        Salakhutdinov, Hinton (2009). Deep Boltzmann Machines. AISTATS.
        http://proceedings.mlr.press/v5/salakhutdinov09a.html
    Example:
        >>> dbm = DeepBoltzmannMachine([torch.randn(4, 3), torch.randn(3, 2)],
        ...                            [torch.zeros(4), torch.zeros(3), torch.zeros(2)])
        >>> states = torch.cartesian_prod(*[torch.tensor([0.0, 1.0])] * 4)
        >>> round(float(dbm.log_prob(states).exp().sum()), 6)
        1.0
    """

    arg_constraints: ClassVar[dict] = {}
    support = constraints.independent(constraints.boolean, 1)
    has_enumerate_support = True

    def __init__(
        self,
        weights: Sequence[torch.Tensor],
        biases: Sequence[torch.Tensor],
        *,
        num_gibbs_steps: int = 1000,
        num_mean_field_steps: int = 30,
        log_partition=None,
        validate_args: bool | None = None,
    ) -> None:
        weights, biases = list(weights), list(biases)
        if len(weights) < 2:
            raise ValueError(
                f"a DeepBoltzmannMachine needs at least 2 hidden layers (2 weights), got "
                f"{len(weights)}; use BernoulliRBM for one"
            )
        if len(biases) != len(weights) + 1:
            raise ValueError(
                f"biases must have len(weights) + 1 = {len(weights) + 1} entries, got {len(biases)}"
            )
        for i, w in enumerate(weights):
            if not isinstance(w, torch.Tensor) or w.dim() < 2:
                raise ValueError(f"weights[{i}] must be a (*batch, n_l, n_l+1) tensor")
        sizes = [weights[0].shape[-2]] + [w.shape[-1] for w in weights]
        for i in range(1, len(weights)):
            if weights[i].shape[-2] != sizes[i]:
                raise ValueError(
                    f"weights[{i}] has {weights[i].shape[-2]} rows but layer {i} has "
                    f"{sizes[i]} units (weights[{i - 1}] columns)"
                )
        params = {f"weights[{i}]": w for i, w in enumerate(weights)}
        params.update({f"biases[{i}]": b for i, b in enumerate(biases)})
        shapes = {f"weights[{i}]": (sizes[i], sizes[i + 1]) for i in range(len(weights))}
        shapes.update({f"biases[{i}]": (n,) for i, n in enumerate(sizes)})
        params, batch_shape = broadcast_params(params, shapes)
        self.weights = [params[f"weights[{i}]"] for i in range(len(weights))]
        self.biases = [params[f"biases[{i}]"] for i in range(len(biases))]
        self.layer_sizes = tuple(int(n) for n in sizes)
        self.num_gibbs_steps = check_count(num_gibbs_steps, "num_gibbs_steps")
        self.num_mean_field_steps = check_count(num_mean_field_steps, "num_mean_field_steps")
        super().__init__(
            batch_shape,
            torch.Size([sizes[0]]),
            log_partition=log_partition,
            validate_args=validate_args,
        )

    @property
    def like(self) -> torch.Tensor:
        return self.weights[0]

    @property
    def num_layers(self) -> int:
        """Number of hidden layers ``L``."""
        return len(self.weights)

    # -- energies and conditionals --------------------------------------------------------

    def layer_input(self, states: Sequence[torch.Tensor | None], k: int) -> torch.Tensor:
        """Total input :math:`b_k + W_{k-1}^\\top h^{k-1} + W_k h^{k+1}` to layer ``k`` (logits
        of its conditional), from the neighbouring entries of ``states`` (``[v, h1, ...]``)."""
        total = self.biases[k]
        if k > 0:
            total = total + _up(self.weights[k - 1], states[k - 1])
        if k < self.num_layers:
            total = total + _down(self.weights[k], states[k + 1])
        return total

    def energy(self, v: torch.Tensor, *hidden: torch.Tensor) -> torch.Tensor:
        """:math:`E(v, h^1, \\dots, h^L)` in nats (means may replace binary states, giving
        :math:`\\mathbb E_q[E]`), shape: the broadcast batch shape of the states."""
        if len(hidden) != self.num_layers:
            raise ValueError(f"energy needs {self.num_layers} hidden layers, got {len(hidden)}")
        states = (v, *hidden)
        e = sum(-(self.biases[k] * s).sum(-1) for k, s in enumerate(states))
        for k in range(self.num_layers):
            e = e - (_up(self.weights[k], states[k]) * states[k + 1]).sum(-1)
        return e

    def _group(self, parity: int) -> list[int]:
        return list(range(parity, self.num_layers + 1, 2))

    def _split(self, x: torch.Tensor, layers: list[int]) -> dict[int, torch.Tensor]:
        sizes = [self.layer_sizes[k] for k in layers]
        return dict(zip(layers, x.split(sizes, -1), strict=True))

    def _group_log_marginal(self, x: torch.Tensor, parity: int, fixed=None) -> torch.Tensor:
        """:math:`\\log \\sum_{\\text{other group}} e^{-E}` for the concatenated states ``x`` of
        the layers of ``parity`` (``fixed``: layers given separately, e.g. ``{0: v}``)."""
        layers = [k for k in self._group(parity) if fixed is None or k not in fixed]
        states: list = [None] * (self.num_layers + 1)
        for k, s in {**(fixed or {}), **self._split(x, layers)}.items():
            states[k] = s
        total = sum((self.biases[k] * states[k]).sum(-1) for k in self._group(parity))
        for k in self._group(1 - parity):
            total = total + F.softplus(self.layer_input(states, k)).sum(-1)
        return total

    @property
    def has_exact_free_energy(self) -> bool:
        return sum(self.layer_sizes[2::2]) <= self.max_enumerable_units

    def free_energy(self, v: torch.Tensor) -> torch.Tensor:
        """Exact :math:`F(v) = -\\log \\sum_h e^{-E(v,h)}` in nats by enumerating the even hidden
        layers (odd ones summed out), shape ``(*sample, *batch)``.

        Raises:
            ValueError: the even hidden layers have more than ``max_enumerable_units`` units
                (use :meth:`variational_free_energy`, an upper bound).
        """
        if not self.has_exact_free_energy:
            raise ValueError(
                f"the exact free energy needs 2**{sum(self.layer_sizes[2::2])} states; use "
                "variational_free_energy(v) (an upper bound) or log_likelihood_lower_bound(v)"
            )
        n = sum(self.layer_sizes[2::2])
        lead = max(v.dim() - 1, len(self.batch_shape))
        return -enumerated_logsumexp(
            lambda x: self._group_log_marginal(x, 0, {0: v}), n, self.like, batch_dims=lead
        )

    @property
    def has_exact_log_partition(self) -> bool:
        return min(self._group_size(0), self._group_size(1)) <= self.max_enumerable_units

    def _group_size(self, parity: int) -> int:
        return sum(self.layer_sizes[k] for k in self._group(parity))

    def _smaller_group(self) -> int:
        return 0 if self._group_size(0) <= self._group_size(1) else 1

    def exact_log_partition(self) -> torch.Tensor:
        """:math:`\\log Z` by enumerating the smaller of the even / odd groups of layers.

        Raises:
            ValueError: both groups have more than ``max_enumerable_units`` units.
        """
        if not self.has_exact_log_partition:
            raise ValueError(
                "the DBM is too large for an exact log Z; use log_partition(method='ais')"
            )
        parity = self._smaller_group()
        n = self._group_size(parity)
        return enumerated_logsumexp(lambda x: self._group_log_marginal(x, parity), n, self.like)

    # -- inference and sampling -----------------------------------------------------------

    def mean_field(self, v: torch.Tensor, num_steps: int | None = None) -> list[torch.Tensor]:
        """Mean-field posterior means :math:`[\\mu_1, \\dots, \\mu_L]` of :math:`q(h \\mid v)`:
        a bottom-up pass (weights into each layer below the top doubled, as the recognition
        pass of Salakhutdinov and Hinton 2009) then ``num_steps`` sweeps of the fixed-point
        updates, odd layers then even layers. Shapes: ``(*sample, *batch, n_l)``."""
        num_steps = self.num_mean_field_steps if num_steps is None else num_steps
        check_count(num_steps, "num_steps", minimum=0)
        v, _ = self._checked_value(v, self.parameter_batch_shape)
        states = [v]
        for k in range(1, self.num_layers + 1):
            factor = 2.0 if k < self.num_layers else 1.0
            states.append(
                torch.sigmoid(self.biases[k] + factor * _up(self.weights[k - 1], states[-1]))
            )
        states[0] = v.expand(torch.broadcast_shapes(v.shape, states[1].shape[:-1] + v.shape[-1:]))
        for _ in range(num_steps):
            for parity in (1, 0):
                for k in self._group(parity):
                    if k:
                        states[k] = torch.sigmoid(self.layer_input(states, k))
        return states[1:]

    def variational_free_energy(self, v: torch.Tensor, mu=None) -> torch.Tensor:
        """:math:`E(v, \\mu) - \\mathcal H(q) \\ge F(v)` in nats (``mu`` from :meth:`mean_field`
        unless given), shape ``broadcast(v.shape[:-1], batch_shape)``.

        Raises:
            ValueError: ``v`` of the wrong width, or (with validation on) not binary.
        """
        v, shape = self._checked_value(v)
        mu = self.mean_field(v) if mu is None else mu
        value = self.energy(v, *mu) - sum(_bernoulli_entropy(m) for m in mu)
        return value.expand(shape)

    def log_likelihood_lower_bound(self, v: torch.Tensor, log_partition=None) -> torch.Tensor:
        """The variational bound :math:`-(E(v,\\mu) - \\mathcal H(q)) - \\log Z \\le \\log p(v)`
        in nats, shape ``broadcast(v.shape[:-1], batch_shape)``, with ``log_partition`` (a
        number, a tensor broadcastable to ``batch_shape`` or an ``AISEstimate``) or else the
        exact / attached ``log Z`` (an estimate of ``log Z`` makes the bound an estimate too).

        Raises:
            ValueError: ``v`` of the wrong width, or (with validation on) not binary; a
                non-finite ``log_partition``; no ``log Z`` to use.
        """
        log_z = (
            self._normalizer()
            if log_partition is None
            else self._checked_log_partition(log_partition)
        )
        return -self.variational_free_energy(v) - log_z

    def gibbs_step(self, states: list[torch.Tensor]) -> list[torch.Tensor]:
        """One block-Gibbs sweep over ``[v, h1, ..., hL]``: odd layers given even, then even."""
        states = list(states)
        for parity in (1, 0):
            for k in self._group(parity):
                states[k] = torch.bernoulli(torch.sigmoid(self.layer_input(states, k)))
        return states

    def gibbs_chain(self, states: list[torch.Tensor], num_steps: int) -> list[torch.Tensor]:
        """``num_steps`` block-Gibbs sweeps from full states ``[v, h1, ..., hL]`` (no grad)."""
        check_count(num_steps, "num_steps", minimum=0)
        with torch.no_grad():
            for _ in range(num_steps):
                states = self.gibbs_step(states)
        return states

    def markov_chain(self, value: torch.Tensor, num_steps: int) -> torch.Tensor:
        """Block Gibbs from the visible ``value`` (hidden layers started at binary draws of
        the mean-field posterior); returns the final visible state.

        Raises:
            ValueError: ``num_steps < 0``; ``value`` of the wrong width or, with validation
                on, not binary.
        """
        check_count(num_steps, "num_steps", minimum=0)
        with torch.no_grad():
            v, _ = self._checked_value(value.detach(), self.parameter_batch_shape)
            hidden = [torch.bernoulli(m) for m in self.mean_field(v, 0)]
            v = v.expand(hidden[0].shape[:-1] + v.shape[-1:])
            return self.gibbs_chain([v, *hidden], num_steps)[0]

    def sample(self, sample_shape: tuple[int, ...] = ()) -> torch.Tensor:
        """Exact draws when a group of layers is enumerable (that group from its marginal,
        then the other given it), otherwise ``num_gibbs_steps`` sweeps from uniform states.

        Shapes:
            returns ``sample_shape + batch_shape + (n_0,)``.
        """
        shape = torch.Size(sample_shape)
        full = shape + self.batch_shape
        if full.numel() == 0:
            return self.like.new_zeros(full + self.event_shape)
        with torch.no_grad():
            if not self.has_exact_log_partition:
                states = [
                    torch.bernoulli(self.like.new_full((*full, n), 0.5)) for n in self.layer_sizes
                ]
                return self.gibbs_chain(states, self.num_gibbs_steps)[0]
            parity = self._smaller_group()
            n = self._group_size(parity)
            x = sample_enumerated(
                lambda s: self._group_log_marginal(s, parity), n, shape, self.batch_shape, self.like
            )
            states: list = [None] * (self.num_layers + 1)
            for k, s in self._split(x, self._group(parity)).items():
                states[k] = s
            for k in self._group(1 - parity):
                states[k] = torch.bernoulli(torch.sigmoid(self.layer_input(states, k)))
            return states[0]

    def annealing_path(self, *, data=None, base_visible_bias=None) -> BipartitePath:
        """AIS over the even layers (``v``, :math:`h^2`, ...) with the odd layers summed out:
        base independent units (visible biases ``base_visible_bias``, else the base rate of
        ``data``, else 0; even hidden biases 0); block-Gibbs transitions."""
        even, odd = self._group(0), self._group(1)
        v_shape = torch.Size((*self.batch_shape, self.layer_sizes[0]))
        base = [base_rate_bias(data, base_visible_bias, v_shape, self.like)]
        base += [self.like.new_zeros((*self.batch_shape, self.layer_sizes[k])) for k in even[1:]]

        def cat(layers):
            return torch.cat([self.biases[k].expand((*self.batch_shape, -1)) for k in layers], -1)

        def inputs(x, from_layers, to_layers):
            states: list = [None] * (self.num_layers + 1)
            for k, s in self._split(x, from_layers).items():
                states[k] = s
            out = [self.layer_input(states, k) - self.biases[k] for k in to_layers]
            return torch.cat(out, -1)

        return BipartitePath(
            torch.cat(base, -1),
            cat(even),
            cat(odd),
            lambda x: inputs(x, even, odd),
            lambda h: inputs(h, odd, even),
        )
