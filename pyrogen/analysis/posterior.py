"""Judge a variational posterior: PSIS k-hat and importance resampling (and, re-exported here,
ArviZ ``InferenceData`` from an SVI guide)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyro
import torch
from pyro import poutine

from pyrogen.analysis.inference_data import (
    _arviz,
    _check_num_samples,
    _is_latent,
    _traces,
    to_inference_data,
)
from pyrogen.infer.checks import empty_plates_as_errors
from pyrogen.infer.importance import guess_max_plate_nesting
from pyrogen.util import progress_bar

__all__ = ["PSISDiagnostic", "importance_resample", "psis_khat", "to_inference_data"]


MIN_PSIS_DRAWS = 10
"""Fewest guide draws PSIS accepts: its Pareto fit uses the largest ``min(S / 5, 3 sqrt(S))``
weights, and with fewer than 10 draws there is no tail to fit (one draw has constant weights
and would be reported as a perfect k-hat)."""


@dataclass
class PSISDiagnostic:
    """Result of :func:`psis_khat`.

    Attributes:
        khat: Pareto shape estimate of the importance-ratio tail. ``< 0.5``: good, the guide is
            close enough for importance sampling; ``0.5-0.7``: usable after importance
            reweighting (:func:`importance_resample`); ``> 0.7``: unreliable, the guide misses
            posterior mass and its estimates cannot be trusted (Yao et al. 2018).
        log_evidence: importance-sampling estimate of ``log p(x)`` in nats,
            ``logsumexp(log w) - log S`` (a stochastic lower bound in expectation).
        ess: effective sample size of the Pareto-smoothed normalized weights, ``1 / sum w^2``.
        num_samples: ``S``, the number of guide draws.
        log_weights: raw ``log p(x, z_s) - log q(z_s)``, shape ``(S,)``, nats.
    """

    khat: float
    log_evidence: float
    ess: float
    num_samples: int
    log_weights: torch.Tensor

    def __repr__(self) -> str:
        """The scalar diagnostics and the weights' shape (not their values)."""
        return (
            f"PSISDiagnostic(khat={self.khat:.3f}, log_evidence={self.log_evidence:.4f}, "
            f"ess={self.ess:.1f}, num_samples={self.num_samples}, "
            f"log_weights=tensor(shape={tuple(self.log_weights.shape)}), status={self.status!r})"
        )

    @property
    def status(self) -> str:
        """``"good"``, ``"ok after reweighting"`` or ``"unreliable"`` by the k-hat thresholds."""
        if self.khat < 0.5:
            return "good"
        return "ok after reweighting" if self.khat <= 0.7 else "unreliable"


def _sequential_log_weights(model, guide, args, kwargs, num_samples):
    """``log p(x, z_s) - log q(z_s)`` for ``num_samples`` draws, one model run each."""
    log_w, guide_trace = [], None
    for _ in progress_bar(range(num_samples), desc="importance weights"):
        guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(
            *args, **kwargs
        )
        log_w.append(model_trace.log_prob_sum() - guide_trace.log_prob_sum())
    return torch.stack(log_w), guide_trace


def _importance(model, guide, args, kwargs, num_samples, name="num_samples"):
    _check_num_samples(num_samples, name, minimum=MIN_PSIS_DRAWS)
    with torch.no_grad(), empty_plates_as_errors("psis_khat / importance_resample"):
        _, prototype = _traces(model, guide, args, kwargs)  # validates guide against model
        try:
            log_w, _, guide_trace = pyro.infer.importance.vectorized_importance_weights(
                model,
                guide,
                *args,
                num_samples=num_samples,
                max_plate_nesting=guess_max_plate_nesting(model, guide, args, kwargs),
                normalized=False,
                **kwargs,
            )
        except (RuntimeError, ValueError, IndexError) as error:
            # a model that is not vectorizable (shapes fixed by hand, Python control flow):
            # one guide draw and model replay at a time
            warnings.warn(
                f"the model could not be vectorized over {num_samples} particles ({error}); "
                "computing the importance weights one draw at a time",
                RuntimeWarning,
                stacklevel=3,
            )
            log_w, guide_trace = _sequential_log_weights(model, guide, args, kwargs, num_samples)
    log_w = log_w.reshape(num_samples)
    if not bool(torch.isfinite(log_w).any()):
        raise ValueError("every importance weight is zero or non-finite; check model and guide")
    return log_w, guide_trace, prototype


def _psis(log_w: torch.Tensor) -> tuple[np.ndarray, float]:
    """Pareto-smoothed normalized log weights and k-hat.

    Constant weights (the guide equals the posterior up to its normalizer; constant up to the
    rounding of their dtype) have no tail to fit: k-hat is then reported as ``-inf`` and the
    weights stay uniform.
    """
    raw = log_w.detach().cpu().double().numpy()
    finite = raw[np.isfinite(raw)]
    # constant up to the rounding of the dtype the weights were computed in
    rounding = 100 * torch.finfo(log_w.dtype).eps * max(1.0, float(np.abs(finite).max(initial=0)))
    lw = raw - np.logaddexp.reduce(raw)
    if np.ptp(finite) < max(1e-10, rounding):
        return lw, -math.inf
    smoothed, khat = _arviz().psislw(lw, reff=1.0)
    smoothed, khat = np.asarray(smoothed), float(khat)
    if math.isnan(khat):
        raise ValueError("Pareto smoothing failed (k-hat is nan); use more num_samples")
    if math.isinf(khat) or np.isnan(smoothed).any():
        return lw, math.inf  # an infinite-variance tail: the weights carry no information
    return smoothed, khat


def _diagnose(log_w: torch.Tensor) -> tuple[PSISDiagnostic, np.ndarray]:
    """The diagnostic of raw log weights and their Pareto-smoothed normalized weights."""
    smoothed, khat = _psis(log_w)
    weights = np.exp(smoothed)
    diagnostic = PSISDiagnostic(
        khat=khat,
        log_evidence=float(torch.logsumexp(log_w, 0) - math.log(log_w.numel())),
        ess=float(1.0 / np.sum(weights**2)),
        num_samples=log_w.numel(),
        log_weights=log_w,
    )
    return diagnostic, weights


def psis_khat(
    model: Callable, guide: Callable, *args, num_samples: int = 1000, **kwargs
) -> PSISDiagnostic:
    """Pareto-smoothed importance sampling diagnostic of a guide ("Yes, but did it work?").

    Draws ``S = num_samples`` latents from the guide (vectorized over a particle plate), forms
    the log importance ratios ``log w_s = log p(x, z_s) - log q(z_s)`` and fits a generalized
    Pareto distribution to their upper tail with ``arviz.psislw``.

    Args:
        model, guide: a Pyro model and a guide for it; the model must be vectorizable (static
            structure, ``pyro.plate`` for batch dimensions).
        args, kwargs: the model's positional and keyword arguments.
        num_samples: ``S``; k-hat needs a few hundred draws to be meaningful.
    Returns:
        :class:`PSISDiagnostic` with ``khat``, ``log_evidence`` (nats), ``ess`` and the raw log
        weights. Thresholds: ``k < 0.5`` good, ``0.5-0.7`` usable after reweighting, ``> 0.7``
        unreliable.
    Raises:
        ValueError: ``num_samples < 10`` (``MIN_PSIS_DRAWS``); a model latent site missing
            from the guide; empty data; all weights zero.
    References:
        Yao, Vehtari, Simpson, Gelman (2018). Yes, but Did It Work?: Evaluating Variational
        Inference. https://arxiv.org/abs/1802.02538
        Vehtari, Simpson, Gelman, Yao, Gabry (2024). Pareto Smoothed Importance Sampling.
        https://arxiv.org/abs/1507.02646
    """
    log_w, _, _ = _importance(model, guide, args, kwargs, num_samples)
    return _diagnose(log_w)[0]


def importance_resample(
    model: Callable,
    guide: Callable,
    *args,
    num_samples: int = 1000,
    num_proposals: int | None = None,
    allow_unreliable: bool = False,
    generator: torch.Generator | None = None,
    **kwargs,
) -> tuple[dict[str, torch.Tensor], PSISDiagnostic]:
    """Correct guide draws toward the posterior by PSIS-weighted resampling.

    Draws ``num_proposals`` latents from the guide, smooths their importance weights with PSIS
    and resamples ``num_samples`` of them with replacement in proportion to the weights.

    Args:
        model, guide, args, kwargs: as in :func:`psis_khat`.
        num_samples: number of resampled draws.
        num_proposals: guide draws to resample from (default ``10 * num_samples``).
        allow_unreliable: resample even when k-hat > 0.7 (the result is then not trustworthy).
        generator: random generator of the resampling step.
    Returns:
        ``(samples, diagnostic)``: ``{site: tensor (num_samples, *site_shape)}`` of constrained
        latent values, and the :class:`PSISDiagnostic` of the proposals.
    Raises:
        ValueError: ``num_samples < 1`` or ``num_proposals < 10`` (``MIN_PSIS_DRAWS``); a
            guide that does not match the model; k-hat > 0.7 without ``allow_unreliable``.
    References:
        Yao, Vehtari, Simpson, Gelman (2018). Yes, but Did It Work?: Evaluating Variational
        Inference. https://arxiv.org/abs/1802.02538
    """
    _check_num_samples(num_samples)
    num_proposals = 10 * num_samples if num_proposals is None else num_proposals
    _check_num_samples(num_proposals, "num_proposals", minimum=MIN_PSIS_DRAWS)
    log_w, guide_trace, prototype = _importance(
        model, guide, args, kwargs, num_proposals, "num_proposals"
    )
    diagnostic, weights = _diagnose(log_w)
    if diagnostic.khat > 0.7 and not allow_unreliable:
        raise ValueError(
            f"k-hat = {diagnostic.khat:.2f} > 0.7: the guide misses posterior mass and importance "
            "resampling cannot repair it; improve the guide or pass allow_unreliable=True"
        )
    probs = torch.as_tensor(weights, dtype=torch.float64)
    index = torch.multinomial(probs, num_samples, replacement=True, generator=generator)
    samples = {}
    for name, site in prototype.nodes.items():
        if _is_latent(site):
            values = guide_trace.nodes[name]["value"].reshape(num_proposals, *site["value"].shape)
            samples[name] = values[index.to(values.device)]
    return samples, diagnostic
