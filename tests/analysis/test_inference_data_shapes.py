"""``to_inference_data`` and ``log_likelihood`` on the shapes users write: latents and
observations with event dims inside a data plate, masked observations, subsampled plates."""

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import pytest
import torch

from pyrogen.analysis import to_inference_data
from pyrogen.infer import log_likelihood

N, D = 4, 3


def event_model(x):
    """A scalar latent and a ``D``-vector latent per data point, a ``D``-vector observation."""
    with pyro.plate("data", N):
        s = pyro.sample("s", dist.LogNormal(0.0, 0.3))
        z = pyro.sample("z", dist.Normal(torch.zeros(D), 1.0).to_event(1))
        pyro.sample("x", dist.Normal(z, s.unsqueeze(-1)).to_event(1), obs=x)


def event_guide(x):
    with pyro.plate("data", N):
        pyro.sample("s", dist.LogNormal(0.0, 0.1))
        pyro.sample("z", dist.Normal(x / 2, 0.7).to_event(1))


@pytest.mark.parametrize("vectorize", [True, False])
def test_event_dims_are_not_taken_for_plates(vectorize):
    """The plate names the size-``N`` axis; the event axis is ``{site}_dim_1``; no NaN from
    misaligned dims (a scalar latent in the same plate used to force ``z`` to ``(N, N)``)."""
    x = torch.randn(N, D)
    idata = to_inference_data(event_model, event_guide, x, num_samples=6, vectorize=vectorize)
    z = idata.posterior["z"]
    assert z.dims == ("chain", "draw", "data", "z_dim_1") and z.shape == (1, 6, N, D)
    assert idata.posterior["s"].dims == ("chain", "draw", "data")
    assert idata.posterior_predictive["x"].dims == ("chain", "draw", "data", "x_dim_1")
    assert idata.observed_data["x"].dims == ("data", "x_dim_1")
    assert idata.log_likelihood["x"].dims == ("chain", "draw", "data")
    assert idata.log_likelihood["x"].shape == (1, 6, N)
    assert not bool(z.isnull().any())
    # the values are the draws: the observed data are x, each log-likelihood the model's
    torch.testing.assert_close(torch.as_tensor(idata.observed_data["x"].values), x)
    z0, s0 = (torch.as_tensor(idata.posterior[k].values[0, 0]) for k in ("z", "s"))
    expected = dist.Normal(z0, s0.unsqueeze(-1)).to_event(1).log_prob(x)
    got = torch.as_tensor(idata.log_likelihood["x"].values[0, 0])
    torch.testing.assert_close(got, expected.to(got.dtype))


def masked_model(x, mask):
    mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
    with pyro.plate("data", len(x)), poutine.mask(mask=mask):
        pyro.sample("x", dist.Normal(mu, 1.0), obs=x)


def masked_guide(x, mask):
    pyro.sample("mu", dist.Normal(0.5, 0.4))


def test_masked_observations_count_nothing():
    """A masked-out (missing) observation adds nothing to ``lp`` and has log-likelihood 0, as in
    Pyro's ``log_prob_sum``: here a placeholder 100 would otherwise give about -5000."""
    x = torch.tensor([0.3, 1.2, 100.0])
    mask = torch.tensor([True, True, False])
    idata = to_inference_data(masked_model, masked_guide, x, mask, num_samples=5)
    mu = torch.as_tensor(idata.posterior["mu"].values[0])
    expected = dist.Normal(0.0, 1.0).log_prob(mu) + dist.Normal(mu[:, None], 1.0).log_prob(
        x[:2]
    ).sum(-1)
    lp = torch.as_tensor(idata.sample_stats["lp"].values[0])
    torch.testing.assert_close(lp, expected.to(lp.dtype))
    ll = torch.as_tensor(idata.log_likelihood["x"].values[0])
    assert torch.equal(ll[:, 2], torch.zeros_like(ll[:, 2]))
    torch.testing.assert_close(
        ll[:, :2], dist.Normal(mu[:, None], 1.0).log_prob(x[:2]).to(ll.dtype)
    )


def subsampled(subsample=None):
    def model(x):
        with pyro.plate("data", len(x), subsample_size=3, subsample=subsample) as idx:
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            pyro.sample("x", dist.Normal(z, 1.0), obs=x[idx])

    def guide(x):
        with pyro.plate("data", len(x), subsample_size=3, subsample=subsample) as idx:
            pyro.sample("z", dist.Normal(x[idx] / 2, 0.5**0.5))

    return model, guide


def test_a_random_subsample_is_refused_and_fixed_indices_are_scored():
    """Each run of a randomly subsampling plate sees other data points, so per-point results
    combined over runs would mix them (the estimates matched no data point); fixed indices
    give the exact marginal of those points (an exact guide)."""
    x = torch.arange(10.0)
    model, guide = subsampled()
    with pytest.raises(ValueError, match="random subsample"):
        log_likelihood(model, guide, x, num_samples=8, batch_size=4)
    with pytest.raises(ValueError, match="random subsample"):
        to_inference_data(model, guide, x, num_samples=4)
    idx = torch.tensor([7, 1, 4])
    model, guide = subsampled(idx)
    r = log_likelihood(model, guide, x, num_samples=8, batch_size=4)
    exact = dist.Normal(0.0, 2**0.5).log_prob(x[idx])
    torch.testing.assert_close(r.log_likelihood, exact.to(r.log_likelihood.dtype))
    assert r.data_plates == ("data",)
