"""Annealed and free-bits ELBOs: exactly the terms they should change, schedules, jit, errors."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO
from pyro.optim import Adam

from pyrogen.infer import AnnealedELBO, Constant, Cyclical, FreeBitsELBO, LinearWarmup

X = torch.tensor([-1.0, 0.5, 2.0, 1.0])
PRIOR_SCALE = torch.tensor([1.0, 2.0])


def model(x):
    decoder = pyro.param("decoder", torch.tensor([1.0, -0.5]))
    with pyro.plate("data", len(x)):
        z = pyro.sample("z", dist.Normal(0.0, PRIOR_SCALE).to_event(1))
        pyro.sample("x", dist.Normal((z * decoder).sum(-1), 1.0), obs=x)


def guide(x):
    a = pyro.param("a", torch.tensor([0.4, 0.05]))
    s = pyro.param("s", torch.tensor([0.6, 1.9]), constraint=dist.constraints.positive)
    with pyro.plate("data", len(x)):
        pyro.sample("z", dist.Normal(a * x[:, None], s).to_event(1))


def analytic_kl_per_dim(x):
    a, s = pyro.param("a"), pyro.param("s")
    q = dist.Normal(a * x[:, None], s)
    return torch.distributions.kl_divergence(q, dist.Normal(0.0, PRIOR_SCALE)).detach()


def reconstruction(x, seed):
    """-E log p(x|z) for the draw that ``seed`` gives (the same draw the losses use)."""
    pyro.set_rng_seed(seed)
    g = pyro.poutine.trace(guide).get_trace(x)
    m = pyro.poutine.trace(pyro.poutine.replay(model, trace=g)).get_trace(x)
    m.compute_log_prob()
    return -float(m.nodes["x"]["log_prob_sum"].detach())


def seeded_loss(elbo, seed=1, x=X):
    pyro.set_rng_seed(seed)
    return elbo.loss(model, guide, x)


def test_beta_zero_is_reconstruction_only(rtol):
    x = X.to(torch.get_default_dtype())
    assert seeded_loss(AnnealedELBO(0.0), x=x) == pytest.approx(reconstruction(x, 1), rel=rtol)


@pytest.mark.parametrize("beta", [0.3, 1.0, 2.5])
def test_beta_weights_exactly_the_analytic_kl(beta, rtol):
    x = X.to(torch.get_default_dtype())
    loss = seeded_loss(AnnealedELBO(beta), x=x)
    kl = float(analytic_kl_per_dim(x).sum())
    assert loss == pytest.approx(reconstruction(x, 1) + beta * kl, rel=rtol)


def test_beta_one_matches_trace_elbo_in_expectation():
    x = X.to(torch.get_default_dtype())
    ours = AnnealedELBO(1.0, num_particles=20000, vectorize_particles=True).loss(model, guide, x)
    pyros = Trace_ELBO(num_particles=20000, vectorize_particles=True).loss(model, guide, x)
    mc = AnnealedELBO(1.0, analytic_kl=False, num_particles=20000, vectorize_particles=True)
    assert ours == pytest.approx(pyros, abs=0.1)
    assert mc.loss(model, guide, x) == pytest.approx(pyros, abs=0.1)


def test_beta_zero_gradient_has_no_kl_part():
    x = X.to(torch.get_default_dtype())
    pyro.set_rng_seed(3)
    loss = AnnealedELBO(0.0).differentiable_loss(model, guide, x)
    pyro.set_rng_seed(3)
    g = pyro.poutine.trace(guide).get_trace(x)
    m = pyro.poutine.trace(pyro.poutine.replay(model, trace=g)).get_trace(x)
    m.compute_log_prob()
    expected = -m.nodes["x"]["log_prob_sum"]
    params = [pyro.param(n).unconstrained() for n in ("a", "s", "decoder")]
    for g1, g2 in zip(
        torch.autograd.grad(loss, params), torch.autograd.grad(expected, params), strict=True
    ):
        assert torch.allclose(g1, g2)


@pytest.mark.parametrize("free_bits", [0.0, 0.05, 0.3, 10.0])
def test_free_bits_floors_each_dimension(free_bits, rtol):
    x = X.to(torch.get_default_dtype())
    loss = seeded_loss(FreeBitsELBO(free_bits), x=x)
    kl_d = analytic_kl_per_dim(x).mean(0)  # batch-averaged KL per latent dimension
    floored = torch.clamp(kl_d, min=free_bits).sum() * len(x)
    assert loss == pytest.approx(reconstruction(x, 1) + float(floored), rel=rtol)
    # the test has power: the two dimensions straddle 0.05 and 0.3
    assert kl_d.min() < 0.3 and kl_d.max() > 0.05


def test_free_bits_stops_kl_gradient_below_the_floor():
    x = X.to(torch.get_default_dtype())
    pyro.set_rng_seed(5)
    with_floor = FreeBitsELBO(100.0).differentiable_loss(model, guide, x)
    pyro.set_rng_seed(5)
    no_kl = AnnealedELBO(0.0).differentiable_loss(model, guide, x)
    params = [pyro.param(n).unconstrained() for n in ("a", "s")]
    for g1, g2 in zip(
        torch.autograd.grad(with_floor, params), torch.autograd.grad(no_kl, params), strict=True
    ):
        assert torch.allclose(g1, g2)


def subsampled(guide_scale: float):
    """A model and guide over 40 points of which the data ``x`` are a subsample (scale 40/len)."""

    def model_s(x):
        with pyro.plate("data", 40, subsample=torch.arange(len(x))):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            pyro.sample("x", dist.Normal(z, 1.0), obs=x)

    def guide_s(x):
        with pyro.plate("data", 40, subsample=torch.arange(len(x))):
            pyro.sample("z", dist.Normal(0.1 * x, guide_scale))

    return model_s, guide_s


def test_free_bits_subsampling_counts_represented_points(rtol):
    model_s, guide_s = subsampled(1.0)
    x = X.to(torch.get_default_dtype())
    kl = torch.distributions.kl_divergence(dist.Normal(0.1 * x, 1.0), dist.Normal(0.0, 1.0))
    pyro.set_rng_seed(2)
    rec = FreeBitsELBO(0.0).loss(model_s, guide_s, x) - 10 * float(kl.sum())
    pyro.set_rng_seed(2)
    loss = FreeBitsELBO(1.0).loss(model_s, guide_s, x)
    assert loss == pytest.approx(rec + 40 * 1.0, rel=rtol)


def test_annealed_kl_is_weighted_by_the_subsampling_scale(rtol):
    model_s, guide_s = subsampled(0.5)
    x = X.to(torch.get_default_dtype())
    kl = torch.distributions.kl_divergence(dist.Normal(0.1 * x, 0.5), dist.Normal(0.0, 1.0))
    pyro.set_rng_seed(2)
    rec = AnnealedELBO(0.0).loss(model_s, guide_s, x)
    pyro.set_rng_seed(2)
    loss = AnnealedELBO(0.3).loss(model_s, guide_s, x)
    assert loss == pytest.approx(rec + 0.3 * 10 * float(kl.sum()), rel=rtol)


def test_schedule_advances_once_per_svi_step():
    elbo = AnnealedELBO(LinearWarmup(4))
    svi = SVI(model, guide, Adam({"lr": 0.01}), elbo)
    x = X.to(torch.get_default_dtype())
    seen = []
    for _ in range(6):
        seen.append(elbo.beta)
        svi.step(x)
    assert seen == [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    elbo.loss(model, guide, x)
    assert elbo.step == 6


@pytest.mark.filterwarnings("ignore:`torch.jit.trace` is deprecated:DeprecationWarning")
def test_jit_matches_eager_and_honours_the_schedule(rtol):
    x = X.to(torch.get_default_dtype())
    eager = AnnealedELBO(Cyclical(2, ratio=1.0))
    jitted = AnnealedELBO(Cyclical(2, ratio=1.0), jit=True)
    jitted.loss(model, guide, x)  # compile (tracing consumes random numbers)
    for _ in range(3):  # beta = 0, 0.5, 0
        assert seeded_loss(jitted, 7, x) == pytest.approx(seeded_loss(eager, 7, x), rel=rtol)
        for elbo in (eager, jitted):
            elbo.step += 1
    fb_eager, fb_jit = FreeBitsELBO(0.3), FreeBitsELBO(0.3, jit=True)
    fb_jit.loss(model, guide, x)
    assert seeded_loss(fb_jit, 4, x) == pytest.approx(seeded_loss(fb_eager, 4, x), rel=rtol)
    svi = SVI(model, guide, Adam({"lr": 0.01}), AnnealedELBO(LinearWarmup(3), jit=True))
    assert all(torch.isfinite(torch.tensor(svi.step(x))) for _ in range(4))


def test_discrete_latent_gets_score_function_gradient():
    def model_d(x):
        with pyro.plate("data", len(x)):
            c = pyro.sample("c", dist.Bernoulli(0.5))
            pyro.sample("x", dist.Normal(4 * c - 2, 1.0), obs=x)

    def guide_d(x):
        p = pyro.param("p", torch.tensor(0.5), constraint=dist.constraints.unit_interval)
        with pyro.plate("data", len(x)):
            pyro.sample("c", dist.Bernoulli(p))

    x = torch.full((5,), 2.0)  # every point says c = 1
    losses = []
    svi = SVI(model_d, guide_d, Adam({"lr": 0.05}), AnnealedELBO(1.0, num_particles=8))
    for _ in range(100):
        losses.append(svi.step(x))
    assert pyro.param("p").item() > 0.9


@pytest.mark.parametrize("beta", [-0.1, float("nan"), float("inf")])
def test_bad_beta(beta):
    with pytest.raises(ValueError, match="beta"):
        AnnealedELBO(beta)


def test_schedule_returning_negative_beta_raises():
    elbo = AnnealedELBO(lambda step: 1.0 - step)
    elbo.step = 2
    with pytest.raises(ValueError, match="beta"):
        elbo.loss(model, guide, X.to(torch.get_default_dtype()))


@pytest.mark.parametrize(
    ("factory", "match"),
    [
        (lambda: AnnealedELBO("1"), "beta"),
        (lambda: FreeBitsELBO(-1.0), "free_bits"),
        (lambda: AnnealedELBO(1.0, num_particles=0), "num_particles"),
        (lambda: LinearWarmup(0), "num_steps"),
        (lambda: LinearWarmup(5, start=-1.0), "start"),
        (lambda: Cyclical(10, ratio=0.0), "ratio"),
        (lambda: Cyclical(0), "period"),
        (lambda: Constant(-2.0), "value"),
    ],
)
def test_bad_arguments(factory, match):
    with pytest.raises((ValueError, TypeError), match=match):
        factory()


def test_score_gradient_is_rao_blackwellized_by_plate():
    """The discrete guide's gradient matches Pyro's Trace_ELBO in mean and variance (both reward
    each data point with its own terms); without plate Rao-Blackwellization the variance would
    grow with the batch size."""

    def model_d(x):
        with pyro.plate("data", len(x)):
            c = pyro.sample("c", dist.Bernoulli(0.5))
            pyro.sample("x", dist.Normal(4 * c - 2, 1.0), obs=x)

    def guide_d(x):
        logits = pyro.param("logits", torch.zeros(len(x)))
        with pyro.plate("data", len(x)):
            pyro.sample("c", dist.Bernoulli(logits=logits))

    x = torch.linspace(-3, 3, 50)

    def draws(elbo, n=300):
        out = []
        for _ in range(n):
            loss = elbo.differentiable_loss(model_d, guide_d, x)
            out.append(torch.autograd.grad(loss, [pyro.param("logits").unconstrained()])[0])
        return torch.stack(out)

    ours = draws(AnnealedELBO(1.0, analytic_kl=False))
    pyros = draws(Trace_ELBO())
    se = ((ours.var(0) + pyros.var(0)) / len(ours)).sqrt()
    assert ((ours.mean(0) - pyros.mean(0)).abs() < 4 * se + 1e-9).float().mean() > 0.95
    ratio = ours.var(0).sum() / pyros.var(0).sum()
    assert 0.7 < ratio < 1.4, ratio
