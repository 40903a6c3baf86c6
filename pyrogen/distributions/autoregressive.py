"""MADE as a distribution over binary or categorical vectors, with order-agnostic ensembles."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

import torch
from pyro.distributions import TorchDistribution, constraints

from pyrogen.distributions.base import (
    check_context,
    check_expand,
    conditional_log_prob,
    discrete_log_prob,
    discrete_support,
)
from pyrogen.nn.networks import MADE as _MADE
from pyrogen.nn.networks import check_mask_index
from pyrogen.util import check_count

__all__ = ["MADE", "MADENetwork"]


class MADENetwork(_MADE):
    r"""The MADE network (:class:`pyrogen.nn.MADE`) set up for :class:`MADE` distributions over
    binary or categorical vectors: several (ordering, connectivity) mask sets for
    order-agnostic training (Germain et al. 2015, section 4.2; Uria et al. 2014), random
    hidden degrees, ReLU units, and logits returned variable-major.

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
        check_count(input_dim, "input_dim")
        hidden_dims = [check_count(h, "hidden_dims entries") for h in hidden_dims]
        check_count(num_categories, "num_categories", minimum=2)
        check_count(num_masks, "num_masks")
        check_count(context_dim, "context_dim", minimum=0)
        self.num_categories = num_categories
        self.num_logits = 1 if num_categories == 2 else num_categories
        super().__init__(
            input_dim,
            hidden_dims,
            num_params=self.num_logits,
            order="natural" if natural_first else "random",
            context_dim=context_dim,
            degrees="random",
            num_masks=num_masks,
            seed=seed,
            input_categories=None if num_categories == 2 else num_categories,
        )
        self._register_load_state_dict_pre_hook(self._upgrade)

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        *,
        mask_index: int | torch.Tensor = 0,
    ) -> torch.Tensor:
        """Logits ``(*batch, D, num_logits)`` of every conditional under mask set
        ``mask_index``."""
        return super().forward(x, context, mask_index=mask_index).transpose(-1, -2)

    def forward_onehot(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        *,
        mask_index: int | torch.Tensor = 0,
    ) -> torch.Tensor:
        """As :meth:`forward`, with categorical inputs already one-hot encoded,
        ``(*batch, D, num_categories)`` (binary inputs: ``(*batch, D)``)."""
        if self.num_categories > 2:
            x = x.reshape(*x.shape[:-2], -1)
        return self.forward_features(x, context, mask_index=mask_index).transpose(-1, -2)

    def _upgrade(self, state_dict, prefix, *args) -> None:
        """Load a ``state_dict`` saved when the masks were ``mask0, mask1, ...`` buffers and
        the output rows variable-major."""
        layers = len(self.hidden)
        if prefix + f"mask{layers}" not in state_dict:
            return
        for i in range(layers):
            state_dict[prefix + f"hidden.{i}.mask"] = state_dict.pop(prefix + f"mask{i}")
        d, k = self.input_dim, self.num_logits
        rows = torch.arange(d * k).reshape(d, k).T.reshape(-1)  # param-major row -> old row
        state_dict[prefix + "output.mask"] = state_dict.pop(prefix + f"mask{layers}")[:, rows]
        for name in ("weight", "bias"):
            state_dict[prefix + f"output.{name}"] = state_dict[prefix + f"output.{name}"][rows]


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
        mask_index: which mask set, an integer in ``0..num_masks-1`` (an ``int``, a NumPy
            integer or a 0-d integer tensor such as ``torch.randint(net.num_masks, ())``;
            stored as an ``int``), or ``None``: the ensemble over all of them.
    Raises:
        ValueError: a ``mask_index`` out of range, a missing, unexpected or misshapen context;
            values of the wrong shape; with validation on, values outside
            ``0..num_categories-1``.
        TypeError: a ``mask_index`` that is not an integer (a bool, float, string, or a
            tensor that is not 0-d of an integer dtype); a context whose dtype differs from
            the network's.
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
        mask_index: int | torch.Tensor | None = None,
        validate_args: bool | None = None,
    ) -> None:
        if not isinstance(network, MADENetwork):
            raise TypeError(f"network must be a MADENetwork, got {type(network).__name__}")
        mask_index = check_mask_index(mask_index, network.num_masks, allow_none=True)
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
