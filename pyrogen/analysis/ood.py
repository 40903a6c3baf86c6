r"""Outlier (out-of-distribution) detection from per-example log-likelihoods: the raw
likelihood, the likelihood ratio against a background model, and the typicality test, each
scored by AUROC."""

from __future__ import annotations

import math

import torch

from pyrogen.util import check_count

__all__ = ["ood_auroc", "ood_scores"]


def _check_ll(value, name: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a 1-D tensor, got {type(value).__name__}")
    if value.dim() != 1 or value.numel() < 1:
        got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise ValueError(f"{name} must be a 1-D tensor of per-example log-likelihoods, got {got}")
    if not bool(torch.isfinite(value).all()):
        raise ValueError(f"{name} contains non-finite values (nan or inf)")
    return value.detach().double()


def ood_scores(
    log_likelihood: torch.Tensor,
    *,
    background_log_likelihood: torch.Tensor | None = None,
    reference_log_likelihood: torch.Tensor | None = None,
    batch_size: int = 1,
) -> dict[str, torch.Tensor]:
    r"""Outlier scores (higher = more likely out of distribution) from log-likelihoods in nats.

    What it computes, for examples with model log-likelihoods :math:`\ell_n = \log p_\theta(x_n)`:

    - ``"log_likelihood"``: :math:`-\ell_n`, the raw negative log-likelihood. Deep generative
      models are known to give some outliers *higher* likelihood than their own data
      (Nalisnick et al. 2019a), so this score can rank them as the most typical.
    - ``"likelihood_ratio"`` (with ``background_log_likelihood`` :math:`\ell^0_n` of a
      background model trained on perturbed data): :math:`-(\ell_n - \ell^0_n)`, minus the
      likelihood ratio of Ren et al. (2019), which cancels the population-level statistics
      (e.g. the number of zero pixels) both models capture.
    - ``"typicality"`` (with ``reference_log_likelihood`` of held-out in-distribution data,
      whose mean gives the entropy estimate :math:`\hat H = -\bar\ell_{\mathrm{ref}}`):
      :math:`|\,-\tfrac1M\sum_{n \in b} \ell_n - \hat H\,|` for consecutive batches ``b`` of
      ``M = batch_size`` examples (Nalisnick et al. 2019b): an input is atypical when its
      log-likelihood is too high as well as too low.

    Shapes:
        log_likelihood, background_log_likelihood: ``(N,)``.  reference: ``(N_ref,)``.
        returns: ``"log_likelihood"`` and ``"likelihood_ratio"`` ``(N,)``; ``"typicality"``
            ``(N // M,)`` (a trailing partial batch is dropped).
    Args:
        log_likelihood: per-example log-likelihoods under the model (nats).
        background_log_likelihood: the same examples under the background model.
        reference_log_likelihood: held-out in-distribution examples under the model.
        batch_size: ``M`` of the typicality test.
    Raises:
        ValueError: a non-1-D or non-finite input, mismatched lengths, or ``batch_size``
            outside ``[1, N]``.
    References:
        Ren, Liu, Fertig, Snoek, Poplin, DePristo, Dillon, Lakshminarayanan (2019). Likelihood
        Ratios for Out-of-Distribution Detection. https://arxiv.org/abs/1906.02845
        Nalisnick, Matsukawa, Teh, Gorur, Lakshminarayanan (2019a). Do Deep Generative Models
        Know What They Don't Know? https://arxiv.org/abs/1810.09136
        Nalisnick, Matsukawa, Teh, Lakshminarayanan (2019b). Detecting Out-of-Distribution
        Inputs to Deep Generative Models Using Typicality. https://arxiv.org/abs/1906.02994
    Example:
        >>> ll, ref = torch.tensor([-90.0, -95.0]), torch.tensor([-92.0])
        >>> s = ood_scores(ll, reference_log_likelihood=ref)
        >>> s["typicality"]
        tensor([2., 3.], dtype=torch.float64)
    """
    ll = _check_ll(log_likelihood, "log_likelihood")
    n = ll.numel()
    if check_count(batch_size, "batch_size") > n:
        raise ValueError(f"batch_size must be an int in [1, {n}], got {batch_size!r}")
    scores = {"log_likelihood": -ll}
    if background_log_likelihood is not None:
        bg = _check_ll(background_log_likelihood, "background_log_likelihood")
        if bg.shape != ll.shape:
            raise ValueError(
                f"background_log_likelihood has shape {tuple(bg.shape)} but log_likelihood has "
                f"{tuple(ll.shape)}; pass the same examples to both"
            )
        scores["likelihood_ratio"] = -(ll - bg)
    if reference_log_likelihood is not None:
        entropy = -_check_ll(reference_log_likelihood, "reference_log_likelihood").mean()
        batches = ll[: (n // batch_size) * batch_size].reshape(-1, batch_size)
        scores["typicality"] = (-batches.mean(-1) - entropy).abs()
    return scores


def ood_auroc(in_scores: torch.Tensor, out_scores: torch.Tensor) -> float:
    """Area under the ROC curve of telling outliers from in-distribution examples by a score.

    ``sklearn.metrics.roc_auc_score`` with label 1 for ``out_scores``: 1 means every outlier
    scores above every in-distribution example, 0.5 chance, below 0.5 the score ranks
    outliers as *more* typical than the data (the raw-likelihood failure).

    Shapes:
        in_scores: ``(N_in,)``.  out_scores: ``(N_out,)``.
    Raises:
        ImportError: scikit-learn is not installed.
        ValueError: empty, non-1-D or non-finite scores.
    """
    from sklearn.metrics import roc_auc_score

    a = _check_ll(in_scores, "in_scores")
    b = _check_ll(out_scores, "out_scores")
    labels = torch.cat([torch.zeros(a.numel()), torch.ones(b.numel())]).numpy()
    value = float(roc_auc_score(labels, torch.cat([a, b]).numpy()))
    if math.isnan(value):  # pragma: no cover - sklearn returns nan only for one class
        raise ValueError("AUROC is undefined")
    return value
