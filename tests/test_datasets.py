"""Offline data: the digits split, dequantization and the pixel-space density accounting."""

import math

import pyro.distributions as dist
import pytest
import torch

from pyrogen import datasets


def test_digits_split_is_stratified_and_documented():
    x_tr, x_te, _y_tr, y_te = datasets.load_digits()
    assert x_tr.shape == (1437, 64) and x_te.shape == (360, 64)
    assert set(x_tr.unique().tolist()) <= set(range(17))
    assert torch.bincount(y_te).min() >= 35  # every class held out (stratified)
    again = datasets.load_digits()
    assert torch.equal(x_te, again[1])  # deterministic


def test_dequantize_stays_in_the_bin():
    x = torch.randint(0, 17, (1000, 64)).double()
    v = datasets.dequantize(x)
    assert ((v >= x) & (v < x + 1)).all()
    with pytest.raises(TypeError):
        datasets.dequantize(torch.ones(3, dtype=torch.long))


def test_logit_transform_density_integrates_to_one_in_pixel_space():
    """A density pushed through logit_transform integrates to 1 over the pixel scale."""
    levels = 17
    t = datasets.logit_transform(levels)
    d = dist.TransformedDistribution(dist.Normal(torch.tensor(-1.0), 1.5), [t])
    lo, hi = t(torch.tensor(-40.0)), t(torch.tensor(40.0))
    grid = torch.linspace(float(lo), float(hi), 200_001)[1:-1]
    mass = torch.trapezoid(d.log_prob(grid).exp(), grid)
    assert abs(float(mass) - 1) < 1e-4
    v = torch.tensor([0.5, 8.2, 16.9])
    torch.testing.assert_close(t(t.inv(v)), v)


def test_bits_per_dim():
    assert datasets.bits_per_dim(-64 * math.log(2), 64) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        datasets.bits_per_dim(1.0, 0)


@pytest.mark.parametrize(
    "sampler",
    [datasets.two_moons, datasets.eight_gaussians, datasets.checkerboard, datasets.pinwheel],
)
def test_toy_densities(sampler):
    x = sampler(500, generator=torch.Generator().manual_seed(0))
    assert x.shape == (500, 2) and torch.isfinite(x).all()
    assert x.dtype == torch.get_default_dtype()
    with pytest.raises(ValueError):
        sampler(0)


def test_eight_gaussians_has_eight_modes():
    x = datasets.eight_gaussians(4000, generator=torch.Generator().manual_seed(0))
    angle = torch.atan2(x[:, 1], x[:, 0])
    mode = torch.round(angle / (2 * math.pi / 8)) % 8
    counts = torch.bincount(mode.long(), minlength=8)
    assert (counts > 400).all()


def test_checkerboard_only_on_black_squares():
    x = datasets.checkerboard(2000, generator=torch.Generator().manual_seed(0))
    cells = torch.floor(x[:, 0]) + torch.floor(x[:, 1])
    assert (cells % 2 == 0).all()


@pytest.mark.parametrize(
    "test_size",
    [lambda: __import__("numpy").int64(360), lambda: 0.2, lambda: __import__("numpy").float64(0.2)],
    ids=["numpy-int", "fraction", "numpy-fraction"],
)
def test_digits_test_size_of_any_integer_type_or_a_fraction(test_size):
    """As in scikit-learn, ``test_size`` is a count (NumPy integers too) or a fraction; 0.2
    of 1797 images rounds up to the default 360."""
    x_tr, x_te, _, _ = datasets.load_digits(test_size=test_size())
    assert x_tr.shape == (1437, 64) and x_te.shape == (360, 64)
    assert torch.equal(x_te, datasets.load_digits()[1])


@pytest.mark.parametrize(
    ("test_size", "error"),
    [
        (True, TypeError),
        ("100", TypeError),
        (9, ValueError),
        (1788, ValueError),
        (360.0, ValueError),
        (0.001, ValueError),
        (0.0, ValueError),
        (float("nan"), ValueError),
    ],
    ids=["bool", "str", "too-few", "too-many", "float-count", "tiny-fraction", "zero", "nan"],
)
def test_digits_test_size_errors(test_size, error):
    with pytest.raises(error, match="test_size"):
        datasets.load_digits(test_size=test_size)
