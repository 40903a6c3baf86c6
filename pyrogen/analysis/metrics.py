"""Offline sample-quality metrics on features or class probabilities from a pluggable network:
Fréchet distance, kernel distance (KID), Inception-style score, precision/recall, coverage.

None of these uses Inception weights (they cannot be downloaded here): numbers computed with
another feature network are *not* FID/IS in the sense of the papers and must be reported with
the network that produced the features.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from pyrogen.util import ArgumentTypeError, check_count, check_positive

__all__ = [
    "KernelDistance",
    "PrecisionRecall",
    "class_coverage",
    "frechet_distance",
    "gaussian_frechet_distance",
    "inception_score",
    "kernel_distance",
    "mode_coverage",
    "precision_recall",
]


def _features(x: torch.Tensor, name: str, *, min_rows: int = 2) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        got = x.dtype if isinstance(x, torch.Tensor) else type(x).__name__
        raise ArgumentTypeError(f"{name} must be a floating tensor of shape (N, D), got {got}")
    if x.dim() != 2:
        raise ValueError(f"{name} must be a floating tensor of shape (N, D), got {x.shape}")
    if x.shape[0] < min_rows:
        raise ValueError(f"{name} needs at least {min_rows} rows, got {x.shape[0]}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains non-finite values")
    return x.double()


def _same_width(a: torch.Tensor, b: torch.Tensor, name_a: str, name_b: str) -> None:
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"feature dimensions differ: {name_a} has {a.shape[1]}, {name_b} has {b.shape[1]}"
        )


def _gaussian(mean, cov, name_mean: str, name_cov: str) -> tuple[torch.Tensor, torch.Tensor]:
    """A mean ``(D,)`` and a symmetric positive semi-definite covariance ``(D, D)``, in
    float64 (eigenvalues down to ``-1e-8`` of the largest are taken as rounding)."""
    for name, t in ((name_mean, mean), (name_cov, cov)):
        if not isinstance(t, torch.Tensor) or not t.is_floating_point():
            got = t.dtype if isinstance(t, torch.Tensor) else type(t).__name__
            raise ArgumentTypeError(f"{name} must be a floating-point tensor, got {got}")
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"{name} contains non-finite values (nan or inf)")
    if mean.dim() != 1:
        raise ValueError(f"{name_mean} must have shape (D,), got {tuple(mean.shape)}")
    d = mean.shape[0]
    if cov.shape != (d, d):
        raise ValueError(
            f"{name_cov} must have shape ({d}, {d}) to match {name_mean} of shape ({d},), got "
            f"{tuple(cov.shape)}"
        )
    mean, cov = mean.double(), cov.double()
    scale = float(cov.abs().max()) if cov.numel() else 0.0
    if not torch.allclose(cov, cov.T, rtol=1e-6, atol=1e-8 * scale):
        raise ValueError(f"{name_cov} must be symmetric")
    low = float(torch.linalg.eigvalsh(cov).min()) if d else 0.0
    if low < -1e-8 * max(scale, 1e-300):
        raise ValueError(
            f"{name_cov} must be positive semi-definite, but has an eigenvalue {low:.3g} < 0"
        )
    return mean, cov


def _sqrtm_psd(m: torch.Tensor) -> torch.Tensor:
    vals, vecs = torch.linalg.eigh((m + m.T) / 2)
    return (vecs * vals.clamp(min=0).sqrt()) @ vecs.T


def gaussian_frechet_distance(
    mean_a: torch.Tensor, cov_a: torch.Tensor, mean_b: torch.Tensor, cov_b: torch.Tensor
) -> torch.Tensor:
    r"""Closed-form squared 2-Wasserstein (Fréchet) distance between two Gaussians.

    .. math:: d^2 = \|\mu_a - \mu_b\|^2 + \operatorname{tr}\big(\Sigma_a + \Sigma_b -
        2 (\Sigma_a^{1/2} \Sigma_b \Sigma_a^{1/2})^{1/2}\big)

    Shapes:
        mean_a, mean_b: ``(D,)``.  cov_a, cov_b: ``(D, D)``, symmetric positive
        semi-definite.  returns: ``()``, in squared feature units.
    Raises:
        TypeError: an argument that is not a floating-point tensor.
        ValueError: shapes that do not match, non-finite entries, or a covariance that is not
            symmetric positive semi-definite (eigenvalues below ``-1e-8`` times its largest
            entry).
    References:
        Dowson, Landau (1982). The Fréchet distance between multivariate normal distributions.
        https://doi.org/10.1016/0047-259X(82)90077-X
    """
    mean_a, cov_a = _gaussian(mean_a, cov_a, "mean_a", "cov_a")
    mean_b, cov_b = _gaussian(mean_b, cov_b, "mean_b", "cov_b")
    if mean_b.shape != mean_a.shape:
        raise ValueError(f"mean_b has shape {tuple(mean_b.shape)}, mean_a {tuple(mean_a.shape)}")
    root_a = _sqrtm_psd(cov_a)
    cross = _sqrtm_psd(root_a @ cov_b @ root_a)
    value = (mean_a - mean_b).pow(2).sum() + torch.trace(cov_a + cov_b - 2 * cross)
    return value.clamp(min=0)


def frechet_distance(features_a: torch.Tensor, features_b: torch.Tensor) -> torch.Tensor:
    r"""Fréchet distance between two sets of features, each summarized by a Gaussian (the FID
    formula of Heusel et al. 2017 applied to whatever feature network produced the inputs).

    Shapes:
        features_a: ``(N, D)``; features_b: ``(M, D)``; returns ``()`` (squared feature units).
    Raises:
        ValueError: not 2-D floating tensors, fewer than 2 rows, non-finite values, or
            different feature dimensions.
    References:
        Heusel, Ramsauer, Unterthiner, Nessler, Hochreiter (2017). GANs Trained by a Two
        Time-Scale Update Rule Converge to a Local Nash Equilibrium.
        https://arxiv.org/abs/1706.08500
    Example:
        >>> a = torch.randn(2000, 3)
        >>> round(float(frechet_distance(a, a)), 9)
        0.0
    """
    a, b = _features(features_a, "features_a"), _features(features_b, "features_b")
    _same_width(a, b, "features_a", "features_b")
    return gaussian_frechet_distance(
        a.mean(0),
        torch.cov(a.T).reshape(a.shape[1], -1),
        b.mean(0),
        torch.cov(b.T).reshape(b.shape[1], -1),
    )


class KernelDistance(NamedTuple):
    """KID estimate: ``mean`` and ``std`` over subsets (squared-MMD units)."""

    mean: torch.Tensor
    std: torch.Tensor


def _unbiased_mmd2(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    d = x.shape[1]

    def kernel(a, b):
        return (a @ b.T / d + 1) ** 3

    m, n = x.shape[0], y.shape[0]
    kxx, kyy, kxy = kernel(x, x), kernel(y, y), kernel(x, y)
    return (
        (kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1))
        + (kyy.sum() - kyy.diagonal().sum()) / (n * (n - 1))
        - 2 * kxy.mean()
    )


def kernel_distance(
    features_a: torch.Tensor,
    features_b: torch.Tensor,
    *,
    num_subsets: int = 100,
    subset_size: int = 1000,
    generator: torch.Generator | None = None,
) -> KernelDistance:
    r"""Kernel distance (KID): the unbiased squared MMD with the cubic polynomial kernel
    :math:`k(x, y) = (x^\top y / D + 1)^3`, averaged over random subsets.

    Unbiased, so it can be negative for two samples of one distribution (its mean is 0 there).

    Shapes:
        features_a: ``(N, D)``.  features_b: ``(M, D)``.
        returns: ``KernelDistance(mean, std)``, each of shape ``()``.
    Args:
        num_subsets: subsets drawn (>= 1).
        subset_size: rows per subset (capped at the smaller set; >= 2).
        generator: random generator for the subsets.
    Raises:
        ValueError: as :func:`frechet_distance`, or bad subset settings.
    References:
        Bińkowski, Sutherland, Arbel, Gretton (2018). Demystifying MMD GANs.
        https://arxiv.org/abs/1801.01401
    """
    a, b = _features(features_a, "features_a"), _features(features_b, "features_b")
    _same_width(a, b, "features_a", "features_b")
    check_count(num_subsets, "num_subsets")
    check_count(subset_size, "subset_size", minimum=2)
    size = min(subset_size, a.shape[0], b.shape[0])
    values = []
    for _ in range(num_subsets):
        ia = torch.randperm(a.shape[0], generator=generator)[:size]
        ib = torch.randperm(b.shape[0], generator=generator)[:size]
        values.append(_unbiased_mmd2(a[ia], b[ib]))
    values = torch.stack(values)
    return KernelDistance(values.mean(), values.std() if num_subsets > 1 else values.new_zeros(()))


def inception_score(probs: torch.Tensor, *, num_splits: int = 1) -> tuple[float, float]:
    r"""Inception-style score :math:`\exp(\mathbb E_x \mathrm{KL}(p(y \mid x) \| p(y)))` of
    class probabilities from any classifier; 1 for constant predictions, the number of
    classes for confident, balanced predictions.

    Shapes:
        probs: ``(N, K)`` rows summing to 1. Returns ``(mean, std)`` over ``num_splits``.
    Raises:
        ValueError: not ``(N, K)``, negative entries, rows not summing to 1, or
            ``num_splits`` outside ``[1, N]``.
    References:
        Salimans et al. (2016). Improved Techniques for Training GANs.
        https://arxiv.org/abs/1606.03498
    Example:
        >>> round(inception_score(torch.eye(4).repeat(5, 1))[0], 6)
        4.0
    """
    p = _features(probs, "probs", min_rows=1)
    if bool((p < 0).any()) or not torch.allclose(p.sum(1), torch.ones_like(p[:, 0]), atol=1e-4):
        raise ValueError("probs must be non-negative with rows summing to 1")
    if check_count(num_splits, "num_splits") > p.shape[0]:
        raise ValueError(f"num_splits must lie in [1, {p.shape[0]}], got {num_splits}")
    scores = []
    for part in torch.tensor_split(p, num_splits):
        marginal = part.mean(0, keepdim=True)
        kl = torch.special.xlogy(part, part) - torch.special.xlogy(part, marginal)
        scores.append(math.exp(float(kl.sum(1).mean())))
    scores_t = torch.tensor(scores, dtype=torch.float64)  # not the default dtype: no rounding
    return float(scores_t.mean()), float(scores_t.std()) if num_splits > 1 else 0.0


class PrecisionRecall(NamedTuple):
    """Improved precision and recall (fractions in [0, 1])."""

    precision: float
    recall: float


def _knn_radii(x: torch.Tensor, k: int) -> torch.Tensor:
    dist = torch.cdist(x, x)
    return dist.kthvalue(k + 1, dim=1).values  # k-th neighbour, skipping the point itself


def _covered(points: torch.Tensor, support: torch.Tensor, radii: torch.Tensor) -> torch.Tensor:
    return (torch.cdist(points, support) <= radii[None, :]).any(1)


def precision_recall(
    real_features: torch.Tensor, fake_features: torch.Tensor, *, k: int = 3
) -> PrecisionRecall:
    r"""Improved precision and recall of Kynkäänniemi et al.: precision is the fraction of
    generated samples inside the real manifold (the union of balls around real samples of
    radius their ``k``-th nearest-neighbour distance), recall the fraction of real samples
    inside the generated manifold.

    Shapes:
        real_features: ``(N, D)``.  fake_features: ``(M, D)`` (memory ``O(N M)``).
    Raises:
        ValueError: as :func:`frechet_distance`, or ``k`` not in ``[1, min(N, M) - 1]``.
    References:
        Kynkäänniemi, Karras, Laine, Lehtinen, Aila (2019). Improved Precision and Recall
        Metric for Assessing Generative Models. https://arxiv.org/abs/1904.06991
    """
    real, fake = (
        _features(real_features, "real_features"),
        _features(fake_features, "fake_features"),
    )
    _same_width(real, fake, "real_features", "fake_features")
    if check_count(k, "k") >= min(real.shape[0], fake.shape[0]):
        raise ValueError(f"k must lie in [1, {min(real.shape[0], fake.shape[0]) - 1}], got {k}")
    precision = _covered(fake, real, _knn_radii(real, k)).double().mean()
    recall = _covered(real, fake, _knn_radii(fake, k)).double().mean()
    return PrecisionRecall(float(precision), float(recall))


def mode_coverage(
    samples: torch.Tensor, centers: torch.Tensor, *, radius: float, min_samples: int = 1
) -> tuple[int, float]:
    """Modes hit and sample quality for a known mixture (e.g. the 8-Gaussian ring).

    Returns ``(modes_covered, high_quality_fraction)``: the number of centers with at least
    ``min_samples`` samples within ``radius`` (a common choice is 3 standard deviations of a
    component; a ``min_samples`` of 1% of the draw ignores stray samples), and the fraction of
    samples within ``radius`` of some center.

    Shapes:
        samples: ``(N, D)``.  centers: ``(K, D)``.
    Raises:
        ValueError: bad shapes, ``radius <= 0`` or ``min_samples < 1``.
    """
    x, c = _features(samples, "samples", min_rows=1), _features(centers, "centers", min_rows=1)
    _same_width(x, c, "samples", "centers")
    check_positive(radius, "radius")
    check_count(min_samples, "min_samples")
    close = torch.cdist(x, c) <= radius
    return int((close.sum(0) >= min_samples).sum()), float(close.any(1).double().mean())


def class_coverage(probs: torch.Tensor) -> tuple[int, float]:
    """Classes predicted (argmax) at least once, and the KL divergence (nats) of the predicted
    class histogram to the uniform distribution (0 for perfectly balanced samples).

    Shapes:
        probs: ``(N, K)`` (any scores; only the argmax is used).
    """
    p = _features(probs, "probs", min_rows=1)
    counts = torch.bincount(p.argmax(1), minlength=p.shape[1]).double()
    hist = counts / counts.sum()
    kl = float((torch.special.xlogy(hist, hist) + hist * math.log(p.shape[1])).sum())
    return int((counts > 0).sum()), kl
