"""to_inference_data draws in a particle plate when the model allows, one draw at a time
otherwise; both give draws whose recorded densities are those of the model and the guide."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer.autoguide import AutoNormal

from pyrogen.analysis import to_inference_data

Y = torch.tensor([[0.5, 1.2, 0.8], [1.9, 1.1, -0.3]])


def model(y):
    """A global mean, per-row offsets (plate at dim -2) and observations (plates -2, -1)."""
    mu = pyro.sample("mu", dist.Normal(0.0, 2.0))
    with pyro.plate("rows", y.shape[0], dim=-2):
        offset = pyro.sample("offset", dist.Normal(0.0, 1.0))
        with pyro.plate("cols", y.shape[1], dim=-1):
            pyro.sample("y", dist.Normal(mu + offset, 0.5), obs=y)


def guide(y):
    pyro.sample("mu", dist.Normal(0.7, 0.3))
    with pyro.plate("rows", y.shape[0], dim=-2):
        pyro.sample("offset", dist.Normal(torch.tensor([[0.2], [-0.1]]), 0.4))


def densities(mu, offset, y):
    """log p(y, mu, offset), log q(mu, offset) and log p(y | .) per draw, computed by hand."""
    prior = dist.Normal(0.0, 2.0).log_prob(mu) + dist.Normal(0.0, 1.0).log_prob(offset).sum(-1)
    log_lik = dist.Normal(mu[:, None, None] + offset[..., None], 0.5).log_prob(y)
    log_q = dist.Normal(0.7, 0.3).log_prob(mu)
    log_q = log_q + dist.Normal(torch.tensor([0.2, -0.1]), 0.4).log_prob(offset).sum(-1)
    return prior + log_lik.sum((-1, -2)), log_q, log_lik


@pytest.mark.parametrize("vectorize", [None, True, False])
def test_recorded_densities_are_the_model_and_guide_at_each_draw(vectorize):
    n = 1200 if vectorize is not False else 40  # more than one vectorized batch
    idata = to_inference_data(model, guide, Y, num_samples=n, vectorize=vectorize)
    mu = torch.as_tensor(idata.posterior["mu"].values[0])
    offset = torch.as_tensor(idata.posterior["offset"].values[0])
    assert mu.shape == (n,) and offset.shape == (n, 2, 1)
    assert idata.posterior["offset"].dims == ("chain", "draw", "rows", "offset_dim_1")
    lp, log_q, log_lik = densities(mu, offset[..., 0], Y)
    torch.testing.assert_close(torch.as_tensor(idata.sample_stats["lp"].values[0]), lp)
    torch.testing.assert_close(torch.as_tensor(idata.sample_stats["log_q"].values[0]), log_q)
    ll = idata.log_likelihood["y"]
    assert ll.dims == ("chain", "draw", "rows", "cols")
    torch.testing.assert_close(torch.as_tensor(ll.values[0]), log_lik)
    pp = torch.as_tensor(idata.posterior_predictive["y"].values[0])
    assert pp.shape == (n, 2, 3)
    # the predictive draws are N(mu + offset, 0.5) around their own draw's latents
    z = (pp - mu[:, None, None] - offset) / 0.5
    assert abs(float(z.mean())) < 5 / math.sqrt(z.numel())
    assert abs(float(z.std()) - 1) < 0.2
    # draws differ from each other (not one draw repeated)
    assert mu.unique().numel() == n


def test_an_autoguide_is_vectorized():
    pyro.clear_param_store()
    auto = AutoNormal(model)
    auto(Y)
    idata = to_inference_data(model, auto, Y, num_samples=300, vectorize=True)
    mu = torch.as_tensor(idata.posterior["mu"].values[0])
    offset = torch.as_tensor(idata.posterior["offset"].values[0])[..., 0]
    lp, _, _ = densities(mu, offset, Y)
    torch.testing.assert_close(torch.as_tensor(idata.sample_stats["lp"].values[0]), lp)
    # log q is the autoguide's own density of the draw (no transforms: real latents)
    loc, scale = auto.locs, auto.scales
    log_q = dist.Normal(loc.mu, scale.mu).log_prob(mu)
    log_q = log_q + dist.Normal(loc.offset[:, 0], scale.offset[:, 0]).log_prob(offset).sum(-1)
    torch.testing.assert_close(torch.as_tensor(idata.sample_stats["log_q"].values[0]), log_q)


def fixed_shape_model():
    z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
    pyro.sample("y", dist.Normal(z.reshape(2).sum(), 1.0), obs=torch.tensor(1.3))


def fixed_shape_guide():
    pyro.sample("z", dist.Normal(torch.tensor([0.4, 0.4]), 0.8).to_event(1))


def summing_model():
    """Sums over every dim of ``z``, so in a particle plate all draws would share one mean."""
    z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
    pyro.sample("y", dist.Normal(z.sum(), 1.0), obs=torch.tensor(1.3))


@pytest.mark.parametrize("bad_model", [fixed_shape_model, summing_model])
def test_a_model_that_cannot_be_vectorized_runs_one_draw_at_a_time(bad_model):
    idata = to_inference_data(bad_model, fixed_shape_guide, num_samples=30)
    z = torch.as_tensor(idata.posterior["z"].values[0])
    assert z.shape == (30, 2)
    expected = dist.Normal(z.sum(-1), 1.0).log_prob(torch.tensor(1.3))
    expected = expected + dist.Normal(0.0, 1.0).log_prob(z).sum(-1)
    torch.testing.assert_close(torch.as_tensor(idata.sample_stats["lp"].values[0]), expected)
    with pytest.raises(ValueError, match="vectorize=True"):
        to_inference_data(bad_model, fixed_shape_guide, num_samples=30, vectorize=True)


def test_vectorize_must_be_a_bool_or_none():
    with pytest.raises(TypeError, match="vectorize"):
        to_inference_data(model, guide, Y, num_samples=3, vectorize="yes")
