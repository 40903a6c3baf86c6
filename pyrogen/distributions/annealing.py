"""Annealed importance sampling (AIS) of the partition function of binary energy models."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from pyrogen.distributions.base import AISEstimate
from pyrogen.util import check_count

__all__ = ["annealed_importance_sampling", "salakhutdinov_schedule"]


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


def _base_bias(model, data: torch.Tensor | None, base_visible_bias: torch.Tensor | None):
    like = model._params()[0]
    n = model.event_shape[0]
    if base_visible_bias is not None:
        return torch.as_tensor(base_visible_bias, dtype=like.dtype, device=like.device).expand(
            (*model.batch_shape, n)
        )
    if data is not None:
        mean = data.reshape(-1, n).to(like).mean(0).clamp(1e-3, 1 - 1e-3)
        return torch.logit(mean).expand((*model.batch_shape, n))
    return like.new_zeros((*model.batch_shape, n))


class RBMPath:
    """Annealing path of Salakhutdinov and Murray (2008) for a Bernoulli RBM: from the
    independent-visible base model with biases ``b_A`` (hidden units free) to the RBM,
    :math:`\\log f_\\beta(v) = (1-\\beta) b_A^\\top v + \\beta b^\\top v + \\sum_j
    \\operatorname{softplus}(\\beta (c_j + (v^\\top W)_j))`, with block Gibbs transitions."""

    def __init__(self, rbm, base_bias: torch.Tensor) -> None:
        self.rbm, self.base_bias = rbm, base_bias

    def base_log_partition(self) -> torch.Tensor:
        return F.softplus(self.base_bias).sum(-1) + self.rbm.n_hidden * math.log(2.0)

    def sample_base(self, num_chains: int) -> torch.Tensor:
        probs = torch.sigmoid(self.base_bias).expand((num_chains, *self.base_bias.shape))
        return torch.bernoulli(probs)

    def log_f(self, v: torch.Tensor, beta) -> torch.Tensor:
        rbm = self.rbm
        linear = ((1 - beta) * self.base_bias + beta * rbm.visible_bias) * v
        return linear.sum(-1) + F.softplus(beta * (rbm.hidden_bias + rbm._visible_input(v))).sum(-1)

    def transition(self, v: torch.Tensor, beta) -> torch.Tensor:
        rbm = self.rbm
        h = torch.bernoulli(torch.sigmoid(beta * (rbm.hidden_bias + rbm._visible_input(v))))
        logits = (1 - beta) * self.base_bias + beta * (rbm.visible_bias + rbm._hidden_input(h))
        return torch.bernoulli(torch.sigmoid(logits))


class BoltzmannPath:
    """Geometric path from independent units with biases ``b_A`` to a Boltzmann machine:
    :math:`\\log f_\\beta(y) = (1-\\beta) b_A^\\top y - \\beta E(y)`, Gibbs-sweep transitions."""

    def __init__(self, bm, base_bias: torch.Tensor) -> None:
        self.bm, self.base_bias = bm, base_bias

    def base_log_partition(self) -> torch.Tensor:
        return F.softplus(self.base_bias).sum(-1)

    def sample_base(self, num_chains: int) -> torch.Tensor:
        probs = torch.sigmoid(self.base_bias).expand((num_chains, *self.base_bias.shape))
        return torch.bernoulli(probs)

    def log_f(self, y: torch.Tensor, beta) -> torch.Tensor:
        return (1 - beta) * (self.base_bias * y).sum(-1) - beta * self.bm.energy(y)

    def transition(self, y: torch.Tensor, beta) -> torch.Tensor:
        bm = self.bm
        y = y.clone()
        for i in range(bm.num_units):
            field = bm.bias[..., i] + (bm.weight[..., i, :] * y).sum(-1)
            logits = (1 - beta) * self.base_bias[..., i] + beta * field
            y[..., i] = torch.bernoulli(torch.sigmoid(logits))
        return y


@torch.no_grad()
def annealed_importance_sampling(
    model,
    *,
    num_chains: int = 100,
    num_betas: int = 14500,
    data: torch.Tensor | None = None,
    base_visible_bias: torch.Tensor | None = None,
) -> AISEstimate:
    r"""Estimate :math:`\log Z` of a binary energy model by annealed importance sampling.

    What it computes (Neal 2001): ``num_chains`` independent chains start from a tractable
    base model :math:`p_A` (independent units with biases :math:`b_A`, known :math:`Z_A`) and
    move through intermediate distributions :math:`f_{\beta_k}` (the path of Salakhutdinov and
    Murray 2008 for RBMs: base and model terms mixed by :math:`\beta`), one Markov transition
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
        model: a :class:`~pyrogen.distributions.BernoulliRBM` or
            :class:`~pyrogen.distributions.BoltzmannMachine`.
        num_chains: independent AIS runs (> 0).
        num_betas: annealing steps (>= 3).
        data: visible data for the base-rate initialization.
        base_visible_bias: explicit base biases :math:`b_A` (overrides ``data``).
    Raises:
        ValueError: ``num_chains < 1`` or ``num_betas < 3``.
        NotImplementedError: a model without an AIS path (e.g. a Gaussian-Bernoulli RBM).
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
    path = model._ais_path(_base_bias(model, data, base_visible_bias))
    betas = salakhutdinov_schedule(num_betas, model._params()[0])
    x = path.sample_base(num_chains)
    log_w = torch.zeros(x.shape[:-1], dtype=betas.dtype, device=betas.device)
    for k in range(1, len(betas)):
        log_w += path.log_f(x, betas[k]) - path.log_f(x, betas[k - 1])
        if k < len(betas) - 1:
            x = path.transition(x, betas[k])
    lse1 = torch.logsumexp(log_w, 0)
    lse2 = torch.logsumexp(2 * log_w, 0)
    estimate = path.base_log_partition() + lse1 - math.log(num_chains)
    rel_var = (lse2 - 2 * lse1 + math.log(num_chains)).exp() - 1
    stderr = (rel_var.clamp(min=0) / num_chains).sqrt()
    return AISEstimate(estimate, stderr, log_w)
