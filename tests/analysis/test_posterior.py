"""to_inference_data, psis_khat and importance_resample on a conjugate normal-normal model."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyrogen.analysis import importance_resample, psis_khat, to_inference_data
from tests import same_draws

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
        # drawn in float64: every dtype weighs the same draws
        pyro.sample("mu", same_draws.Normal(mean + shift * sd, scale * sd))

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


def test_diagnostic_counts_its_draws_and_repr_hides_the_weights():
    y = Y.to(torch.get_default_dtype())
    d = psis_khat(model, gaussian_guide(), y)  # the documented default S = 1000
    assert d.num_samples == 1000 and d.log_weights.shape == (1000,)
    text = repr(d)
    assert "log_weights=tensor(shape=(1000,))" in text and "status='good'" in text
    assert str(float(d.log_weights[0])) not in text


def test_near_exact_guide_has_a_finite_khat_and_fewer_effective_draws():
    """Weights that vary by a fraction of a nat are not 'constant': their tail is fitted."""
    y = Y.to(torch.get_default_dtype())
    d = psis_khat(model, gaussian_guide(shift=0.1, scale=1.05), y, num_samples=400)
    assert float(d.log_weights.max() - d.log_weights.min()) < 1.0
    assert math.isfinite(d.khat) and d.khat < 0.5
    assert 300 < d.ess < 400


def test_float32_exact_guide_weights_are_constant_up_to_rounding():
    """In float32 the exact guide's weights at ``|log w| ~ 20`` differ only by rounding: no
    tail is fitted (k-hat ``-inf``) and every draw counts."""
    y = torch.tensor([10.0, 9.0, 11.0, 10.5, 9.5])
    exact = torch.tensor(log_evidence(y.double()))
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    try:
        d = psis_khat(model, gaussian_guide(), y, num_samples=200)
    finally:
        torch.set_default_dtype(old)
    assert d.log_weights.dtype == torch.float32 and float(d.log_weights.std()) > 0
    assert float(exact) < -15  # rounding of |log w| ~ 20 exceeds 100 eps / |log w|
    assert d.khat == -math.inf and d.ess == pytest.approx(200)


def test_count_errors_name_the_argument():
    y = Y.to(torch.get_default_dtype())
    with pytest.raises(ValueError, match=r"^num_samples must be an int >= 10, got 5$"):
        psis_khat(model, gaussian_guide(), y, num_samples=5)
    with pytest.raises(ValueError, match=r"^num_proposals must be an int >= 10, got 5$"):
        importance_resample(model, gaussian_guide(), y, num_samples=5, num_proposals=5)
    with pytest.raises(ValueError, match=r"pass allow_unreliable=True$"):
        importance_resample(model, gaussian_guide(shift=1.0, scale=0.25), y, num_samples=200)


def test_all_zero_weights_are_an_error():
    y = Y.to(torch.get_default_dtype())

    def impossible_model(y):
        model(y)
        pyro.factor("never", torch.tensor(-math.inf))

    with pytest.raises(ValueError, match=r"^every importance weight is zero or non-finite"):
        psis_khat(impossible_model, gaussian_guide(), y, num_samples=20)


def vector_model(y, *, offset):
    mu = pyro.sample("mu", dist.Normal(torch.zeros(2), PRIOR_SD).to_event(1))
    with pyro.plate("obs", len(y)):
        pyro.sample("y", dist.Normal(mu.sum(-1) + offset, 1.0), obs=y)


def vector_guide(y, *, offset):
    pyro.sample("mu", dist.Normal(torch.full((2,), float(y.mean() - offset) / 2), 1.0).to_event(1))


def test_importance_resample_defaults_vector_sites_keywords_and_its_generator():
    """Default ``num_samples`` (1000) and ``num_proposals`` (10 per sample); a vector latent
    keeps its event shape; keyword arguments reach model and guide; the resampling step draws
    from the given generator only."""
    y = Y.to(torch.get_default_dtype())
    samples, d = importance_resample(
        vector_model, vector_guide, y, offset=3.0, allow_unreliable=True
    )
    assert samples["mu"].shape == (1000, 2) and d.num_samples == 10000
    draws = []
    for seed in (0, 1):
        pyro.set_rng_seed(7)
        generator = torch.Generator().manual_seed(seed)
        draws.append(
            importance_resample(
                vector_model,
                vector_guide,
                y,
                offset=3.0,
                num_samples=50,
                allow_unreliable=True,
                generator=generator,
            )[0]["mu"]
        )
    assert not torch.equal(draws[0], draws[1])


def test_sequential_fallback_passes_arguments_and_warns():
    """The one-draw-at-a-time fallback gets the model's positional and keyword arguments and
    says so in a warning."""
    y = torch.tensor(1.3)

    def fixed_shape_model(y, *, shift):
        z = pyro.sample("z", pyro.distributions.Normal(torch.zeros(2), 1.0).to_event(1))
        pyro.sample("y", pyro.distributions.Normal(z.reshape(2).sum() + shift, 1.0), obs=y)

    cov = torch.eye(2) - torch.ones(2, 2) / 3

    def exact_guide(y, *, shift):
        mean = torch.full((2,), float(y - shift) / 3)
        pyro.sample("z", pyro.distributions.MultivariateNormal(mean, cov))

    with pytest.warns(
        RuntimeWarning, match=r"computing the importance weights one draw at a time$"
    ):
        d = psis_khat(fixed_shape_model, exact_guide, y, shift=0.5, num_samples=20)
    expected = pyro.distributions.Normal(0.5, 3.0**0.5).log_prob(y)
    torch.testing.assert_close(d.log_weights, expected.expand(20).to(d.log_weights))


class NamelessGuide:
    """A callable guide object without ``__name__`` (as autoguides are)."""

    def __call__(self, y):
        mean, sd = posterior(y)
        with pyro.plate("obs", len(y)):
            pyro.sample("eps", dist.Normal(0.0, 1.0))
        pyro.sample("mu", dist.Normal(mean, sd))


def plate_model(y):
    mu = pyro.sample("mu", dist.Normal(0.0, PRIOR_SD))
    with pyro.plate("obs", len(y)):
        eps = pyro.sample("eps", dist.Normal(0.0, 1.0))
        pyro.sample("y", dist.Normal(mu + 0.0 * eps, 1.0), obs=y)
    for i in pyro.plate("pair", 2):  # a sequential plate has no dim to name
        pyro.sample(f"t{i}", dist.Normal(mu, 1.0), obs=y[i])


def test_inference_data_stats_dims_attrs_and_progress(capsys):
    """Per draw: ``lp`` is ``log p(y, mu, eps)`` and ``log_q`` the guide's log density, exactly;
    a plate latent's dims carry the plate's name; the attributes name the libraries and the
    guide's class; ``progress=True`` shows a bar labelled with the function."""
    y = Y.to(torch.get_default_dtype())
    guide = NamelessGuide()
    idata = to_inference_data(plate_model, guide, y, num_samples=4, progress=True)
    assert "to_inference_data" in capsys.readouterr().err
    mu = torch.as_tensor(idata.posterior["mu"].values[0])
    eps = torch.as_tensor(idata.posterior["eps"].values[0])
    mean, sd = posterior(y)
    log_p = (
        dist.Normal(0.0, PRIOR_SD).log_prob(mu)
        + dist.Normal(0.0, 1.0).log_prob(eps).sum(-1)
        + dist.Normal(mu[:, None], 1.0).log_prob(y).sum(-1)
        + dist.Normal(mu[:, None], 1.0).log_prob(y[:2]).sum(-1)
    )
    log_q = dist.Normal(mean, sd).log_prob(mu) + dist.Normal(0.0, 1.0).log_prob(eps).sum(-1)
    torch.testing.assert_close(torch.as_tensor(idata.sample_stats["lp"].values[0]), log_p)
    torch.testing.assert_close(torch.as_tensor(idata.sample_stats["log_q"].values[0]), log_q)
    assert idata.posterior["eps"].dims == ("chain", "draw", "obs")
    assert idata.log_likelihood["t0"].dims == ("chain", "draw")
    assert idata.attrs["inference_library"] == "pyro"
    assert idata.attrs["inference_library_version"] == pyro.__version__
    assert idata.attrs["creation_library"] == "pyrogen"
    assert idata.attrs["inference_method"] == "SVI (NamelessGuide)"
    one = to_inference_data(model, gaussian_guide(), y, num_samples=1)
    assert one.posterior["mu"].shape == (1, 1) and one.log_likelihood["y"].shape == (1, 1, 5)
