"""Fitting flows by reverse KL (to a density) and forward KL (to samples), and the estimates
that judge a fit: closed forms on Gaussians, the flow KL duality, log Z of the banana."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO

from pyrogen import flows
from pyrogen.analysis import kl_diagnostics
from pyrogen.datasets import Banana
from pyrogen.infer import (
    UnnormalizedDensity,
    density_model,
    empty_guide,
    flow_distribution,
    flow_guide,
    sample_and_log_prob,
    samples_model,
)
from pyrogen.transforms import LULinear

LOG_Z = 3.0  # the offset added to the Gaussian's log density: the "unknown" normalizer


def target():
    loc, cov = torch.tensor([1.0, -2.0]), torch.tensor([[2.0, 0.8], [0.8, 1.0]])
    return dist.MultivariateNormal(loc, cov)


def unnormalized(x):
    return target().log_prob(x) + LOG_Z


def perturbed_affine(seed=1):
    """An LULinear flow (x = W z + b) away from the identity, and its Gaussian N(b, W W^T)."""
    torch.manual_seed(seed)
    flow = LULinear(2)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.3 * torch.randn_like(p))
    z = torch.eye(2)
    b = flow(torch.zeros(2)).detach()
    w = (flow(z) - b).detach().T
    return flow, dist.MultivariateNormal(b, w @ w.T)


def gaussian_kl(p, q):
    return float(torch.distributions.kl_divergence(p, q))


@pytest.mark.slow
def test_reverse_kl_fit_of_affine_flow_recovers_mean_and_covariance():
    flow = LULinear(2)
    model, guide = density_model(unnormalized, (2,)), flow_guide(flow, 2)
    optim = pyro.optim.ClippedAdam({"lr": 0.1, "lrd": 0.99})
    svi = SVI(model, guide, optim, Trace_ELBO(num_particles=256, vectorize_particles=True))
    for _ in range(300):
        svi.step()
    # the loss estimates KL(q || p) - log Z: at the optimum KL = 0
    loss = sum(svi.evaluate_loss() for _ in range(20)) / 20
    assert loss == pytest.approx(-LOG_Z, abs=0.02)
    b = flow(torch.zeros(2)).detach()
    w = (flow(torch.eye(2)) - b).detach().T
    torch.testing.assert_close(b, target().mean, atol=0.05, rtol=0)
    torch.testing.assert_close(w @ w.T, target().covariance_matrix, atol=0.08, rtol=0)


def test_forward_kl_fit_is_the_gaussian_maximum_likelihood():
    data = target().sample((2000,))
    flow = LULinear(2)
    model = samples_model(flow, data, batch_size=1000)
    svi = SVI(model, empty_guide, pyro.optim.ClippedAdam({"lr": 0.1, "lrd": 0.99}), Trace_ELBO())
    for _ in range(300):
        svi.step()
    b = flow(torch.zeros(2)).detach()
    w = (flow(torch.eye(2)) - b).detach().T
    torch.testing.assert_close(b, data.mean(0), atol=0.03, rtol=0)
    mle_cov = torch.cov(data.T, correction=0)
    torch.testing.assert_close(w @ w.T, mle_cov, atol=0.06, rtol=0)


@pytest.mark.slow
def test_kl_estimates_match_the_closed_forms():
    flow, q_exact = perturbed_affine()
    q = flow_distribution(flow, 2)
    with torch.no_grad():
        d = kl_diagnostics(q, unnormalized, num_samples=6000, samples=target().sample((6000,)))
    reverse, forward = gaussian_kl(q_exact, target()), gaussian_kl(target(), q_exact)
    assert reverse > 0.3  # the perturbation is not a near-identity
    # unnormalized: the KLs use the importance-sampling log Z, the ELBO does not need it
    assert abs(d.negative_elbo - (reverse - LOG_Z)) < 4 * d.negative_elbo_stderr
    assert abs(d.log_partition_estimate - LOG_Z) < 4 * d.log_partition_stderr + 0.05
    with torch.no_grad():
        exact = kl_diagnostics(
            q,
            unnormalized,
            num_samples=6000,
            log_partition=LOG_Z,
            samples=target().sample((6000,)),
        )
    assert exact.log_partition == LOG_Z
    assert abs(exact.reverse_kl - reverse) < 4 * exact.reverse_kl_stderr
    assert abs(exact.forward_kl - forward) < 4 * exact.forward_kl_stderr
    assert 0 < exact.ess_fraction < 0.95 and exact.ess == pytest.approx(exact.ess_fraction * 6000)
    assert math.isfinite(exact.khat) and exact.log_weights.shape == (6000,)


def test_perfect_fit_has_full_ess_and_zero_kl():
    flow = LULinear(2, init="identity")
    q = flow_distribution(flow, 2)
    standard = dist.MultivariateNormal(torch.zeros(2), torch.eye(2))
    d = kl_diagnostics(q, standard.log_prob, num_samples=500, log_partition=0.0)
    assert d.ess_fraction == pytest.approx(1.0) and abs(d.reverse_kl) < 1e-8
    assert d.khat == -math.inf  # constant weights: no tail to fit


def test_flow_kl_duality_holds_numerically():
    """KL(pi || f#base) = KL(f^{-1}#pi || base): the forward KL of the flow on samples of pi
    equals the reverse KL of the pushed-back data distribution to the base, estimated on the
    same samples, and both match the closed form for an affine flow."""
    flow, q_exact = perturbed_affine(seed=3)
    x = target().sample((6000,))
    q = flow_distribution(flow, 2)
    with torch.no_grad():
        forward = target().log_prob(x) - q.log_prob(x)
        z = flow.inv(x.clone())
        # density of the pushed-back data: pi(x) |det dx/dz|
        log_pi_z = target().log_prob(x) + flow.log_abs_det_jacobian(z, flow(z))
        base = dist.Normal(torch.zeros(2), 1.0).to_event(1)
        reverse = log_pi_z - base.log_prob(z)
    torch.testing.assert_close(forward, reverse, atol=1e-6, rtol=1e-6)
    se = float(forward.std()) / math.sqrt(x.shape[0])
    assert abs(float(forward.mean()) - gaussian_kl(target(), q_exact)) < 4 * se


def test_duality_for_a_nonlinear_flow():
    torch.manual_seed(0)
    flow = flows.maf(2, num_layers=2, hidden_dims=[16])
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.2 * torch.randn_like(p))
    x = Banana().sample((500,))
    q = flow_distribution(flow, 2)
    with torch.no_grad():
        forward = Banana().log_prob(x) - q.log_prob(x.clone())
        z = flow.inv(x.clone())
        pushed = Banana().log_prob(x) + flow.log_abs_det_jacobian(z, flow(z))
        reverse = pushed - dist.Normal(torch.zeros(2), 1.0).to_event(1).log_prob(z)
    torch.testing.assert_close(forward, reverse, atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_log_partition_of_the_unnormalized_banana_within_three_standard_errors():
    """Importance sampling with a mass-covering proposal: a MAF fitted by forward KL to exact
    banana samples, then weighted against the unnormalized banana density."""
    banana = Banana()
    flow = flows.maf(
        2, num_layers=3, hidden_dims=[32, 32], activation=torch.nn.Tanh, order="natural"
    )
    model = samples_model(flow, banana.sample((4000,)), batch_size=256)
    svi = SVI(model, empty_guide, pyro.optim.ClippedAdam({"lr": 5e-3, "lrd": 0.999}), Trace_ELBO())
    for _ in range(400):
        svi.step()
    q = flow_distribution(flow, 2)
    with torch.no_grad():
        d = kl_diagnostics(q, banana.unnormalized_log_prob, num_samples=8000)
    assert d.khat < 0.7, d.khat  # the standard error is meaningful only then
    assert d.log_partition_stderr < 0.01
    assert abs(d.log_partition_estimate - banana.log_partition) < 3 * d.log_partition_stderr


def test_unnormalized_density_site_contract():
    site = UnnormalizedDensity(lambda x: -(x**2).sum(-1), (3,))
    assert site.log_prob(torch.zeros(4, 3)).shape == (4,)
    assert site.expand((5,)).batch_shape == (5,)
    with pytest.raises(NotImplementedError, match="cannot be sampled"):
        site.sample()
    with pytest.raises(ValueError, match=r"shape \(\*batch, 3\)"):
        site.log_prob(torch.zeros(4, 2))
    with pytest.raises(ValueError, match="log_density must map"):
        UnnormalizedDensity(lambda x: x, (3,)).log_prob(torch.zeros(4, 3))
    with pytest.raises(TypeError, match="log_density must be callable"):
        UnnormalizedDensity(3.0, (3,))


def test_bad_arguments_raise():
    flow = LULinear(2)
    with pytest.raises(ValueError, match="data must be"):
        samples_model(flow, torch.zeros(5))
    with pytest.raises(ValueError, match="batch_size must be"):
        samples_model(flow, torch.zeros(5, 2), batch_size=6)
    with pytest.raises(ValueError, match="input_dim must be"):
        flow_guide(flow, 0)
    q = flow_distribution(flow, 2)
    with pytest.raises(ValueError, match="num_samples"):
        kl_diagnostics(q, unnormalized, num_samples=1)
    with pytest.raises(ValueError, match="log_partition must be"):
        kl_diagnostics(q, unnormalized, log_partition=math.inf)
    with pytest.raises(ValueError, match="samples must have shape"):
        kl_diagnostics(q, unnormalized, samples=torch.zeros(4, 3))


def test_sample_and_log_prob_uses_the_fused_method_when_present():
    flow, _ = perturbed_affine()
    q = flow_distribution(flow, 2)
    x, lp = sample_and_log_prob(q, (6,))
    assert x.shape == (6, 2) and lp.shape == (6,)
    torch.testing.assert_close(lp, q.log_prob(x.clone()))  # clone: no cache involved

    class Fused(dist.Normal):
        def rsample_and_log_prob(self, sample_shape):
            return torch.full(sample_shape, 7.0), torch.zeros(sample_shape)

    x, lp = sample_and_log_prob(Fused(0.0, 1.0), (3,))
    assert torch.equal(x, torch.full((3,), 7.0))
    with pytest.raises(TypeError, match="no rsample"):
        sample_and_log_prob(dist.Bernoulli(0.5), (2,))


def test_reverse_kl_model_runs_with_predictive_and_param_store_roundtrip(tmp_path):
    flow = flows.iaf(2, num_layers=1, hidden_dims=[8])
    guide = flow_guide(flow, 2)
    svi = SVI(density_model(unnormalized, (2,)), guide, pyro.optim.Adam({"lr": 1e-2}), Trace_ELBO())
    svi.step()
    draws = pyro.infer.Predictive(guide, num_samples=7)()  # draws of the fitted flow
    assert draws["x"].shape == (7, 2)
    path = tmp_path / "flow.pt"
    torch.save(flow.state_dict(), path)
    other = flows.iaf(2, num_layers=1, hidden_dims=[8])
    other.load_state_dict(torch.load(path, weights_only=True))
    z = torch.randn(4, 2)
    torch.testing.assert_close(other(z), flow(z))
