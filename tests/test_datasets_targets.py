"""Target densities: normalization on a grid, exact log Z, and samplers that match log_prob."""

import math

import pytest
import torch

from pyrogen import datasets

# (target, integration window wide enough to hold all but ~1e-7 of the mass)
TWO_D = {
    "banana": (lambda: datasets.Banana(a=1.5, b=0.7), ((-9.0, 9.0), (-8.0, 60.0))),
    "ring": (lambda: datasets.Ring(radius=1.5, scale=0.3), ((-4.0, 4.0), (-4.0, 4.0))),
    "ring-wide": (lambda: datasets.Ring(radius=0.5, scale=0.6), ((-6.0, 6.0), (-6.0, 6.0))),
    "mixture": (lambda: datasets.GaussianMixture(3, 2.0, 0.4), ((-5.0, 5.0), (-5.0, 5.0))),
    "two-moons": (lambda: datasets.TwoMoonsEnergy(), ((-5.0, 5.0), (-5.0, 5.0))),
}


def grid(window, n=1001):
    (x0, x1), (y0, y1) = window
    xs = torch.linspace(x0, x1, n, dtype=torch.float64)
    ys = torch.linspace(y0, y1, n, dtype=torch.float64)
    return torch.stack(torch.meshgrid(xs, ys, indexing="ij"), -1), xs, ys


def integrate_grid(values, xs, ys, dim=-1):
    return torch.trapezoid(torch.trapezoid(values, ys, dim=dim), xs, dim=dim)


@pytest.mark.parametrize("name", list(TWO_D))
def test_log_prob_integrates_to_one_and_log_partition_is_right(name):
    make, window = TWO_D[name]
    target = make()
    points, xs, ys = grid(window)
    mass = integrate_grid(target.log_prob(points).double().exp(), xs, ys)
    assert abs(float(mass) - 1) < 1e-5
    z = integrate_grid(target.unnormalized_log_prob(points).double().exp(), xs, ys)
    assert abs(math.log(float(z)) - target.log_partition) < 1e-5


def test_funnel_normalization_by_change_of_variables():
    """Integrate over (v, u) with x = exp(v / 2) u, whose Jacobian is exp(v / 2): the funnel's
    neck and mouth become one smooth window."""
    target = datasets.NealsFunnel(2)
    points, vs, us = grid(((-30.0, 30.0), (-12.0, 12.0)), 1001)
    v, u = points[..., 0], points[..., 1]
    x = torch.stack([v, torch.exp(v / 2) * u], -1)
    mass = integrate_grid((target.log_prob(x).double() + v / 2).exp(), vs, us)
    assert abs(float(mass) - 1) < 1e-6
    # the normalizer drops exactly the Gaussian constants, for any dimension
    x = torch.randn(7, 5)
    five = datasets.NealsFunnel(5)
    v, rest = x[:, 0], x[:, 1:]
    expected = torch.distributions.Normal(0.0, 3.0).log_prob(v) + torch.distributions.Normal(
        0.0, torch.exp(v / 2).unsqueeze(-1)
    ).log_prob(rest).sum(-1)
    torch.testing.assert_close(five.log_prob(x), expected)


def moments(x):
    """Test functions whose expectations pin down a 2-D distribution's shape."""
    return torch.stack(
        [
            x[..., 0],
            x[..., 1],
            x[..., 0] ** 2,
            x[..., 1] ** 2,
            x[..., 0] * x[..., 1],
            x.norm(dim=-1),
            torch.cos(x[..., 0]) * torch.sin(x[..., 1]),
            (x[..., 0] > 0.3).double(),
        ],
        -1,
    ).double()


@pytest.mark.parametrize("name", list(TWO_D))
def test_sampler_matches_log_prob(name):
    make, window = TWO_D[name]
    target = make()
    points, xs, ys = grid(window, 801)
    density = target.log_prob(points).double().exp()
    exact = integrate_grid(density.unsqueeze(-1) * moments(points), xs, ys, dim=-2)
    samples = target.sample((20_000,))
    assert samples.shape == (20_000, 2) and samples.dtype == torch.get_default_dtype()
    f = moments(samples)
    z = (f.mean(0) - exact) / (f.std(0) / math.sqrt(f.shape[0]))
    assert z.abs().max() < 4.5, z
    # the log-density of the draws has the entropy's expectation
    entropy = -integrate_grid(density * target.log_prob(points).double().nan_to_num(), xs, ys)
    lp = target.log_prob(samples).double()
    assert abs(float(-lp.mean() - entropy)) < 4.5 * float(lp.std()) / math.sqrt(lp.numel())


def test_funnel_sampler_is_the_funnel():
    x = datasets.NealsFunnel(4).sample((40_000,)).double()
    v, rest = x[:, 0], x[:, 1:]
    assert abs(float(v.mean())) < 4.5 * 3 / 200 and abs(float(v.std()) - 3) < 0.05
    white = (rest / torch.exp(v / 2).unsqueeze(-1)).reshape(-1)
    assert abs(float(white.mean())) < 0.02 and abs(float(white.std()) - 1) < 0.01


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda: datasets.Banana(a=2.0), math.log(2 * math.pi * 2.0)),
        (lambda: datasets.GaussianMixture(5, 3.0, 0.5), math.log(2 * math.pi * 0.25 * 5)),
        (lambda: datasets.NealsFunnel(3), 0.5 * math.log(2 * math.pi * 9) + math.log(2 * math.pi)),
    ],
)
def test_closed_form_log_partitions(make, expected):
    target = make()
    assert target.log_partition_is_exact
    assert target.log_partition == pytest.approx(expected, rel=1e-12)


def test_two_moons_log_partition_is_numerical_and_cached():
    target = datasets.TwoMoonsEnergy()
    assert not target.log_partition_is_exact
    assert target.log_partition == datasets.TwoMoonsEnergy().log_partition


def test_targets_broadcast_and_expand():
    target = datasets.Banana()
    assert target.event_shape == (2,) and target.batch_shape == ()
    assert target.log_prob(torch.zeros(3, 4, 2)).shape == (3, 4)
    assert target.expand((5,)).log_prob(torch.zeros(5, 2)).shape == (5,)
    assert target.sample((2, 3)).shape == (2, 3, 2)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: datasets.Banana(a=0.0), "a must be"),
        (lambda: datasets.Banana(b=math.inf), "b must be"),
        (lambda: datasets.Ring(radius=-1.0), "radius must be"),
        (lambda: datasets.Ring(scale=math.nan), "scale must be"),
        (lambda: datasets.NealsFunnel(1), "dim must be"),
        (lambda: datasets.GaussianMixture(0), "num_components must be"),
        (lambda: datasets.GaussianMixture(2, scale=math.inf), "scale must be"),
    ],
)
def test_bad_arguments_raise(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_wrong_event_shape_raises():
    with pytest.raises(ValueError, match=r"shape \(\*batch, 2\)"):
        datasets.Ring().log_prob(torch.zeros(4, 3))
