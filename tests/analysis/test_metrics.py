"""Sample-quality metrics against closed forms and limiting cases."""

import math

import pytest
import torch

from pyrogen.analysis import (
    class_coverage,
    frechet_distance,
    gaussian_frechet_distance,
    inception_score,
    kernel_distance,
    mode_coverage,
    precision_recall,
)


def test_gaussian_frechet_closed_form_for_commuting_covariances():
    mean_a, mean_b = torch.tensor([0.0, 1.0]), torch.tensor([2.0, -1.0])
    sd_a, sd_b = torch.tensor([1.0, 3.0]), torch.tensor([2.0, 0.5])
    expected = (mean_a - mean_b).pow(2).sum() + (sd_a - sd_b).pow(2).sum()
    got = gaussian_frechet_distance(mean_a, torch.diag(sd_a**2), mean_b, torch.diag(sd_b**2))
    assert torch.allclose(got, expected.double())


def test_gaussian_frechet_is_a_rotation_invariant_distance():
    q, _ = torch.linalg.qr(torch.randn(3, 3))
    cov_a = q @ torch.diag(torch.tensor([1.0, 2.0, 3.0])) @ q.T
    cov_b = torch.diag(torch.tensor([0.5, 1.0, 4.0]))
    mean = torch.zeros(3)
    d_ab = gaussian_frechet_distance(mean, cov_a, mean, cov_b)
    d_rot = gaussian_frechet_distance(mean, q.T @ cov_a @ q, mean, q.T @ cov_b @ q)
    assert torch.allclose(d_ab, d_rot, atol=1e-8)
    assert torch.allclose(
        gaussian_frechet_distance(mean, cov_a, mean, cov_a), torch.zeros(()).double(), atol=1e-6
    )


def test_sample_frechet_converges_to_the_closed_form():
    a = torch.randn(20000, 2) * torch.tensor([1.0, 2.0])
    b = torch.randn(20000, 2) * torch.tensor([1.5, 1.0]) + torch.tensor([1.0, 0.0])
    expected = 1.0 + (1.0 - 1.5) ** 2 + (2.0 - 1.0) ** 2
    assert float(frechet_distance(a, b)) == pytest.approx(expected, abs=0.1)


def test_kernel_distance_is_unbiased_and_detects_a_shift():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(600, 4, generator=g), torch.randn(600, 4, generator=g)
    same = kernel_distance(a, b, num_subsets=50, subset_size=200, generator=g)
    assert abs(float(same.mean)) < 3 * float(same.std) / math.sqrt(50) + 1e-3
    shifted = kernel_distance(a, b + 0.5, num_subsets=50, subset_size=200, generator=g)
    assert float(shifted.mean) > 10 * float(shifted.std) / math.sqrt(50)


def test_inception_score_limits():
    k = 5
    assert inception_score(torch.full((50, k), 1.0 / k))[0] == pytest.approx(1.0)
    assert inception_score(torch.eye(k).repeat(10, 1))[0] == pytest.approx(k)
    assert inception_score(torch.eye(k)[[0] * 50])[0] == pytest.approx(1.0)  # one class only
    mean, std = inception_score(torch.eye(k).repeat(10, 1), num_splits=5)
    assert mean == pytest.approx(k) and std == pytest.approx(0.0, abs=1e-9)


def test_precision_recall_limits():
    real = torch.randn(300, 2)
    assert precision_recall(real, real.clone()) == (1.0, 1.0)
    far = precision_recall(real, torch.randn(300, 2) + 100.0)
    assert far == (0.0, 0.0)
    # a generator covering half of the real distribution: high precision, recall about one half
    half = real[real[:, 0] > 0]
    pr = precision_recall(real, half, k=3)
    assert pr.precision == 1.0 and 0.3 < pr.recall < 0.7


def test_mode_and_class_coverage():
    angles = torch.arange(8) * (2 * math.pi / 8)
    centers = 2 * torch.stack([angles.cos(), angles.sin()], -1)
    samples = centers[[0, 1, 1, 2]] + 0.01 * torch.randn(4, 2)
    samples = torch.cat([samples, torch.tensor([[0.0, 0.0]])])
    modes, quality = mode_coverage(samples, centers, radius=0.1)
    assert modes == 3 and quality == pytest.approx(0.8)
    covered, kl = class_coverage(torch.eye(10).repeat(3, 1))
    assert covered == 10 and kl == pytest.approx(0.0, abs=1e-12)
    covered, kl = class_coverage(torch.eye(10)[[0] * 7])
    assert covered == 1 and kl == pytest.approx(math.log(10))
    # modes 0 and 2 have one sample each, mode 1 two: only mode 1 has 2 hits
    assert mode_coverage(samples, centers, radius=0.1, min_samples=2) == (1, pytest.approx(0.8))
    assert mode_coverage(samples, centers, radius=0.1, min_samples=3)[0] == 0


def test_errors():
    with pytest.raises(ValueError, match="feature dimensions"):
        frechet_distance(torch.randn(10, 2), torch.randn(10, 3))
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        frechet_distance(torch.randn(10), torch.randn(10, 3))
    with pytest.raises(ValueError, match="non-finite"):
        kernel_distance(torch.full((5, 2), float("nan")), torch.randn(5, 2))
    with pytest.raises(ValueError, match="summing to 1"):
        inception_score(torch.rand(5, 3) + 1)
    with pytest.raises(ValueError, match="k must"):
        precision_recall(torch.randn(5, 2), torch.randn(5, 2), k=5)
    with pytest.raises(ValueError, match="radius"):
        mode_coverage(torch.randn(5, 2), torch.randn(3, 2), radius=0.0)
    with pytest.raises(ValueError, match="min_samples"):
        mode_coverage(torch.randn(5, 2), torch.randn(3, 2), radius=1.0, min_samples=0)
