"""Posterior-collapse diagnostics: KL per dimension and active units."""

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyrogen.analysis import active_units, kl_per_dimension


def model(x):
    with pyro.plate("data", len(x)):
        z = pyro.sample("z", dist.Normal(0.0, 1.0).expand([3]).to_event(1))
        pyro.sample("x", dist.Normal(z[..., 0], 1.0), obs=x)


def guide(x):
    with pyro.plate("data", len(x)):
        loc = torch.stack([x / 2, 0.001 * x, torch.full_like(x, 0.7)], -1)
        pyro.sample("z", dist.Normal(loc, torch.tensor([0.5**0.5, 1.0, 0.3])).to_event(1))


def test_kl_per_dimension_is_the_batch_average_of_analytic_kls():
    x = torch.linspace(-2, 2, 11)
    kl = kl_per_dimension(model, guide, x)["z"]
    loc = torch.stack([x / 2, 0.001 * x, torch.full_like(x, 0.7)], -1)
    q = dist.Normal(loc, torch.tensor([0.5**0.5, 1.0, 0.3]))
    expected = torch.distributions.kl_divergence(q, dist.Normal(0.0, 1.0)).mean(0)
    assert kl.shape == (3,)
    assert torch.allclose(kl, expected)
    mc = kl_per_dimension(model, guide, x, analytic_kl=False, num_samples=4000)["z"]
    assert torch.allclose(mc, expected, atol=0.05)


def test_active_units_follow_the_burda_criterion():
    x = torch.linspace(-2, 2, 11)
    variance, count = active_units(model, guide, x)["z"]
    assert count == 1  # only the first dimension's posterior mean moves with x
    assert torch.allclose(
        variance, torch.stack([(x / 2).var(), (0.001 * x).var(), torch.tensor(0.0)])
    )


def test_active_units_without_closed_form_mean_uses_draws():
    def flow_guide(x):
        base = dist.Normal(torch.stack([x, torch.zeros_like(x)], -1), 0.5)
        t = dist.transforms.AffineTransform(0.0, 2.0)
        with pyro.plate("data", len(x)):
            pyro.sample("z", dist.TransformedDistribution(base, [t]).to_event(1))

    def model2(x):
        with pyro.plate("data", len(x)):
            z = pyro.sample("z", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
            pyro.sample("x", dist.Normal(z[..., 0], 1.0), obs=x)

    x = torch.linspace(-1, 1, 200)
    # the means of 50 draws of sd 1 vary by 1/50 = 0.02 > 0.01 between data points by chance
    # alone; the Monte Carlo correction removes that, so the collapsed unit is not active
    variance, count = active_units(model2, flow_guide, x, num_samples=50)["z"]
    assert count == 1
    assert variance[1] < 0.005
    assert variance[0] == pytest.approx(float((2 * x).var()), rel=0.05)


def test_bad_arguments():
    x = torch.linspace(-2, 2, 5)
    with pytest.raises(ValueError, match="threshold"):
        active_units(model, guide, x, threshold=-1.0)
    with pytest.raises(ValueError, match="num_samples"):
        kl_per_dimension(model, guide, x, num_samples=0)
    with pytest.raises(ValueError, match="batch element"):
        active_units(model, guide, x[:1])
