"""to_inference_data, psis_khat and importance_resample on a conjugate normal-normal model."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyrogen.analysis import importance_resample, psis_khat, to_inference_data

Y = torch.tensor([0.5, 1.2, 0.8, 1.9, 1.1])
PRIOR_SD = 2.0


def model(y):
    mu = pyro.sample("mu", dist.Normal(0.0, PRIOR_SD))
    pyro.deterministic("two_mu", 2 * mu)
    with pyro.plate("obs", len(y)):
        pyro.sample("y", dist.Normal(mu, 1.0), obs=y)


def posterior(y):
    precision = PRIOR_SD**-2 + len(y)
    return float(y.sum() / precision), precision**-0.5


def log_evidence(y):
    cov = torch.eye(len(y)) + PRIOR_SD**2 * torch.ones(len(y), len(y))
    return float(dist.MultivariateNormal(torch.zeros(len(y)), cov).log_prob(y))


def gaussian_guide(shift=0.0, scale=1.0):
    def guide(y):
        mean, sd = posterior(y)
        pyro.sample("mu", dist.Normal(mean + shift * sd, scale * sd))

    return guide


@pytest.mark.slow
def test_inference_data_matches_the_analytic_posterior():
    y = Y.to(torch.get_default_dtype())
    n = 2000
    idata = to_inference_data(model, gaussian_guide(), y, num_samples=n)
    assert {
        "posterior",
        "posterior_predictive",
        "log_likelihood",
        "observed_data",
        "sample_stats",
    } <= set(idata.groups())
    mean, sd = posterior(y)
    mu = torch.as_tensor(idata.posterior["mu"].values)
    assert mu.shape == (1, n)
    assert abs(float(mu.mean()) - mean) < 4 * sd / math.sqrt(n)
    assert abs(float(mu.std()) / sd - 1) < 0.06
    torch.testing.assert_close(torch.as_tensor(idata.posterior["two_mu"].values), 2 * mu)
    # Per-observation log-likelihood at each draw, with the plate's name as its dim.
    ll = idata.log_likelihood["y"]
    assert ll.dims == ("chain", "draw", "obs") and ll.shape == (1, n, 5)
    expected = dist.Normal(mu[0, :, None], 1.0).log_prob(y)
    torch.testing.assert_close(torch.as_tensor(ll.values[0]), expected)
    assert idata.posterior_predictive["y"].dims == ("chain", "draw", "obs")
    assert idata.observed_data["y"].dims == ("obs",)
    torch.testing.assert_close(torch.as_tensor(idata.observed_data["y"].values), y)
    # The posterior predictive spreads like N(mean, sd^2 + 1).
    pp = torch.as_tensor(idata.posterior_predictive["y"].values).reshape(-1)
    assert abs(float(pp.std()) / math.sqrt(sd**2 + 1) - 1) < 0.06
    assert idata.attrs["inference_method"] == "SVI (guide)"


def test_khat_small_for_exact_guide_and_log_evidence_exact():
    y = Y.to(torch.get_default_dtype())
    d = psis_khat(model, gaussian_guide(), y, num_samples=500)
    assert d.khat < 0.5 and d.status == "good"
    assert d.log_evidence == pytest.approx(log_evidence(y), abs=1e-6)
    assert d.ess == pytest.approx(500)


def test_khat_large_for_misspecified_guide():
    y = Y.to(torch.get_default_dtype())
    d = psis_khat(model, gaussian_guide(shift=1.0, scale=0.25), y, num_samples=2000)
    assert d.khat > 0.7 and d.status == "unreliable"
    assert d.ess < 200
    assert d.log_evidence < log_evidence(y)


def test_importance_resampling_corrects_a_wide_guide():
    y = Y.to(torch.get_default_dtype())
    mean, sd = posterior(y)
    guide = gaussian_guide(shift=0.5, scale=1.5)
    samples, d = importance_resample(
        model,
        guide,
        y,
        num_samples=4000,
        num_proposals=20000,
        generator=torch.Generator().manual_seed(0),
    )
    assert d.khat < 0.7
    mu = samples["mu"]
    assert mu.shape == (4000,)
    assert abs(float(mu.mean()) - mean) < 0.05 * sd  # the guide itself is 0.5 sd off
    assert abs(float(mu.std()) / sd - 1) < 0.06  # the guide itself is 50% too wide


def test_importance_resampling_refuses_unreliable_weights():
    y = Y.to(torch.get_default_dtype())
    with pytest.raises(ValueError, match="k-hat"):
        importance_resample(model, gaussian_guide(shift=1.0, scale=0.25), y, num_samples=200)


@pytest.mark.parametrize("fn", [to_inference_data, psis_khat])
def test_bad_input(fn):
    y = Y.to(torch.get_default_dtype())
    with pytest.raises(ValueError, match="num_samples"):
        fn(model, gaussian_guide(), y, num_samples=0)

    def wrong_guide(y):
        pyro.sample("nu", dist.Normal(0.0, 1.0))

    with pytest.raises(ValueError, match="'mu'"):
        fn(model, wrong_guide, y, num_samples=10)


def test_psis_khat_falls_back_to_one_draw_at_a_time_on_a_model_that_is_not_vectorizable():
    """A model with a hand-fixed shape (``reshape(2)``) defeats the particle plate; psis_khat
    warns and weighs one draw at a time. With the exact posterior as the guide every weight
    equals log p(y) = log N(y; 0, 3)."""
    y = torch.tensor(1.3)

    def fixed_shape_model():
        z = pyro.sample("z", pyro.distributions.Normal(torch.zeros(2), 1.0).to_event(1))
        pyro.sample("y", pyro.distributions.Normal(z.reshape(2).sum(), 1.0), obs=y)

    cov = torch.eye(2) - torch.ones(2, 2) / 3
    mean = torch.full((2,), float(y) / 3)

    def exact_guide():
        pyro.sample("z", pyro.distributions.MultivariateNormal(mean, cov))

    with pytest.warns(RuntimeWarning, match="one draw at a time"):
        d = psis_khat(fixed_shape_model, exact_guide, num_samples=20)
    expected = pyro.distributions.Normal(0.0, 3.0**0.5).log_prob(y)
    assert d.log_weights.shape == (20,)
    torch.testing.assert_close(d.log_weights, expected.expand(20).to(d.log_weights))
