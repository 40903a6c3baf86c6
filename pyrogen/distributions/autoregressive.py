"""MADE as a distribution over binary or categorical vectors, with order-agnostic ensembles."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import ClassVar

import torch
import torch.nn.functional as F
from pyro.distributions import TorchDistribution, constraints
from torch import nn

from pyrogen.distributions.base import (
    check_context,
    check_expand,
    conditional_log_prob,
    discrete_log_prob,
    discrete_support,
)
from pyrogen.util import check_count

__all__ = ["MADE", "MADENetwork"]


class MADENetwork(nn.Module):
    r"""A MADE network with several (ordering, connectivity) mask sets, for order-agnostic
    training (Germain et al. 2015, section 4.2; Uria et al. 2014).

    Mask set ``m`` draws an input ordering (set 0 is the natural order when
    ``natural_first``) and hidden-unit degrees uniformly from ``[min_prev, D - 1]`` with its own
    seed, so that output ``j`` depends only on the inputs before ``j`` in that ordering. The
    network outputs ``num_categories`` logits per variable (one logit for binary variables).

    Shapes:
        x: ``(*batch, D)`` (values in ``0..num_categories-1``).
        context: ``(*batch, context_dim)``.  returns: ``(*batch, D, num_logits)``.
    Args:
        input_dim: ``D``.
        hidden_dims: hidden layer sizes (each ``>= D - 1`` recommended).
        num_categories: 2 for binary vectors (Bernoulli conditionals), ``K > 2`` for
            categorical ones.
        num_masks: number of (ordering, connectivity) mask sets.
        context_dim: size of an unmasked context input (0: none).
        seed: seed of the mask draws (masks are buffers, saved in the ``state_dict``).
        natural_first: mask set 0 uses the natural order (else every set is random).
    Raises:
        ValueError: non-positive sizes or ``num_categories < 2``.
    References:
        Germain, Gregor, Murray, Larochelle (2015). MADE: Masked Autoencoder for Distribution
        Estimation. https://arxiv.org/abs/1502.03509
    Example:
        >>> net = MADENetwork(4, [16], num_masks=3)
        >>> net(torch.zeros(2, 4), mask_index=1).shape
        torch.Size([2, 4, 1])
    """

    def __init__(
        self,
        input_dim: int,
        hidden_dims: Sequence[int],
        *,
        num_categories: int = 2,
        num_masks: int = 1,
        context_dim: int = 0,
        seed: int = 0,
        natural_first: bool = True,
    ) -> None:
        super().__init__()
        check_count(input_dim, "input_dim")
        hidden_dims = [check_count(h, "hidden_dims entries") for h in hidden_dims]
        if not hidden_dims:
            raise ValueError("hidden_dims must have at least one layer")
        check_count(num_categories, "num_categories", minimum=2)
        check_count(num_masks, "num_masks")
        check_count(context_dim, "context_dim", minimum=0)
        self.input_dim, self.num_categories = input_dim, num_categories
        self.num_logits = 1 if num_categories == 2 else num_categories
        self.num_masks, self.context_dim = num_masks, context_dim
        in_features = input_dim * (1 if num_categories == 2 else num_categories)
        sizes = [in_features, *hidden_dims]
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(sizes))
        self.output = nn.Linear(hidden_dims[-1], input_dim * self.num_logits)
        self.context_layer = (
            nn.Linear(context_dim, hidden_dims[0], bias=False) if context_dim else None
        )
        g = torch.Generator().manual_seed(seed)
        orders, masks = [], [[] for _ in range(len(hidden_dims) + 1)]
        for m in range(num_masks):
            order = (
                torch.arange(input_dim)
                if (m == 0 and natural_first)
                else torch.randperm(input_dim, generator=g)
            )
            degree_in = torch.empty(input_dim, dtype=torch.long)
            degree_in[order] = torch.arange(1, input_dim + 1)
            degrees = [degree_in]
            for h in hidden_dims:
                low = min(int(degrees[-1].min()), input_dim - 1)
                degrees.append(torch.randint(low, max(input_dim, low + 1), (h,), generator=g))
            for i, (d_in, d_out) in enumerate(itertools.pairwise(degrees)):
                mask = (d_out[:, None] >= d_in[None, :]).float()
                if i == 0 and num_categories > 2:
                    mask = mask.repeat_interleave(num_categories, dim=1)
                masks[i].append(mask)
            out = (degree_in[:, None] > degrees[-1][None, :]).float()
            masks[-1].append(out.repeat_interleave(self.num_logits, dim=0))
            orders.append(order)
        for i, stack in enumerate(masks):
            self.register_buffer(f"mask{i}", torch.stack(stack))
        self.register_buffer("orders", torch.stack(orders))

    def forward(
        self, x: torch.Tensor, context: torch.Tensor | None = None, *, mask_index: int = 0
    ) -> torch.Tensor:
        """Logits ``(*batch, D, num_logits)`` of every conditional under mask set
        ``mask_index``."""
        if self.num_categories > 2:
            x = F.one_hot(x.long(), self.num_categories).to(self.output.weight.dtype)
        return self.forward_onehot(x, context, mask_index=mask_index)

    def forward_onehot(
        self, x: torch.Tensor, context: torch.Tensor | None = None, *, mask_index: int = 0
    ) -> torch.Tensor:
        """As :meth:`forward`, with categorical inputs already one-hot encoded,
        ``(*batch, D, num_categories)`` (binary inputs: ``(*batch, D)``)."""
        if self.num_categories > 2:
            x = x.reshape(*x.shape[:-2], -1)
        h = x
        for i, layer in enumerate(self.hidden):
            mask = getattr(self, f"mask{i}")[mask_index]
            h = F.linear(h, layer.weight * mask, layer.bias)
            if i == 0 and self.context_layer is not None:
                if context is None:
                    raise ValueError(
                        f"this network needs a context of shape (*batch, {self.context_dim})"
                    )
                h = h + self.context_layer(context)
            h = torch.relu(h)
        mask = getattr(self, f"mask{len(self.hidden)}")[mask_index]
        out = F.linear(h, self.output.weight * mask, self.output.bias)
        return out.reshape(*out.shape[:-1], self.input_dim, self.num_logits)


class MADE(TorchDistribution):
    r"""Autoregressive distribution over binary or categorical vectors computed by a MADE.

    What it computes: for mask set ``m`` with ordering :math:`\pi_m`,
    :math:`p_m(x) = \prod_j p(x_{\pi_m(j)} \mid x_{\pi_m(<j)})`, each conditional a Bernoulli
    (binary) or categorical read from the network's logits; all ``D`` conditionals come from one
    network pass, so ``log_prob`` costs one pass per mask set. With ``mask_index=None`` and
    several mask sets the distribution is the order-agnostic *ensemble*
    :math:`p(x) = \frac1M \sum_m p_m(x)` (a mixture, so it is normalized; Germain et al. 2015
    average the probabilities of the orderings at test time); with an integer ``mask_index``
    it is that one :math:`p_m`. ``sample`` is ancestral: ``D`` sequential network passes (for
    the ensemble, a mask set is drawn uniformly per sample first).

    Train order-agnostically by passing a random ``mask_index`` each step
    (``torch.randint(net.num_masks, ())``), and evaluate with ``mask_index=None``.

    Shapes:
        values: ``(*sample, *batch, D)``; ``context``: ``(*batch, context_dim)``;
        ``log_prob``: ``broadcast(value.shape[:-1], batch_shape)`` (the value broadcasts
        against the context, e.g. one image per data point against a context per particle and
        data point). Integer, boolean or other-precision values are converted to the
        network's dtype.
    Args:
        network: a :class:`MADENetwork`.
        context: its context, if it has one.
        mask_index: which mask set (``None``: the ensemble over all of them).
    Raises:
        ValueError: a ``mask_index`` out of range, a missing, unexpected or misshapen context;
            values of the wrong shape; with validation on, values outside
            ``0..num_categories-1``.
        TypeError: a context whose dtype differs from the network's.
    References:
        Germain, Gregor, Murray, Larochelle (2015). MADE: Masked Autoencoder for Distribution
        Estimation. https://arxiv.org/abs/1502.03509
    Example:
        >>> net = MADENetwork(3, [8], num_masks=2)
        >>> d = MADE(net)
        >>> states = torch.cartesian_prod(*[torch.tensor([0.0, 1.0])] * 3)
        >>> round(float(d.log_prob(states).exp().sum().detach()), 6)
        1.0
    """

    arg_constraints: ClassVar[dict] = {}
    has_rsample = False

    def __init__(
        self,
        network: MADENetwork,
        context: torch.Tensor | None = None,
        *,
        mask_index: int | None = None,
        validate_args: bool | None = None,
    ) -> None:
        if not isinstance(network, MADENetwork):
            raise TypeError(f"network must be a MADENetwork, got {type(network).__name__}")
        if mask_index is not None and not 0 <= int(mask_index) < network.num_masks:
            raise ValueError(
                f"mask_index must be in [0, {network.num_masks}) or None, got {mask_index!r}"
            )
        context = check_context(context, network.context_dim, network.output.weight, "MADE")
        self.network, self.context, self.mask_index = network, context, mask_index
        batch_shape = context.shape[:-1] if context is not None else torch.Size()
        super().__init__(batch_shape, torch.Size([network.input_dim]), validate_args=validate_args)

    @constraints.dependent_property
    def support(self):
        return discrete_support(self.network.num_categories, 1)

    @property
    def like(self) -> torch.Tensor:
        return self.network.output.weight

    def expand(self, batch_shape, _instance=None):
        """The same distribution with batch shape ``batch_shape`` (the context is not copied).

        Raises:
            ValueError: ``batch_shape`` is not an expansion of ``batch_shape``.
        """
        batch_shape = check_expand(self.batch_shape, batch_shape)
        new = self._get_checked_instance(MADE, _instance)
        new.network, new.mask_index, new.context = self.network, self.mask_index, self.context
        super(MADE, new).__init__(batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    def _log_prob_mask(self, x: torch.Tensor, context, m: int) -> torch.Tensor:
        logits = self.network(x, context, mask_index=m)
        return discrete_log_prob(logits, x, self.network.num_categories).sum(-1)

    def _log_prob(self, value: torch.Tensor, context) -> torch.Tensor:
        if self.mask_index is not None:
            return self._log_prob_mask(value, context, self.mask_index)
        masks = range(self.network.num_masks)
        stacked = torch.stack([self._log_prob_mask(value, context, m) for m in masks])
        return torch.logsumexp(stacked, 0) - math.log(self.network.num_masks)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """Exact log-probability in nats (one network pass per mask set used), shape
        ``broadcast(value.shape[:-1], batch_shape)``.

        Raises:
            ValueError: a value of the wrong shape; with validation on, outside the support.
        """
        validate = self._validate_sample if self._validate_args else None
        return conditional_log_prob(self, value, self._log_prob, validate)

    @torch.no_grad()
    def sample(self, sample_shape: tuple[int, ...] = ()) -> torch.Tensor:
        """Ancestral sampling: ``D`` network passes (per mask set in use)."""
        net = self.network
        shape = torch.Size(sample_shape) + self.batch_shape + self.event_shape
        like = net.output.weight
        x = torch.zeros(shape, dtype=like.dtype, device=like.device)
        if x.numel() == 0:
            return x
        if self.mask_index is not None:
            chosen = torch.full(shape[:-1], self.mask_index, device=like.device)
        else:
            chosen = torch.randint(net.num_masks, shape[:-1], device=like.device)
        for m in range(net.num_masks):
            rows = chosen == m
            if not bool(rows.any()):
                continue
            xm = x.clone()
            for j in net.orders[m].tolist():
                logits = net(xm, self.context, mask_index=m)[..., j, :]
                if net.num_categories == 2:
                    xm[..., j] = torch.bernoulli(torch.sigmoid(logits.squeeze(-1)))
                else:
                    xm[..., j] = torch.distributions.Categorical(logits=logits).sample().to(xm)
            x = torch.where(rows.unsqueeze(-1), xm, x)
        return x
