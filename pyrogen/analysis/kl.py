r"""Judge a flow fitted to a density or to samples: both KL divergences with standard errors,
``log Z`` by importance sampling, the effective sample size and the PSIS k-hat."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import pyro
import torch
from pyro.distributions.torch_distribution import TorchDistributionMixin

from pyrogen.analysis.posterior import psis_khat
from pyrogen.infer.kl import density_model
from pyrogen.util import check_count, check_real

__all__ = ["KLDiagnostic", "kl_diagnostics"]


@dataclass
class KLDiagnostic:
    r"""Result of :func:`kl_diagnostics` (all in nats except the counts and ratios).

    With :math:`w = \tilde p(x) / q(x)`, :math:`x \sim q`, and :math:`\tilde p = Z p`:

    Attributes:
        negative_elbo: :math:`E_q[-\log w] = \mathrm{KL}(q\,\|\,p) - \log Z`, the reverse-KL
            loss; ``negative_elbo_stderr`` its Monte Carlo standard error.
        log_partition_estimate: :math:`\log \hat Z = \log \frac1S \sum_s w_s`, the importance-
            sampling estimate (unbiased for ``Z``, a lower bound in expectation for ``log Z``);
            ``log_partition_stderr``: delta-method standard error
            :math:`\mathrm{sd}(w) / (\sqrt S\, \bar w)`, trustworthy only when ``khat < 0.7``.
        log_partition: the ``log Z`` used for the KLs: the exact one if given, else the estimate.
        reverse_kl: :math:`\mathrm{KL}(q\,\|\,p) = ` ``negative_elbo + log_partition``;
            ``reverse_kl_stderr`` (that of ``negative_elbo``; with an estimated ``log Z`` it
            ignores the estimate's own error).
        forward_kl: :math:`\mathrm{KL}(p\,\|\,q) = E_p[\log \tilde p - \log Z - \log q]` on the
            given samples of ``p`` (``None`` without them); ``forward_kl_stderr``.
        ess: Kish effective sample size of the raw weights, :math:`(\sum w)^2 / \sum w^2`;
            ``ess_fraction = ess / S`` (1 for a perfect fit).
        khat: PSIS Pareto shape of the weights' tail (``< 0.5`` good, ``> 0.7`` unreliable).
        num_samples: ``S``.
        log_weights: ``(S,)``, :math:`\log w_s`.
    """

    negative_elbo: float
    negative_elbo_stderr: float
    log_partition_estimate: float
    log_partition_stderr: float
    log_partition: float
    reverse_kl: float
    reverse_kl_stderr: float
    forward_kl: float | None
    forward_kl_stderr: float | None
    ess: float
    ess_fraction: float
    khat: float
    num_samples: int
    log_weights: torch.Tensor


def _mean_stderr(values: torch.Tensor) -> tuple[float, float]:
    values = values.detach().double()
    n = values.numel()
    return float(values.mean()), float(values.std() / math.sqrt(n)) if n > 1 else math.inf


def kl_diagnostics(
    q: torch.distributions.Distribution,
    log_density: Callable[[torch.Tensor], torch.Tensor],
    *,
    num_samples: int = 4000,
    log_partition: float | None = None,
    samples: torch.Tensor | None = None,
) -> KLDiagnostic:
    r"""Every number needed to judge a flow ``q`` against a target :math:`\tilde p` (nats).

    Draws ``S = num_samples`` points of ``q`` once, through the Pyro model/guide pair of a
    reverse-KL fit (:func:`pyrogen.infer.density_model` and a guide sampling ``q``), and hands
    their log weights :math:`\log w = \log \tilde p(x) - \log q(x)` to
    :func:`pyrogen.analysis.psis_khat` for the PSIS k-hat; the same weights give the negative
    ELBO, ``log Z`` by importance sampling and the ESS. With ``samples`` of :math:`p` it also
    estimates the forward KL (which needs the normalized :math:`\log p`: the exact
    ``log_partition`` if given, else the importance-sampling estimate).

    Shapes:
        draws of ``q``: ``(S, *event_shape)``.  samples: ``(N, *event_shape)``.
    Args:
        q: the fitted distribution (``batch_shape == ()``, e.g. a flow's
            ``TransformedDistribution``).
        log_density: ``log \tilde p``, ``(*batch, *event_shape) -> (*batch,)``, nats up to a
            constant (a target's ``unnormalized_log_prob``, or its normalized ``log_prob``
            with ``log_partition=0``).
        num_samples: ``S`` (a few thousand for a stable k-hat).
        log_partition: the exact ``log Z`` of ``log_density`` when known.
        samples: draws of the target, for the forward KL.
    Returns:
        :class:`KLDiagnostic`.
    Raises:
        ValueError: ``num_samples < 2``; ``q`` with a batch shape; ``samples`` of the wrong
            event shape; a non-finite ``log_partition``.
        TypeError: ``q`` not a Pyro distribution.
    References:
        Yao, Vehtari, Simpson, Gelman (2018). Yes, but Did It Work?: Evaluating Variational
        Inference. https://arxiv.org/abs/1802.02538
        Papamakarios, Nalisnick, Rezende, Mohamed, Lakshminarayanan (2021). Normalizing Flows
        for Probabilistic Modeling and Inference, Sec. 2.3. https://arxiv.org/abs/1912.02762
    """
    check_count(num_samples, "num_samples", minimum=2)
    if not isinstance(q, TorchDistributionMixin):
        raise TypeError(
            f"q must be a Pyro distribution (pyro.distributions, which pyro.sample can draw "
            f"from; e.g. dist.Normal(loc, scale).to_event(1)), got {type(q).__module__}."
            f"{type(q).__name__}"
        )
    if q.batch_shape != torch.Size():
        raise ValueError(f"q must have batch_shape (), got {tuple(q.batch_shape)}")
    check_real(log_partition, "log_partition", allow_none=True)
    event_shape = q.event_shape
    if samples is not None and (
        not isinstance(samples, torch.Tensor)
        or samples.dim() != 1 + len(event_shape)
        or samples.shape[1:] != event_shape
    ):
        got = tuple(samples.shape) if isinstance(samples, torch.Tensor) else type(samples)
        raise ValueError(f"samples must have shape (N, {tuple(event_shape)}), got {got}")
    if samples is not None and not bool(torch.isfinite(samples).all()):
        raise ValueError("samples contain non-finite values (nan or inf)")

    model = density_model(log_density, event_shape)

    def guide() -> torch.Tensor:
        return pyro.sample("x", q)

    psis = psis_khat(model, guide, num_samples=num_samples)
    log_w, khat = psis.log_weights.detach().double(), psis.khat
    neg_elbo, neg_elbo_se = _mean_stderr(-log_w)
    log_s = math.log(log_w.numel())
    log_z_hat = float(torch.logsumexp(log_w, 0)) - log_s
    w = torch.exp(log_w - log_w.max())
    ess = float(w.sum() ** 2 / (w**2).sum())
    log_z_se = float(w.std() / (math.sqrt(log_w.numel()) * w.mean()))
    log_z = log_z_hat if log_partition is None else float(log_partition)
    forward = forward_se = None
    if samples is not None:
        with torch.no_grad():
            diff = log_density(samples) - log_z - q.log_prob(samples)
        forward, forward_se = _mean_stderr(diff)
    return KLDiagnostic(
        negative_elbo=neg_elbo,
        negative_elbo_stderr=neg_elbo_se,
        log_partition_estimate=log_z_hat,
        log_partition_stderr=log_z_se,
        log_partition=log_z,
        reverse_kl=neg_elbo + log_z,
        reverse_kl_stderr=neg_elbo_se,
        forward_kl=forward,
        forward_kl_stderr=forward_se,
        ess=ess,
        ess_fraction=ess / log_w.numel(),
        khat=khat,
        num_samples=log_w.numel(),
        log_weights=log_w,
    )
