"""Annealed importance sampling (AIS) of partition functions, written once against the
:class:`AnnealingPath` interface that every energy model provides."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from pyrogen.distributions.base import AISEstimate
from pyrogen.util import bernoulli_draw, check_count, progress_bar

__all__ = [
    "AnnealingPath",
    "BipartitePath",
    "annealed_importance_sampling",
    "base_rate_bias",
    "salakhutdinov_schedule",
]


def salakhutdinov_schedule(num_betas: int, like: torch.Tensor) -> torch.Tensor:
    """Inverse temperatures :math:`0 = \\beta_0 < \\dots < \\beta_K = 1` spaced uniformly on
    [0, 0.5], [0.5, 0.9] and [0.9, 1] with 500 : 4000 : 10000 of the steps (Salakhutdinov and
    Murray 2008 use exactly 500, 4000 and 10000).

    Shapes:
        returns ``(num_betas + 1,)``.
    Raises:
        ValueError: ``num_betas < 3``.
    """
    check_count(num_betas, "num_betas", minimum=3)
    n1 = max(1, round(num_betas * 500 / 14500))
    n2 = max(1, round(num_betas * 4000 / 14500))
    n3 = max(1, num_betas - n1 - n2)
    parts = [
        torch.linspace(0.0, 0.5, n1 + 1, dtype=like.dtype, device=like.device)[:-1],
        torch.linspace(0.5, 0.9, n2 + 1, dtype=like.dtype, device=like.device)[:-1],
        torch.linspace(0.9, 1.0, n3 + 1, dtype=like.dtype, device=like.device),
    ]
    return torch.cat(parts)


def base_rate_bias(
    data: torch.Tensor | None,
    base_bias: torch.Tensor | None,
    shape: torch.Size,
    like: torch.Tensor,
) -> torch.Tensor:
    """Biases :math:`b_A` of an independent-Bernoulli AIS base model, shape ``shape``:
    ``base_bias`` if given, else the logits of ``data``'s mean activations (the base-rate model
    of Salakhutdinov and Murray 2008, clamped to [0.001, 0.999]), else zeros."""
    n = shape[-1]
    if base_bias is not None:
        try:
            base_bias = torch.as_tensor(base_bias).to(dtype=like.dtype, device=like.device)
        except (TypeError, ValueError, RuntimeError) as e:
            raise TypeError(
                f"base_visible_bias must be a tensor broadcastable to {tuple(shape)}, got "
                f"{type(base_bias).__name__}"
            ) from e
        if not bool(torch.isfinite(base_bias).all()):
            raise ValueError("base_visible_bias contains non-finite values (nan or inf)")
        try:
            return base_bias.expand(shape)
        except RuntimeError as e:
            raise ValueError(
                f"base_visible_bias of shape {tuple(base_bias.shape)} does not broadcast to "
                f"{tuple(shape)}"
            ) from e
    if data is not None:
        if not isinstance(data, torch.Tensor) or data.dim() < 1 or data.shape[-1] != n:
            got = tuple(data.shape) if isinstance(data, torch.Tensor) else type(data).__name__
            raise ValueError(f"data must have shape (N, {n}), got {got}")
        if data.numel() == 0 or not bool(((data >= 0) & (data <= 1)).all()):
            raise ValueError(
                "data must be a non-empty tensor of activations in [0, 1] (binary data or "
                "probabilities)"
            )
        mean = data.reshape(-1, n).to(like).mean(0).clamp(1e-3, 1 - 1e-3)
        return torch.logit(mean).expand(shape)
    return like.new_zeros(shape)


class AnnealingPath:
    r"""The interface AIS needs: a chain of unnormalized densities :math:`f_\beta`,
    :math:`\beta \in [0, 1]`, from a base with known normalizer (:math:`\beta = 0`) to the
    model (:math:`\beta = 1`), and a Markov kernel leaving each :math:`f_\beta` invariant.

    Every energy model returns one from ``annealing_path``; states ``x`` are whatever the path
    anneals over (visible units, or the even layers of a layered model).

    Shapes:
        ``sample_base(num_chains)``: ``(num_chains, *batch, *state)``;
        ``log_f(x, beta)``: ``(num_chains, *batch)``; ``base_log_partition()``: ``batch``.
    """

    def base_log_partition(self) -> torch.Tensor:
        r""":math:`\log Z_0` of :math:`f_0`, nats."""
        raise NotImplementedError

    def sample_base(self, num_chains: int) -> torch.Tensor:
        """Exact draws from :math:`f_0 / Z_0`."""
        raise NotImplementedError

    def log_f(self, x: torch.Tensor, beta) -> torch.Tensor:
        r""":math:`\log f_\beta(x)`, nats."""
        raise NotImplementedError

    def transition(self, x: torch.Tensor, beta) -> torch.Tensor:
        r"""One Markov step leaving :math:`f_\beta` invariant."""
        raise NotImplementedError


class BipartitePath(AnnealingPath):
    r"""Annealing path of a binary model whose units split into two groups, ``even`` and
    ``odd``, with no connections inside a group (an RBM: visible / hidden; a deep Boltzmann
    machine: even / odd layers). The odd units are summed out analytically:

    .. math::
        \log f_\beta(x) = (1-\beta)\, b_A^\top x + \beta\, b_e^\top x +
        \sum_j \operatorname{softplus}\big(\beta\, (b_o + \text{odd_input}(x))_j\big),

    where :math:`x` are the even units; :math:`\beta = 0` is independent Bernoullis with
    biases :math:`b_A` on the even units and uniform odd units, :math:`\beta = 1` the model's
    marginal of the even units (Salakhutdinov and Murray 2008; Salakhutdinov and Hinton 2009).
    The kernel is one block-Gibbs sweep: odd units given even, then even given odd.

    Args:
        base_bias: :math:`b_A`, ``(*batch, n_even)``.
        even_bias, odd_bias: :math:`b_e` ``(*batch, n_even)``, :math:`b_o` ``(*batch, n_odd)``.
        odd_input: even states ``(..., n_even)`` -> input to the odd units ``(..., n_odd)``.
        even_input: odd states -> input to the even units.
    """

    def __init__(self, base_bias, even_bias, odd_bias, odd_input, even_input) -> None:
        self.base_bias, self.even_bias, self.odd_bias = base_bias, even_bias, odd_bias
        self.odd_input, self.even_input = odd_input, even_input

    def base_log_partition(self) -> torch.Tensor:
        n_odd = self.odd_bias.shape[-1]
        return F.softplus(self.base_bias).sum(-1) + n_odd * math.log(2.0)

    def sample_base(self, num_chains: int) -> torch.Tensor:
        probs = torch.sigmoid(self.base_bias).expand((num_chains, *self.base_bias.shape))
        return torch.bernoulli(probs)

    def log_f(self, x: torch.Tensor, beta) -> torch.Tensor:
        linear = ((1 - beta) * self.base_bias + beta * self.even_bias) * x
        odd = F.softplus(beta * (self.odd_bias + self.odd_input(x)))
        return linear.sum(-1) + odd.sum(-1)

    def transition(self, x: torch.Tensor, beta) -> torch.Tensor:
        h = bernoulli_draw(torch.sigmoid(beta * (self.odd_bias + self.odd_input(x))))
        logits = (1 - beta) * self.base_bias + beta * (self.even_bias + self.even_input(h))
        return bernoulli_draw(torch.sigmoid(logits).expand(x.shape))


@torch.no_grad()
def annealed_importance_sampling(
    model,
    *,
    num_chains: int = 100,
    num_betas: int = 14500,
    data: torch.Tensor | None = None,
    base_visible_bias: torch.Tensor | None = None,
    progress: bool | None = None,
) -> AISEstimate:
    r"""Estimate :math:`\log Z` of an energy model by annealed importance sampling.

    What it computes (Neal 2001): ``num_chains`` independent chains start from a tractable
    base model :math:`p_A` (independent units with biases :math:`b_A`, known :math:`Z_A`) and
    move through intermediate distributions :math:`f_{\beta_k}` (the model's
    ``annealing_path``, an :class:`AnnealingPath`; for RBMs and deep Boltzmann machines the
    :class:`BipartitePath` of Salakhutdinov and Murray 2008), one Markov transition
    leaving :math:`f_{\beta_k}` invariant per step; the weights
    :math:`\log w = \sum_k \log f_{\beta_k}(x_{k-1}) - \log f_{\beta_{k-1}}(x_{k-1})` give
    :math:`\hat Z = Z_A \cdot \operatorname{mean}(w)`, an unbiased estimate of ``Z``. The
    inverse temperatures follow :func:`salakhutdinov_schedule`. With ``data``, the base biases
    are the *base-rate* model: the logits of the data's mean activations (Salakhutdinov and
    Murray's initialization), which starts the chains near the data and reduces variance.

    Cost: ``num_betas`` transitions of ``num_chains`` chains (two matrix products each for an
    RBM; ``n`` single-unit updates for a Boltzmann machine).

    Shapes:
        data: ``(N, n)`` visible training data (optional). Returned tensors: ``batch_shape``
        (``log_weights``: ``(num_chains, *batch_shape)``).
    Args:
        model: an :class:`~pyrogen.distributions.EnergyModel` (anything with
            ``annealing_path(data=..., base_visible_bias=...)``), or an
            :class:`AnnealingPath` itself.
        num_chains: independent AIS runs (> 0).
        num_betas: annealing steps (>= 3).
        data: visible data for the base-rate initialization.
        base_visible_bias: explicit base biases :math:`b_A` (overrides ``data``).
        progress: a tqdm bar over the annealing steps (``None``: only when stderr is a
            terminal; ``False``: never).
    Raises:
        ValueError: ``num_chains < 1`` or ``num_betas < 3``.
        NotImplementedError: a model without an annealing path (a Gaussian-Bernoulli RBM).
    References:
        Neal (2001). Annealed Importance Sampling. https://doi.org/10.1023/A:1008923215028
        Salakhutdinov, Murray (2008). On the Quantitative Analysis of Deep Belief Networks.
        https://doi.org/10.1145/1390156.1390266
    Example:
        >>> from pyrogen.distributions import BernoulliRBM
        >>> rbm = BernoulliRBM(0.1 * torch.randn(6, 4), torch.zeros(6), torch.zeros(4))
        >>> est = rbm.log_partition(method="ais", num_chains=50, num_betas=300)
        >>> bool(abs(est.log_partition - rbm.log_partition()) < 0.05)
        True
    """
    check_count(num_chains, "num_chains")
    if isinstance(model, AnnealingPath):
        if data is not None or base_visible_bias is not None:
            raise ValueError("data and base_visible_bias apply to a model, not to a path")
        path = model
    else:
        path = model.annealing_path(data=data, base_visible_bias=base_visible_bias)
    base_log_z = path.base_log_partition()
    betas = salakhutdinov_schedule(num_betas, base_log_z)
    x = path.sample_base(num_chains)
    log_w = 0.0
    steps = progress_bar(range(1, len(betas)), progress=progress, desc="AIS")
    for k in steps:
        log_w = log_w + (path.log_f(x, betas[k]) - path.log_f(x, betas[k - 1]))
        if k < len(betas) - 1:
            x = path.transition(x, betas[k])
    lse1 = torch.logsumexp(log_w, 0)
    lse2 = torch.logsumexp(2 * log_w, 0)
    estimate = base_log_z + lse1 - math.log(num_chains)
    rel_var = (lse2 - 2 * lse1 + math.log(num_chains)).exp() - 1
    stderr = (rel_var.clamp(min=0) / num_chains).sqrt()
    return AISEstimate(estimate, stderr, log_w)
