"""Sample-quality metrics against closed forms and limiting cases."""

import math

import numpy as np
import pytest
import scipy.linalg
import scipy.stats
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


def _scipy_frechet(mean_a, cov_a, mean_b, cov_b) -> float:
    """Independent reference: the FID formula with scipy's sqrtm of the (non-symmetric)
    product, tr(A + B - 2 (A B)^{1/2}) (Heusel et al. 2017's implementation)."""
    a, b = np.asarray(cov_a, dtype=float), np.asarray(cov_b, dtype=float)
    diff = np.asarray(mean_a, dtype=float) - np.asarray(mean_b, dtype=float)
    cross = scipy.linalg.sqrtm(a @ b).real
    return float(diff @ diff + np.trace(a + b - 2 * cross))


def test_gaussian_frechet_non_commuting_2x2_closed_form():
    """For 2x2 PSD M, tr M^{1/2} = sqrt(tr M + 2 sqrt(det M)); with M = A^{1/2} B A^{1/2},
    tr M = tr(A B) and det M = det A det B. A = [[1, .9], [.9, 1]], B = diag(1, 4) do not
    commute: d^2 = 7 - 2 sqrt(5 + 2 sqrt(0.76)) = 1.806 (the cross term root_a @ sqrtm(B)
    gives 1.916)."""
    cov_a = torch.tensor([[1.0, 0.9], [0.9, 1.0]])
    cov_b = torch.diag(torch.tensor([1.0, 4.0]))
    assert not torch.allclose(cov_a @ cov_b, cov_b @ cov_a)
    rho = float(cov_a[0, 1])  # 0.9 rounded to the dtype: the closed form of the given input
    expected = 7 - 2 * math.sqrt(5 + 2 * math.sqrt((1 - rho**2) * 4))
    zero = torch.zeros(2)
    got = float(gaussian_frechet_distance(zero, cov_a, zero, cov_b))
    assert got == pytest.approx(expected, abs=1e-12) and round(got, 3) == 1.806
    # the mean term adds ||mu_a - mu_b||^2 and the distance is symmetric
    mean_a, mean_b = torch.tensor([0.5, -1.0]), torch.tensor([2.0, 1.0])
    shifted = float(gaussian_frechet_distance(mean_a, cov_a, mean_b, cov_b))
    assert shifted == pytest.approx(expected + 1.5**2 + 2.0**2, abs=1e-12)
    assert float(gaussian_frechet_distance(mean_b, cov_b, mean_a, cov_a)) == pytest.approx(
        shifted, abs=1e-12
    )


def _random_cov(d: int, g: torch.Generator, rank: int | None = None) -> torch.Tensor:
    f = torch.randn(d, rank or d, generator=g, dtype=torch.float64)
    return f @ f.T + (0.0 if rank else 0.1) * torch.eye(d, dtype=torch.float64)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gaussian_frechet_matches_scipy_on_random_covariances(seed):
    g = torch.Generator().manual_seed(seed)
    d = 4
    cov_a, cov_b = _random_cov(d, g), _random_cov(d, g)
    mean_a, mean_b = torch.randn(d, generator=g), torch.randn(d, generator=g)
    got = float(gaussian_frechet_distance(mean_a, cov_a, mean_b, cov_b))
    assert got == pytest.approx(_scipy_frechet(mean_a, cov_a, mean_b, cov_b), rel=1e-9)
    # a singular (rank-2) covariance: the PSD square roots still give the closed form
    low = _random_cov(d, g, rank=2)
    got = float(gaussian_frechet_distance(mean_a, low, mean_b, cov_b))
    assert got == pytest.approx(_scipy_frechet(mean_a, low, mean_b, cov_b), rel=1e-6)


def test_gaussian_frechet_is_rotation_invariant_against_the_closed_form():
    """Rotating both Gaussians (means and covariances) leaves the 2x2 closed form unchanged."""
    # the rotated inputs carry the dtype's rounding (eps |entries|, entries up to 4), which the
    # distance (computed in float64) passes on with a factor of order one
    tol = 1e-12 if torch.get_default_dtype() == torch.float64 else 100 * torch.finfo().eps
    angle = 0.7
    q = torch.tensor([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    cov_a = torch.tensor([[1.0, 0.9], [0.9, 1.0]])
    cov_b = torch.diag(torch.tensor([1.0, 4.0]))
    mean_a, mean_b = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0])
    expected = 7 - 2 * math.sqrt(5 + 2 * math.sqrt(0.76)) + 5.0
    got = gaussian_frechet_distance(q @ mean_a, q @ cov_a @ q.T, q @ mean_b, q @ cov_b @ q.T)
    assert float(got) == pytest.approx(expected, abs=tol)
    assert float(gaussian_frechet_distance(mean_a, cov_a, mean_a, cov_a)) == pytest.approx(
        0.0, abs=1e-12
    )


def test_sample_frechet_is_the_closed_form_of_the_sample_moments():
    """frechet_distance summarizes each set by its mean and unbiased covariance (np.cov)."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(50, 3, generator=g, dtype=torch.float64)
    a = a @ torch.randn(3, 3, generator=g, dtype=torch.float64)
    b = torch.randn(40, 3, generator=g, dtype=torch.float64)
    b = b @ torch.randn(3, 3, generator=g, dtype=torch.float64) + 1
    an, bn = a.numpy(), b.numpy()
    expected = _scipy_frechet(an.mean(0), np.cov(an.T), bn.mean(0), np.cov(bn.T))
    assert float(frechet_distance(a, b)) == pytest.approx(expected, rel=1e-9)
    assert float(frechet_distance(a.float(), b.float())) == pytest.approx(expected, rel=1e-5)
    # one feature: (mu_a - mu_b)^2 + (sd_a - sd_b)^2
    x, y = an[:, :1], bn[:, :1]
    one_d = (x.mean() - y.mean()) ** 2 + (x.std(ddof=1) - y.std(ddof=1)) ** 2
    assert float(frechet_distance(a[:, :1], b[:, :1])) == pytest.approx(one_d, rel=1e-9)


def test_kernel_distance_is_unbiased_and_detects_a_shift():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(600, 4, generator=g), torch.randn(600, 4, generator=g)
    same = kernel_distance(a, b, num_subsets=50, subset_size=200, generator=g)
    assert abs(float(same.mean)) < 3 * float(same.std) / math.sqrt(50) + 1e-3
    shifted = kernel_distance(a, b + 0.5, num_subsets=50, subset_size=200, generator=g)
    assert float(shifted.mean) > 10 * float(shifted.std) / math.sqrt(50)


def test_kernel_distance_of_full_sets_matches_an_explicit_double_sum():
    """With one subset holding every row, KID is the unbiased MMD^2 of the two sets (subset
    order does not matter), written out term by term with the cubic kernel."""
    g = torch.Generator().manual_seed(3)
    a = torch.randn(7, 3, generator=g, dtype=torch.float64)
    b = torch.randn(5, 3, generator=g, dtype=torch.float64) * 1.5 + 0.3
    x, y, d = a.numpy(), b.numpy(), 3

    def k(u, v):
        return (u @ v / d + 1) ** 3

    m, n = len(x), len(y)
    kxx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    kyy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    kxy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    expected = kxx + kyy - 2 * kxy
    equal = kernel_distance(a[:5], b, num_subsets=1, subset_size=5, generator=g)
    x5 = x[:5]
    kxx5 = sum(k(x5[i], x5[j]) for i in range(5) for j in range(5) if i != j) / 20
    kx5y = sum(k(x5[i], y[j]) for i in range(5) for j in range(5)) / 25
    assert float(equal.mean) == pytest.approx(kxx5 + kyy - 2 * kx5y, rel=1e-12)
    assert float(equal.std) == 0.0
    # unequal sizes (7 vs 5) through the private estimator the subsets use
    from pyrogen.analysis.metrics import _unbiased_mmd2

    assert float(_unbiased_mmd2(a, b)) == pytest.approx(expected, rel=1e-12)
    # several subsets: mean and (unbiased) std of the per-subset values
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    many = kernel_distance(a, b, num_subsets=4, subset_size=3, generator=g1)
    values = []
    for _ in range(4):
        ia, ib = torch.randperm(7, generator=g2)[:3], torch.randperm(5, generator=g2)[:3]
        values.append(float(_unbiased_mmd2(a[ia], b[ib])))
    assert float(many.mean) == pytest.approx(np.mean(values), rel=1e-12)
    assert float(many.std) == pytest.approx(np.std(values, ddof=1), rel=1e-12)


def test_inception_score_matches_scipy_entropy_on_soft_predictions():
    g = torch.Generator().manual_seed(0)
    probs = torch.softmax(2 * torch.randn(12, 4, generator=g, dtype=torch.float64), -1)
    p = probs.numpy()

    def score(part):
        marginal = part.mean(0)
        return math.exp(np.mean([scipy.stats.entropy(row, marginal) for row in part]))

    assert inception_score(probs)[0] == pytest.approx(score(p), rel=1e-12)
    mean, std = inception_score(probs, num_splits=3)
    splits = [score(part) for part in np.array_split(p, 3)]
    assert mean == pytest.approx(np.mean(splits), rel=1e-12)
    assert std == pytest.approx(np.std(splits, ddof=1), rel=1e-12)


def _brute_force_coverage(points, support, k):
    """Fraction of ``points`` within the k-NN radius (self excluded) of some support point."""
    dist_ss = np.linalg.norm(support[:, None] - support[None], axis=-1)
    radii = np.sort(dist_ss, axis=1)[:, k]
    dist_ps = np.linalg.norm(points[:, None] - support[None], axis=-1)
    return float((dist_ps <= radii[None]).any(1).mean())


@pytest.mark.parametrize("k", [1, 3])
def test_precision_recall_matches_a_brute_force_reference(k):
    g = torch.Generator().manual_seed(1)
    real = torch.randn(40, 2, generator=g, dtype=torch.float64)
    fake = 0.5 * torch.randn(30, 2, generator=g, dtype=torch.float64) + 1.5
    pr = precision_recall(real, fake, k=k)
    precision = _brute_force_coverage(fake.numpy(), real.numpy(), k)
    recall = _brute_force_coverage(real.numpy(), fake.numpy(), k)
    assert 0 < precision < 1 and 0 < recall < 1 and precision != recall
    assert pr == (pytest.approx(precision, abs=1e-12), pytest.approx(recall, abs=1e-12))


def test_class_coverage_kl_of_an_unbalanced_histogram():
    probs = torch.eye(4)[[0, 0, 1, 2, 0, 1]] + 0.01  # histogram (3, 2, 1, 0) / 6
    covered, kl = class_coverage(probs)
    hist = np.array([3, 2, 1, 0]) / 6
    assert covered == 3 and kl == pytest.approx(scipy.stats.entropy(hist, np.full(4, 0.25)))


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


def _rows(n: int, d: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


_SOFT = torch.softmax(_rows(6, 3), -1)
BAD_INPUT = {
    # name: (call, message fragment); every message names the argument at fault
    "list": (
        lambda: frechet_distance([[1.0, 2.0]], _rows(4)),
        r"features_a must be a floating tensor .*got list",
    ),
    "1-d": (
        lambda: frechet_distance(_rows(4), torch.zeros(3)),
        r"features_b .*torch\.Size\(\[3\]\)",
    ),
    "integer": (
        lambda: frechet_distance(torch.ones(4, 2, dtype=torch.long), _rows(4)),
        "features_a",
    ),
    "one row": (
        lambda: frechet_distance(_rows(1), _rows(4)),
        "features_a needs at least 2 rows, got 1",
    ),
    "kid a": (lambda: kernel_distance(torch.zeros(3), _rows(4)), "^features_a must"),
    "kid one row": (
        lambda: kernel_distance(_rows(4), _rows(1)),
        "features_b needs at least 2 rows",
    ),
    "kid nan": (lambda: kernel_distance(_rows(4), _rows(4) * math.nan), "features_b contains"),
    "kid subsets": (lambda: kernel_distance(_rows(4), _rows(4), num_subsets=0), "num_subsets"),
    "kid size": (
        lambda: kernel_distance(_rows(4), _rows(4), subset_size=1),
        "subset_size must be an int >= 2, got 1",
    ),
    "is negative": (
        lambda: inception_score(torch.tensor([[1.5, -0.5]])),
        "^probs must be non-negative",
    ),
    "is sums": (lambda: inception_score(torch.tensor([[0.75, 0.75]])), "summing to 1"),
    "is name": (lambda: inception_score(torch.zeros(3)), r"probs must"),
    "is splits": (
        lambda: inception_score(_SOFT, num_splits=7),
        r"num_splits must lie in \[1, 6\], got 7",
    ),
    "is zero splits": (
        lambda: inception_score(_SOFT, num_splits=0),
        r"num_splits must be an int >= 1, got 0",
    ),
    "pr real": (lambda: precision_recall(torch.zeros(3), _rows(4)), "^real_features must"),
    "pr fake": (lambda: precision_recall(_rows(4), torch.zeros(3)), "^fake_features must"),
    "pr k": (
        lambda: precision_recall(_rows(5, 3), _rows(6, 3), k=5),
        r"k must lie in \[1, 4\], got 5",
    ),
    "pr k fake": (lambda: precision_recall(_rows(6, 3), _rows(5, 3), k=5), r"\[1, 4\], got 5"),
    "modes samples": (lambda: mode_coverage(torch.zeros(3), _rows(2), radius=1.0), "^samples must"),
    "modes centers": (lambda: mode_coverage(_rows(2), torch.zeros(3), radius=1.0), "^centers must"),
    "modes count": (
        lambda: mode_coverage(_rows(2), _rows(2), radius=1.0, min_samples=0),
        "min_samples must",
    ),
    "classes": (lambda: class_coverage(torch.zeros(3)), "probs must"),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_messages(case):
    call, message = BAD_INPUT[case]
    with pytest.raises(ValueError, match=message):
        call()


def test_smallest_accepted_inputs_and_documented_defaults():
    """The boundaries of the checks (2 rows for moments, 1 for probabilities and samples) and
    the documented defaults of kernel_distance (100 subsets of 1000 rows) and k=3."""
    two = _rows(2)
    assert float(frechet_distance(two, two)) == pytest.approx(0.0, abs=1e-12)
    assert float(kernel_distance(two, _rows(2, seed=1), subset_size=2).std) >= 0
    assert inception_score(torch.tensor([[0.25, 0.75]])) == (pytest.approx(1.0), 0.0)
    assert inception_score(torch.ones(3, 1)) == (pytest.approx(1.0), 0.0)  # one class
    # rows may miss 1 by up to 1e-4 (float32 softmax outputs)
    assert inception_score(torch.tensor([[0.5, 0.5 + 5e-5]]))[0] == pytest.approx(1.0)
    two_splits = inception_score(_SOFT, num_splits=2)
    assert two_splits[1] > 0
    assert inception_score(_SOFT, num_splits=6)[1] == 0.0  # one row per split: IS 1 each
    assert mode_coverage(torch.zeros(1, 2), torch.zeros(1, 2), radius=1.0) == (1, 1.0)
    assert class_coverage(torch.tensor([[0.2, 0.8]])) == (1, pytest.approx(math.log(2)))
    # class_coverage counts every class, also those never predicted (K = 5, classes 0, 1 hit)
    assert class_coverage(torch.eye(5)[[0, 1]]) == (2, pytest.approx(math.log(5 / 2)))
    big_a, big_b = _rows(1001, 2, seed=2), _rows(1001, 2, seed=3) + 0.1
    default = kernel_distance(
        big_a, big_b, num_subsets=2, generator=torch.Generator().manual_seed(0)
    )
    explicit = kernel_distance(
        big_a, big_b, num_subsets=2, subset_size=1000, generator=torch.Generator().manual_seed(0)
    )
    assert default == explicit and float(default.std) > 0
    small_a, small_b = _rows(20, 2, seed=4), _rows(20, 2, seed=5)
    torch.manual_seed(1)
    default = kernel_distance(small_a, small_b)
    torch.manual_seed(1)
    assert default == kernel_distance(small_a, small_b, num_subsets=100, subset_size=1000)
    real, fake = _rows(30, seed=6), 0.7 * _rows(30, seed=7)
    assert precision_recall(real, fake) == precision_recall(real, fake, k=3)
    assert precision_recall(real, fake, k=3) != precision_recall(real, fake, k=4)


def test_balls_and_radii_are_closed():
    """A point exactly at the k-NN radius (or at mode_coverage's radius) is inside."""
    real = torch.tensor([[0.0], [1.0], [3.0]])  # 1-NN radii 1, 1, 2
    fake = torch.tensor([[-1.0], [5.5], [10.0]])  # -1.0 lies on the boundary of 0.0's ball
    assert precision_recall(real, fake, k=1).precision == pytest.approx(1 / 3)
    centers = torch.tensor([[0.0, 0.0]])
    assert mode_coverage(torch.tensor([[0.0, 0.5]]), centers, radius=0.5) == (1, 1.0)


def test_kernel_distance_subsets_are_capped_at_the_smaller_set():
    a, b = _rows(5, 3, seed=8), _rows(7, 3, seed=9)
    from pyrogen.analysis.metrics import _unbiased_mmd2

    for x, y in ((a, b), (b, a)):
        g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
        got = kernel_distance(x, y, num_subsets=2, subset_size=10, generator=g1)
        values = []
        for _ in range(2):
            ix = torch.randperm(len(x), generator=g2)[:5]
            iy = torch.randperm(len(y), generator=g2)[:5]
            values.append(float(_unbiased_mmd2(x[ix], y[iy])))
        assert float(got.mean) == pytest.approx(np.mean(values), rel=1e-12)
        assert float(got.std) == pytest.approx(np.std(values, ddof=1), rel=1e-12)
