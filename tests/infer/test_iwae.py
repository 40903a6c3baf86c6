"""IWAE: bound ordering, exactness, unbiased gradients, DReG/STL properties, subsampling."""

import itertools
import math
import warnings

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import pytest
import scipy.special
import torch
from pyro.infer import SVI
from pyro.optim import Adam

from pyrogen.infer import IWAE, AutoFlow
from tests.infer.linear_gaussian import (
    W,
    exact_params,
    given_draws_guide,
    guide,
    log_evidence,
    log_weights_by_hand,
    model,
    params,
    poor_guide,
)

X = torch.tensor([-1.0, 0.5, 2.0])


def mean_loss(K, g, reps=400):
    x = X.to(torch.get_default_dtype())
    return torch.tensor([IWAE(K, "iwae").loss(model, g, x) for _ in range(reps)]).mean()


def test_bound_increases_with_K_and_stays_below_log_evidence():
    exact = -float(log_evidence(X.to(torch.get_default_dtype())).sum())
    losses = [float(mean_loss(K, poor_guide)) for K in (1, 4, 32, 256)]
    # the loss is minus the bound: decreasing in K and above -log p(x)
    assert all(a > b for a, b in itertools.pairwise(losses)), losses
    assert losses[-1] > exact, (losses, exact)
    assert losses[0] - exact > 0.5  # the guide is poor: the ELBO gap is not small


@pytest.mark.parametrize("estimator", ["iwae", "stl", "dreg"])
@pytest.mark.parametrize("K", [1, 5])
def test_exact_posterior_bound_equals_log_evidence(estimator, K, rtol):
    x = X.to(torch.get_default_dtype())
    loss = IWAE(K, estimator).differentiable_loss(model, guide, x)
    assert torch.allclose(loss, -log_evidence(x).sum(), rtol=1e3 * rtol)
    grads = torch.autograd.grad(loss, params("a", "s"))
    if estimator == "iwae":
        assert any(g.abs() > 1e-3 for g in grads)  # zero only in expectation
    else:
        for g in grads:  # STL/DReG: exactly zero at the true posterior
            assert g.abs() < 1e3 * rtol


def near_guide(x, subsample=None):
    a, s = exact_params()
    return guide(x, subsample, a=a + 0.05, s=s * 1.1)


def gradient_draws(estimator, K, reps=40, n=400, g=poor_guide):
    x = torch.linspace(-2, 2, n)
    out = []
    for _ in range(reps):
        loss = IWAE(K, estimator).differentiable_loss(model, g, x)
        out.append(torch.stack(torch.autograd.grad(loss, params("a", "s", "w"))) / n)
    return torch.stack(out)


@pytest.mark.parametrize(("estimator", "K"), [("dreg", 5), ("stl", 1), ("dreg", 1)])
def test_gradients_unbiased_against_iwae_estimator(estimator, K):
    reference = gradient_draws("iwae", K)
    other = gradient_draws(estimator, K)
    diff = other.mean(0) - reference.mean(0)
    se = (other.var(0) / len(other) + reference.var(0) / len(reference)).sqrt()
    assert (diff.abs() < 4 * se + 1e-12).all(), (diff, se)
    # and the mean gradient is clearly non-zero, so the comparison has power
    assert (reference.mean(0).abs() > 4 * se).any()


def test_dreg_guide_gradient_snr_does_not_decay_with_K():
    """Rainforth et al. (2018): the IWAE guide-gradient SNR falls like 1/sqrt(K); DReG's does
    not (Tucker et al. 2019). SNR = |mean| / sd over draws, near the optimum."""

    def snr(estimator, K):
        draws = gradient_draws(estimator, K, reps=40, g=near_guide)[:, :2]
        return draws.mean(0).abs() / draws.std(0)

    iwae_ratio = snr("iwae", 64) / snr("iwae", 4)
    dreg_ratio = snr("dreg", 64) / snr("dreg", 4)
    assert (iwae_ratio < 0.6).all(), iwae_ratio
    assert (dreg_ratio > 0.8).all(), dreg_ratio
    assert (snr("dreg", 64) > 2 * snr("iwae", 64)).all()


def test_stl_is_biased_for_K_above_one():
    """STL drops a score term whose mean is not zero for K > 1 (Tucker et al. 2019, sec. 3)."""
    ref = gradient_draws("iwae", 20, reps=30)
    stl = gradient_draws("stl", 20, reps=30)
    se = (stl.var(0) / 30 + ref.var(0) / 30).sqrt()
    assert ((stl.mean(0) - ref.mean(0)).abs() > 4 * se).any()


def test_subsampled_plate_scales_per_point_bound(rtol):
    x = torch.linspace(-2, 2, 10)
    idx = torch.tensor([1, 4, 7])
    loss = IWAE(3).loss(model, guide, x, idx)  # exact guide: every per-point bound = log p(x_n)
    expected = -(10 / 3) * log_evidence(x[idx]).sum()
    assert loss == pytest.approx(float(expected), rel=rtol)
    # the differentiable loss is scaled the same way, and its surrogate's gradient is the
    # bound's gradient on the same draws (the IWAE estimator), scale included
    bound, surrogate = IWAE(3, "iwae").loss_and_surrogate(model, poor_guide, x, idx)
    theta = params("w", "a", "s")
    for g_bound, g_surrogate in zip(
        torch.autograd.grad(bound, theta, retain_graph=True),
        torch.autograd.grad(surrogate, theta),
        strict=True,
    ):
        torch.testing.assert_close(g_surrogate, g_bound)
    loss = IWAE(3).differentiable_loss(model, guide, x, idx)
    assert loss.item() == pytest.approx(float(expected), rel=rtol)


def test_non_reparameterizable_site():
    def model_d(x):
        with pyro.plate("data", len(x)):
            c = pyro.sample("c", dist.Bernoulli(0.5))
            pyro.sample("x", dist.Normal(2 * c - 1, 1.0), obs=x)

    def guide_d(x):
        p = pyro.param("p", torch.tensor(0.3), constraint=dist.constraints.unit_interval)
        with pyro.plate("data", len(x)):
            pyro.sample("c", dist.Bernoulli(p))

    x = torch.tensor([1.0, -1.0])
    for estimator in ("dreg", "stl"):
        with pytest.raises(ValueError, match=r"reparameterizable.*'c' \(Bernoulli\) is not"):
            IWAE(3, estimator).loss_and_grads(model_d, guide_d, x)
    loss = IWAE(3, "iwae").differentiable_loss(model_d, guide_d, x)
    (grad,) = torch.autograd.grad(loss, params("p"))
    assert torch.isfinite(grad)
    # the score-function gradient is unbiased: against the exact gradient of the enumerated
    # bound, E over c_1..K ~ Bern(p) of log mean_k p(x, c_k) / q(c_k), K = 3 (2^3 terms)
    u = params("p")[0].detach().clone().requires_grad_()
    prob = torch.sigmoid(u)
    exact = 0.0
    for xn in (1.0, -1.0):
        for config in itertools.product((0.0, 1.0), repeat=3):
            c = torch.tensor(config)
            q = torch.where(c == 1, prob, 1 - prob)
            log_w = math.log(0.5) + dist.Normal(2 * c - 1, 1.0).log_prob(torch.tensor(xn))
            exact = exact + q.prod() * (log_w - q.log()).logsumexp(0) - q.prod() * math.log(3)
    (exact_grad,) = torch.autograd.grad(-exact, u)
    big = x.repeat(500)  # 1000 independent per-point estimators per call
    draws = torch.stack(
        [
            torch.autograd.grad(
                IWAE(3, "iwae").differentiable_loss(model_d, guide_d, big), params("p")
            )[0]
            / 500
            for _ in range(20)
        ]
    )
    se = float(draws.std()) / math.sqrt(20)
    assert abs(float(draws.mean()) - float(exact_grad)) < 4 * se, (draws.mean(), exact_grad, se)
    assert abs(float(exact_grad)) > 8 * se  # the check has power


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_bad_num_particles(bad):
    with pytest.raises(ValueError, match="num_particles"):
        IWAE(bad)


def test_bad_estimator():
    with pytest.raises(ValueError, match="estimator"):
        IWAE(5, "reinforce")


@pytest.mark.parametrize("estimator", ["iwae", "dreg"])
def test_trains_autoflow_guide_with_svi(estimator, float64_only):
    # float64 only: in float32 a far-out draw of the initial guide underflows exp() to a zero
    # `scale` in the model, whose zero-weight particle still back-propagates 0 * inf = nan
    def hier():
        loc = pyro.sample("loc", dist.Normal(0.0, 3.0))
        scale = pyro.sample("scale", dist.LogNormal(0.0, 1.0))
        with pyro.plate("data", 4):
            pyro.sample("x", dist.Normal(loc, scale), obs=torch.tensor([1.0, 2.0, 0.5, 1.5]))

    # start from the plain prior-median guide (not the Laplace start, which is already near
    # the optimum), so that training has something to do; path_gradient=False so that the
    # "iwae" estimator is not turned into "stl"
    guide_f = AutoFlow(
        hier, num_layers=1, hidden_dims=(8,), init_laplace=False, path_gradient=False
    )
    svi = SVI(hier, guide_f, Adam({"lr": 0.02}), IWAE(8, estimator))
    before = sum(IWAE(64).loss(hier, guide_f) for _ in range(20)) / 20
    for _ in range(150):
        svi.step()
    after = sum(IWAE(64).loss(hier, guide_f) for _ in range(20)) / 20
    assert after < before - 1.0, (before, after)
    assert after < 7.5  # close to -log p(x) (about 6.5 here)


def test_point_estimated_global_latent_keeps_per_point_bound(float64_only):
    """A site outside the data plate would make the weights joint; a point-mass guide of a
    global latent is the same for every particle, so IWAE takes it out of the log-mean-exp and
    stays per data point (here: exact, with the exact local posterior)."""

    def model_g(x):
        w = pyro.sample("w", dist.Normal(0.0, 3.0))
        with pyro.plate("data", len(x)):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            pyro.sample("x", dist.Normal(w * z, 1.0), obs=x)

    def guide_g(x):
        w = pyro.param("w_map", torch.tensor(1.5))
        pyro.sample("w", dist.Delta(w))
        a, s = w / (w**2 + 1), (1 / (w**2 + 1)) ** 0.5
        with pyro.plate("data", len(x)):
            pyro.sample("z", dist.Normal(a * x, s))

    x = torch.linspace(-2, 2, 20)
    exact = log_evidence(x).sum() + dist.Normal(0.0, 3.0).log_prob(torch.tensor(1.5))
    for estimator in ("iwae", "dreg"):
        loss = IWAE(5, estimator).differentiable_loss(model_g, guide_g, x)
        assert torch.allclose(loss, -exact)
        assert IWAE(5, estimator).loss(model_g, guide_g, x) == pytest.approx(float(-exact))
    # the IWAE-estimator gradient of an exact bound is exact (DReG's is exact only in mean here:
    # w_map is both a model and a guide parameter)
    loss = IWAE(5, "iwae").differentiable_loss(model_g, guide_g, x)
    (grad,) = torch.autograd.grad(loss, params("w_map"))

    def exact_at(w):
        return log_evidence(x, w).sum() + dist.Normal(0.0, 3.0).log_prob(torch.tensor(w))

    eps = 1e-6
    exact_grad = -(exact_at(1.5 + eps) - exact_at(1.5 - eps)) / (2 * eps)
    assert torch.allclose(grad, exact_grad, atol=1e-5), (grad, exact_grad)


@pytest.mark.gpu
@pytest.mark.parametrize("estimator", ["iwae", "dreg"])
def test_iwae_and_log_likelihood_on_cuda(estimator, device):
    x = torch.linspace(-2, 2, 6, device=device)

    def model_d(x):
        with pyro.plate("data", len(x)):
            z = pyro.sample("z", dist.Normal(torch.zeros((), device=x.device), 1.0))
            pyro.sample("x", dist.Normal(z, 1.0), obs=x)

    def guide_d(x):
        a = pyro.param("a_d", torch.tensor(0.3, device=x.device))
        with pyro.plate("data", len(x)):
            pyro.sample("z", dist.Normal(a * x, 0.7))

    loss = IWAE(4, estimator).differentiable_loss(model_d, guide_d, x)
    assert loss.device.type == device.type
    (grad,) = torch.autograd.grad(loss, params("a_d"))
    assert torch.isfinite(grad)
    from pyrogen.infer import log_likelihood

    r = log_likelihood(model_d, guide_d, x, num_samples=64)
    assert r.log_likelihood.device.type == device.type


@pytest.mark.parametrize("K", [1, 3, 8])
def test_bound_on_given_draws_is_the_log_mean_exp_of_known_weights(K, rtol):
    """Non-exact guide, non-constant weights: -sum_n log (1/K) sum_k w_kn, recomputed with
    scipy's logsumexp on the very draws the guide returned."""
    x = X.to(torch.get_default_dtype())
    draws = torch.randn(K, 3, generator=torch.Generator().manual_seed(K), dtype=torch.float64)
    source = {"draws": draws, "used": 0}
    loss = IWAE(K, "iwae", max_plate_nesting=1).loss(model, given_draws_guide(source), x)
    assert source["used"] == K
    lw = log_weights_by_hand(x, draws)
    assert K == 1 or lw.std(0).min() > 0.1  # the weights differ between particles
    expected = -(scipy.special.logsumexp(lw, 0) - math.log(K)).sum()
    assert loss == pytest.approx(expected, rel=rtol)
    source["used"] = 0
    diff = IWAE(K, "iwae", max_plate_nesting=1).differentiable_loss(
        model, given_draws_guide(source), x
    )
    assert diff.item() == pytest.approx(expected, rel=rtol)


def test_documented_defaults_and_the_state_before_any_step():
    """``IWAE()`` is ``K = 5`` with the DReG estimator (as documented); a given plate nesting is
    in the state from the start, and no step has been counted."""
    loss = IWAE()
    assert (loss.num_particles, loss.estimator) == (5, "dreg")
    assert IWAE(3).state_dict() == {"num_steps": 0, "max_plate_nesting": None}
    assert IWAE(3, max_plate_nesting=0).state_dict() == {"num_steps": 0, "max_plate_nesting": 0}


def test_constructor_errors_name_the_argument():
    with pytest.raises(ValueError, match=r"^estimator must be one of \('dreg', 'iwae', 'stl'\)"):
        IWAE(5, "reinforce")
    with pytest.raises(ValueError, match=r"^max_plate_nesting must be an int >= 0, got -1$"):
        IWAE(5, max_plate_nesting=-1)
    with pytest.raises(TypeError, match=r"^max_plate_nesting"):
        IWAE(5, max_plate_nesting=1.5)


def scalar_model(x):
    z = pyro.sample("z", dist.Normal(0.0, 1.0))
    pyro.sample("x", dist.Normal(z, 1.0), obs=x)


def scalar_guide(x):
    pyro.sample("z", dist.Normal(pyro.param("m", torch.tensor(0.3)), 0.8))


@pytest.mark.parametrize("estimator", ["iwae", "stl", "dreg"])
def test_no_plates_with_max_plate_nesting_zero(estimator):
    """A model without plates, declared with ``max_plate_nesting=0``: the bound is the
    log-mean-exp of the ``K`` weights of one datum."""
    x = torch.tensor(0.7)
    loss = IWAE(4, estimator, max_plate_nesting=0)
    pyro.set_rng_seed(5)
    value = loss.differentiable_loss(scalar_model, scalar_guide, x)
    pyro.set_rng_seed(5)
    z = dist.Normal(torch.tensor(0.3), 0.8).sample((4,))
    log_w = (
        dist.Normal(0.0, 1.0).log_prob(z)
        + dist.Normal(z, 1.0).log_prob(x)
        - dist.Normal(0.3, 0.8).log_prob(z)
    )
    torch.testing.assert_close(value, -(log_w.logsumexp(0) - math.log(4)))


def kw_model(*, x):
    model(x)


def kw_guide(*, x):
    guide(x)


@pytest.mark.parametrize("estimator", ["iwae", "dreg"])
def test_keyword_arguments_reach_model_and_guide(estimator):
    x = X.to(torch.get_default_dtype())
    loss = IWAE(3, estimator, max_plate_nesting=1)
    value = loss.differentiable_loss(kw_model, kw_guide, x=x)  # exact guide: log p(x) exactly
    torch.testing.assert_close(value, -log_evidence(x).sum())
    assert loss.loss(kw_model, kw_guide, x=x) == pytest.approx(-float(log_evidence(x).sum()))
    svi = SVI(kw_model, kw_guide, Adam({"lr": 0.05}), loss)
    assert svi.step(x=x) == pytest.approx(-float(log_evidence(x).sum()))


def svi_steps(loss, steps, seed=0):
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    svi = SVI(model, poor_guide, Adam({"lr": 0.05}), loss)
    x = X.to(torch.get_default_dtype())
    return [svi.step(x) for _ in range(steps)]


def test_state_dict_round_trip_resumes_bit_for_bit():
    """``num_steps`` counts each step once; a loaded state (guessed nesting included) makes a
    fresh loss repeat the original's next loss exactly (no dry run draws random numbers)."""
    loss = IWAE(4, "iwae")
    svi_steps(loss, 2)
    state = loss.state_dict()
    assert state == {"num_steps": 2, "max_plate_nesting": 1}
    x = X.to(torch.get_default_dtype())
    pyro.set_rng_seed(9)
    expected = loss.loss(model, poor_guide, x)
    resumed = IWAE(4, "iwae")
    resumed.load_state_dict(state)
    assert resumed.state_dict() == state
    pyro.set_rng_seed(9)
    assert resumed.loss(model, poor_guide, x) == expected
    fresh = IWAE(4, "iwae")
    pyro.set_rng_seed(9)
    assert fresh.loss(model, poor_guide, x) != expected  # its dry run draws first
    none = IWAE(4, "iwae", max_plate_nesting=1)
    none.load_state_dict({"num_steps": 0, "max_plate_nesting": None})
    assert none.state_dict()["max_plate_nesting"] is None


@pytest.mark.parametrize(
    ("state", "error", "match"),
    [
        ({"num_steps": 1, "max_plate_nesting": -1}, ValueError, "max_plate_nesting must be >= 0"),
        ({"num_steps": 1, "max_plate_nesting": 1.0}, TypeError, "max_plate_nesting"),
        ({"num_steps": "1", "max_plate_nesting": 1}, TypeError, "num_steps"),
        ({"num_steps": 1}, ValueError, "max_plate_nesting"),
    ],
)
def test_load_state_dict_rejects_bad_entries(state, error, match):
    loss = IWAE(4)
    with pytest.raises(error, match=match):
        loss.load_state_dict(state)


@pytest.mark.parametrize("estimator", ["iwae", "stl", "dreg"])
def test_nonfinite_step_names_the_loss_the_step_and_the_site(estimator):
    """A step whose observed datum has ``-inf`` log-density raises naming the loss, its ``K``,
    estimator and step number and the site, is not counted, and leaves no traces behind."""
    loss = IWAE(4, estimator)
    svi_steps(loss, 1)
    big = torch.finfo(torch.get_default_dtype()).max / 4
    x = X.to(torch.get_default_dtype()).clone()
    x[1] = big
    svi = SVI(model, poor_guide, Adam({"lr": 0.05}), loss)
    where = rf"^IWAE\(4, '{estimator}'\) step 1\b.*site 'x'"
    with pytest.raises(FloatingPointError, match=where):
        svi.step(x)
    assert loss.num_steps == 1 and loss._failed_traces == []
    svi.step(X.to(torch.get_default_dtype()))
    assert loss.num_steps == 2


def test_get_trace_points_to_the_particle_tracing():
    loss = IWAE(2)
    with pytest.raises(NotImplementedError, match=r"^IWAE traces all particles at once; see "):
        next(loss._get_traces(model, guide, (X.to(torch.get_default_dtype()),), {}))


def test_loaded_nesting_zero_is_valid():
    loss = IWAE(2)
    loss.load_state_dict({"num_steps": 3, "max_plate_nesting": 0})
    assert loss.state_dict() == {"num_steps": 3, "max_plate_nesting": 0}


def two_site_model(x):
    w = pyro.param("w", torch.tensor(W))
    with pyro.plate("data", x.shape[-1]):
        for i in range(2):
            z = pyro.sample(f"z{i}", dist.Normal(0.0, 1.0))
            pyro.sample(f"x{i}", dist.Normal(w * z, 1.0), obs=x[i])


def two_site_guide(x, mask=True):
    a0, s0 = exact_params()
    with pyro.plate("data", x.shape[-1]), poutine.mask(mask=mask):
        for i in range(2):
            a = pyro.param(f"a{i}", torch.tensor(a0))
            s = pyro.param(f"s{i}", torch.tensor(s0), constraint=dist.constraints.positive)
            pyro.sample(f"z{i}", dist.Normal(a * x[i], s))


@pytest.mark.parametrize("estimator", ["stl", "dreg"])
def test_every_site_sticks_the_landing_masked_or_not(estimator, rtol):
    """At the exact posterior the STL/DReG guide gradient is exactly zero for every latent site,
    also where the guide's ``log q`` is masked out (the masked points' model terms are too)."""
    x = torch.tensor([[-1.0, 0.5, 2.0], [0.3, -0.7, 1.1]])
    mask = torch.tensor([True, False, True])

    def masked_model(x):
        with poutine.mask(mask=mask):
            two_site_model(x)

    for m, g in (
        (two_site_model, two_site_guide),
        (masked_model, lambda x: two_site_guide(x, mask)),
    ):
        loss = IWAE(3, estimator).differentiable_loss(m, g, x)
        grads = torch.autograd.grad(loss, params("a0", "s0", "a1", "s1"))
        for grad in grads:
            assert grad.abs() < 1e3 * rtol


@pytest.mark.parametrize("estimator", ["stl", "dreg"])
def test_flow_guide_path_gradient_at_the_exact_posterior(estimator, rtol):
    """An IAF guide (the path gradient of ``log q`` from the base noise, no sequential
    inverse) at identity over the exact posterior of a 2-D latent: the bound is ``log p(x)``
    exactly and the guide's STL/DReG gradient is exactly zero."""
    from pyrogen import flows

    x = torch.tensor([[-1.0, 0.5], [2.0, 0.3], [0.1, -1.2]])
    a, s = exact_params()
    flow = flows.iaf(2, num_layers=1)

    def model2(x):
        w = pyro.param("w", torch.tensor(W))
        with pyro.plate("data", len(x)):
            z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(w * z, 1.0).to_event(1), obs=x)

    def flow_guide(x):
        pyro.module("flow", flow)
        loc = pyro.param("a", torch.tensor(a)) * x
        with pyro.plate("data", len(x)):
            base = dist.Normal(loc, torch.tensor(s)).to_event(1)
            pyro.sample("z", dist.TransformedDistribution(base, [flow]))

    loss = IWAE(3, estimator).differentiable_loss(model2, flow_guide, x)
    exact = dist.Normal(0.0, (W**2 + 1) ** 0.5).log_prob(x).sum()
    torch.testing.assert_close(loss, -exact)
    guide_params = [pyro.param("a").unconstrained(), *flow.parameters()]
    for grad in torch.autograd.grad(loss, guide_params):
        assert grad.abs().max() < 1e3 * rtol


def test_dreg_equals_stl_for_one_particle_with_global_event_and_nested_plates():
    """With ``K = 1`` the normalized weight is 1, so DReG is STL (Tucker et al. 2019), for
    every parameter: here with a global latent (outside the plates), a latent with an event
    dimension and two nested data plates."""
    x = torch.randn(2, 3, 2)

    def model3(x):
        w = pyro.param("w", torch.tensor(0.8))
        g = pyro.sample("g", dist.Normal(0.0, 1.0))
        with pyro.plate("rows", 2, dim=-2), pyro.plate("cols", 3, dim=-1):
            z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(w * z + g, 1.0).to_event(1), obs=x)

    def guide3(x):
        m = pyro.param("m", torch.tensor(0.2))
        loc = pyro.param("loc", torch.zeros(2, 3, 2))
        pyro.sample("g", dist.Normal(m, 0.5))
        with pyro.plate("rows", 2, dim=-2), pyro.plate("cols", 3, dim=-1):
            pyro.sample("z", dist.Normal(loc + 0.3 * x, 0.7).to_event(1))

    grads = {}
    for estimator in ("stl", "dreg"):
        pyro.set_rng_seed(4)
        loss = IWAE(1, estimator, max_plate_nesting=2).differentiable_loss(model3, guide3, x)
        grads[estimator] = torch.autograd.grad(loss, params("w", "m", "loc"))
    for g_stl, g_dreg in zip(grads["stl"], grads["dreg"], strict=True):
        torch.testing.assert_close(g_dreg, g_stl)
        assert g_stl.abs().max() > 1e-3


def test_loss_names_nonfinite_data_and_warns_on_nan():
    x = torch.tensor([[0.3, float("inf")], [float("inf"), 0.1]])
    pattern = r"^IWAE\.loss: model observed site 'x0'.*; model observed site 'x1'.*"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pyro's own NaN warnings of the log densities
        with pytest.raises(ValueError, match=pattern + r"\(the data are not finite\)$"):
            IWAE(2).loss(two_site_model, two_site_guide, x)
    finite = torch.tensor([[0.3, 1.0], [2.0, 0.1]])
    pyro.clear_param_store()
    pyro.param("a0", torch.tensor(float("nan")))  # a NaN guide parameter: NaN, not bad data
    with pyro.validation_enabled(False), warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        assert math.isnan(IWAE(2).loss(two_site_model, two_site_guide, finite))
    assert "Encountered NaN: loss" in [str(w.message) for w in record]
