"""The annealed and free-bits ELBOs term by term: per-site KL terms, the score-function surrogate
of discrete latents under nested plates, masks and particles (against a per-element computation
written out here), the loss-only path and the messages of failures."""

import math

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import pytest
import torch
from pyro.infer import SVI
from pyro.optim import Adam

from pyrogen.infer import AnnealedELBO, FreeBitsELBO, kl_terms

G, N = 2, 3  # groups (dim -2) x points per group (dim -1)
X = torch.tensor([[0.3, -1.2, 2.0], [1.5, 0.1, -0.4]])
OBS_MASK = torch.tensor([[True, True, False], [True, True, True]])  # x[0, 2] is left out
C_MASK = torch.tensor([[True, False, True], [True, True, True]])  # c[0, 1] is left out
C_PRIOR = torch.tensor([[0.2, 0.5, 0.7], [0.4, 0.6, 0.3]])
G_PRIOR = 0.3
K_PRIOR = torch.tensor([[0.35], [0.8]])


def model(x):
    """A global discrete latent ``g``, a 2-d Gaussian latent ``u`` and a discrete latent ``k``
    per group, a discrete latent ``c`` per point (masked at one point); observations masked at
    one point."""
    w = pyro.param("w", torch.tensor([1.0, -0.5]))
    g = pyro.sample("g", dist.Bernoulli(G_PRIOR))
    with pyro.plate("groups", G, dim=-2):
        u = pyro.sample("u", dist.Normal(0.0, torch.tensor([1.0, 2.0])).to_event(1))
        k = pyro.sample("k", dist.Bernoulli(K_PRIOR))
        with pyro.plate("points", N, dim=-1):
            with poutine.mask(mask=C_MASK):
                c = pyro.sample("c", dist.Bernoulli(C_PRIOR))
            loc = (u * w).sum(-1) + 2.0 * c - g + 1.5 * k
            with poutine.mask(mask=OBS_MASK):
                pyro.sample("x", dist.Normal(loc, 1.0), obs=x)


def guide(x):
    a = pyro.param("a", torch.tensor(0.4))
    mu = pyro.param("mu", torch.tensor([[0.2, -0.1], [0.5, 0.05]]))
    s = pyro.param("s", torch.tensor([0.7, 1.4]), constraint=dist.constraints.positive)
    logits = pyro.param("logits", torch.tensor([[0.3, -0.8, 1.1], [-0.2, 0.6, 0.0]]))
    k_logits = pyro.param("k_logits", torch.tensor([[0.9], [-0.4]]))
    pyro.sample("g", dist.Bernoulli(logits=a))
    with pyro.plate("groups", G, dim=-2):
        pyro.sample("u", dist.Normal(mu.unsqueeze(-2), s).to_event(1))
        pyro.sample("k", dist.Bernoulli(logits=k_logits))
        with pyro.plate("points", N, dim=-1):
            pyro.sample("c", dist.Bernoulli(logits=logits))


PARAMS = ("a", "mu", "s", "logits", "k_logits", "w")


def unconstrained():
    return [pyro.param(n).unconstrained() for n in PARAMS]


def traces(x):
    g = poutine.trace(guide).get_trace(x)
    m = poutine.trace(poutine.replay(model, trace=g)).get_trace(x)
    return m, g


def by_hand(x, seed, num_particles, penalty):
    """The surrogate objective, averaged over ``num_particles`` draws, written per element:
    each non-reparameterized site is rewarded with the detached terms of its own plate elements
    and of the plates around it. ``penalty(kl_c, kl_u, kl_k, kl_g)`` gives the KL penalty of
    the whole draw and its per-element parts ``(pen_c (G, N), pen_u (G,), pen_k (G,),
    pen_g ())``."""
    pyro.set_rng_seed(seed)
    total = 0.0
    for _ in range(num_particles):
        m, g = traces(x)
        q_c, p_c = g.nodes["c"]["fn"], m.nodes["c"]["fn"]
        c, gv = g.nodes["c"]["value"], g.nodes["g"]["value"]
        kl_c = torch.distributions.kl_divergence(q_c, p_c) * C_MASK  # (G, N)
        q_u, p_u = g.nodes["u"]["fn"].base_dist, m.nodes["u"]["fn"].base_dist
        kl_u = torch.distributions.kl_divergence(q_u, p_u)  # (G, 1, 2)
        kl_g = torch.distributions.kl_divergence(g.nodes["g"]["fn"], m.nodes["g"]["fn"])
        q_k = g.nodes["k"]["fn"]
        kl_k = torch.distributions.kl_divergence(q_k, m.nodes["k"]["fn"])  # (G, 1)
        lp_x = m.nodes["x"]["fn"].log_prob(x) * OBS_MASK  # (G, N)
        pen, pen_c, pen_u, pen_k, pen_g = penalty(kl_c, kl_u, kl_k, kl_g)
        objective = lp_x.sum() - pen
        score = 0.0
        for i in range(G):
            for j in range(N):
                if not C_MASK[i, j]:
                    continue
                reward = lp_x[i, j] - pen_c[i, j] - pen_u[i] - pen_k[i] - pen_g
                score = score + reward.detach() * q_c.log_prob(c)[i, j]
        for i in range(G):
            reward = lp_x[i].sum() - pen_c[i].sum() - pen_u[i] - pen_k[i] - pen_g
            score = score + reward.detach() * q_k.log_prob(g.nodes["k"]["value"])[i, 0]
        reward_g = lp_x.sum() - pen_c.sum() - pen_u.sum() - pen_k.sum() - pen_g
        score = score + reward_g.detach() * g.nodes["g"]["fn"].log_prob(gv)
        total = total + (objective + score) / num_particles
    return total


def annealed_penalty(beta):
    def penalty(kl_c, kl_u, kl_k, kl_g):
        pen_c, pen_u, pen_g = beta * kl_c, beta * kl_u.sum((-2, -1)), beta * kl_g
        pen_k = beta * kl_k.reshape(G)
        return pen_c.sum() + pen_u.sum() + pen_k.sum() + pen_g, pen_c, pen_u, pen_k, pen_g

    return penalty


def free_bits_penalty(lam):
    """Each latent dimension's batch-averaged KL floored at ``lam``; the floored dimensions
    are left out of the rewards. ``c``'s average is over its unmasked points only."""

    def penalty(kl_c, kl_u, kl_k, kl_g):
        mean_c = kl_c.sum() / C_MASK.sum()
        mean_u = kl_u.mean((0, 1))  # (2,), one per dimension of u
        mean_k = kl_k.mean()
        pen = (
            torch.clamp(mean_c, min=lam) * C_MASK.sum()
            + (torch.clamp(mean_u, min=lam) * G).sum()
            + torch.clamp(mean_k, min=lam) * G
            + torch.clamp(kl_g, min=lam)
        )
        pen_c = kl_c * (mean_c > lam)
        pen_u = (kl_u * (mean_u > lam)).sum((-2, -1))
        pen_k = kl_k.reshape(G) * (mean_k > lam)
        pen_g = kl_g * (kl_g > lam)
        return pen, pen_c, pen_u, pen_k, pen_g

    return penalty


def grads(loss):
    return torch.autograd.grad(loss, unconstrained())


def assert_same_gradient(ours, expected):
    for name, g1, g2 in zip(PARAMS, grads(ours), grads(-expected), strict=True):
        assert torch.allclose(g1, g2, rtol=1e-6, atol=1e-9), name


@pytest.mark.parametrize("num_particles", [1, 2])
@pytest.mark.parametrize("beta", [0.0, 0.7, 1.0])
def test_annealed_surrogate_gradient_per_element(beta, num_particles):
    x = X.to(torch.get_default_dtype())
    elbo = AnnealedELBO(beta, num_particles=num_particles)
    pyro.set_rng_seed(11)
    ours = elbo.differentiable_loss(model, guide, x)
    assert_same_gradient(ours, by_hand(x, 11, num_particles, annealed_penalty(beta)))


@pytest.mark.parametrize("num_particles", [1, 2])
def test_free_bits_surrogate_gradient_per_element(num_particles):
    """A floor between the per-dimension average KLs: some dimensions are floored, others not,
    and the discrete sites' rewards carry only the unfloored ones."""
    x = X.to(torch.get_default_dtype())
    pyro.set_rng_seed(11)
    m, g = traces(x)
    kl_u = torch.distributions.kl_divergence(
        g.nodes["u"]["fn"].base_dist, m.nodes["u"]["fn"].base_dist
    ).mean((0, 1))
    kl_c = torch.distributions.kl_divergence(g.nodes["c"]["fn"], m.nodes["c"]["fn"]) * C_MASK
    kl_c = kl_c.sum() / C_MASK.sum()
    kl_g = torch.distributions.kl_divergence(g.nodes["g"]["fn"], m.nodes["g"]["fn"])
    kl_k = torch.distributions.kl_divergence(g.nodes["k"]["fn"], m.nodes["k"]["fn"]).mean()
    means = sorted(float(v) for v in [*kl_u.detach(), kl_c.detach(), kl_k.detach(), kl_g.detach()])
    lam = (means[1] + means[2]) / 2  # two dimensions below, the others above
    assert means[1] < lam < means[2]
    elbo = FreeBitsELBO(lam, num_particles=num_particles)
    pyro.set_rng_seed(11)
    ours = elbo.differentiable_loss(model, guide, x)
    assert_same_gradient(ours, by_hand(x, 11, num_particles, free_bits_penalty(lam)))


@pytest.mark.parametrize("make", [lambda: AnnealedELBO(0.7), lambda: FreeBitsELBO(0.05)])
def test_differentiable_loss_value_is_the_loss(make):
    x = X.to(torch.get_default_dtype())
    pyro.set_rng_seed(4)
    value = float(make().differentiable_loss(model, guide, x).detach())
    pyro.set_rng_seed(4)
    assert value == pytest.approx(make().loss(model, guide, x), rel=1e-12)


def test_loss_with_monte_carlo_kl_uses_the_draw(rtol):
    """``analytic_kl=False``: the penalty is ``beta (log q(z) - log p(z))`` at the draw."""

    def model_n(x):
        with pyro.plate("data", len(x)):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            pyro.sample("x", dist.Normal(z, 1.0), obs=x)

    def guide_n(x):
        with pyro.plate("data", len(x)):
            pyro.sample("z", dist.Normal(0.5 * x, 0.6))

    x = X[0].to(torch.get_default_dtype())
    pyro.set_rng_seed(3)
    z = poutine.trace(guide_n).get_trace(x).nodes["z"]["value"]
    log_lik = dist.Normal(z, 1.0).log_prob(x).sum()
    mc = (dist.Normal(0.5 * x, 0.6).log_prob(z) - dist.Normal(0.0, 1.0).log_prob(z)).sum()
    analytic = torch.distributions.kl_divergence(dist.Normal(0.5 * x, 0.6), dist.Normal(0, 1))
    assert abs(float(mc - analytic.sum())) > 0.1  # the two penalties differ at this draw
    for flag, kl in [(False, mc), (True, analytic.sum())]:
        pyro.set_rng_seed(3)
        loss = AnnealedELBO(0.5, analytic_kl=flag).loss(model_n, guide_n, x)
        assert loss == pytest.approx(float(-log_lik + 0.5 * kl), rel=rtol)


# --- kl_terms ------------------------------------------------------------------------------


def test_kl_terms_per_site():
    x = X.to(torch.get_default_dtype())
    pyro.set_rng_seed(0)
    m, g = traces(x)
    terms = {t.name: t for t in kl_terms(m, g)}  # analytic by default
    assert list(terms) == ["g", "u", "k", "c"]
    assert all(t.analytic for t in terms.values())
    u, c, gl = terms["u"], terms["c"], terms["g"]
    assert u.kl.shape == (G, 1, 2) and u.weight.shape == (G, 1) and u.plate_dims == (-2,)
    expected_u = torch.distributions.kl_divergence(
        g.nodes["u"]["fn"].base_dist, m.nodes["u"]["fn"].base_dist
    )
    assert torch.equal(u.kl, expected_u) and u.score_log_q is None
    assert c.kl.shape == (G, N) and c.plate_dims == (-2, -1)
    assert torch.equal(c.weight, C_MASK.to(c.kl.dtype))  # the model's mask
    assert torch.equal(c.score_log_q, g.nodes["c"]["fn"].log_prob(g.nodes["c"]["value"]))
    assert gl.kl.shape == () and gl.plate_dims == () and gl.score_log_q is not None
    kl, weight = c.per_dimension()
    assert kl.shape == (G * N,) and weight.shape == (G * N,)
    kl, weight = u.per_dimension()
    assert kl.shape == (G, 2) and weight.shape == (G, 1)

    mc = {t.name: t for t in kl_terms(m, g, analytic_kl=False)}
    assert all(t.analytic is False for t in mc.values())
    q_u, p_u = g.nodes["u"]["fn"].base_dist, m.nodes["u"]["fn"].base_dist
    z = g.nodes["u"]["value"]
    assert torch.allclose(mc["u"].kl, q_u.log_prob(z) - p_u.log_prob(z))


def test_kl_terms_scale_and_no_closed_form():
    def model_t(x):
        with pyro.plate("data", 8, subsample=torch.arange(2)):
            pyro.sample("z", dist.StudentT(3.0, 0.0, 1.0))

    def guide_t(x):
        with pyro.plate("data", 8, subsample=torch.arange(2)):
            pyro.sample("z", dist.Normal(0.0, 1.0))

    g = poutine.trace(guide_t).get_trace(None)
    m = poutine.trace(poutine.replay(model_t, trace=g)).get_trace(None)
    (term,) = kl_terms(m, g)
    assert not term.analytic  # no closed form: the one-draw estimate
    z = g.nodes["z"]["value"]
    assert torch.allclose(
        term.kl, dist.Normal(0.0, 1.0).log_prob(z) - dist.StudentT(3.0, 0.0, 1.0).log_prob(z)
    )
    assert torch.equal(term.weight, torch.full((2,), 4.0, dtype=term.kl.dtype))


def test_kl_terms_with_an_unfactorized_prior():
    """A factorized guide against a multivariate prior: the whole event is one group (no
    ``Independent`` on the prior's side to peel), with Pyro's closed form for the pair."""
    cov = torch.tensor([[1.0, 0.5], [0.5, 2.0]])

    def model_m():
        pyro.sample("z", dist.MultivariateNormal(torch.zeros(2), cov))

    def guide_m():
        pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))

    g = poutine.trace(guide_m).get_trace()
    m = poutine.trace(poutine.replay(model_m, trace=g)).get_trace()
    (term,) = kl_terms(m, g)
    expected = torch.distributions.kl_divergence(g.nodes["z"]["fn"], m.nodes["z"]["fn"])
    assert term.analytic and term.kl.shape == ()
    assert torch.allclose(term.kl, expected)


def test_kl_terms_guide_site_missing_from_the_model():
    def guide_extra(x):
        guide(x)
        pyro.sample("extra", dist.Normal(0.0, 1.0))

    x = X.to(torch.get_default_dtype())
    g = poutine.trace(guide_extra).get_trace(x)
    m = poutine.trace(poutine.replay(model, trace=g)).get_trace(x)
    with pytest.raises(ValueError, match=r"^guide site 'extra' does not appear in the model$"):
        kl_terms(m, g)


# --- arguments, particles and the loss-only path -------------------------------------------


def test_defaults_and_argument_messages():
    assert AnnealedELBO().beta == 1.0
    with pytest.raises(ValueError, match=r"^beta must be finite and >= 0, got -1\.0$"):
        AnnealedELBO(-1.0)
    with pytest.raises(ValueError, match=r"^beta must be finite and >= 0, got -1\.0$"):
        AnnealedELBO(lambda step: -1.0 if step == 0 else 1.0)  # checked at step 0
    with pytest.raises(TypeError, match=r"^beta must be a real number, got str$"):
        AnnealedELBO(lambda step: "1")
    with pytest.raises(ValueError, match=r"^free_bits must be finite and >= 0, got -0\.5$"):
        FreeBitsELBO(-0.5)
    with pytest.raises(ValueError, match=r"^num_particles must be an int >= 1, got 0$"):
        FreeBitsELBO(0.1, num_particles=0)


@pytest.mark.parametrize("nesting", [1, 2])
def test_vectorized_particles_reach_the_model(nesting):
    shapes = []

    def model_v(x):
        with pyro.plate("data", len(x)):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            shapes.append(tuple(z.shape))
            pyro.sample("x", dist.Normal(z, 1.0), obs=x)

    def guide_v(x):
        with pyro.plate("data", len(x)):
            pyro.sample("z", dist.Normal(0.0, 1.0))

    x = X[0].to(torch.get_default_dtype())
    elbo = AnnealedELBO(0.5, num_particles=4, vectorize_particles=True, max_plate_nesting=nesting)
    elbo.loss(model_v, guide_v, x)
    assert shapes[-1] == (4,) + (1,) * (nesting - 1) + (3,)


def test_keyword_arguments_reach_model_and_guide():
    def model_k(x, *, shift):
        with pyro.plate("data", len(x)):
            z = pyro.sample("z", dist.Normal(shift, 1.0))
            pyro.sample("x", dist.Normal(z, 1.0), obs=x)

    def guide_k(x, *, shift):
        loc = pyro.param("loc_k", torch.tensor(0.0))
        with pyro.plate("data", len(x)):
            pyro.sample("z", dist.Normal(loc + shift, 1.0))

    x = X[0].to(torch.get_default_dtype())
    for elbo in (AnnealedELBO(0.5), FreeBitsELBO(0.1)):
        # the prior and guide move together: the KL is 0 whatever the shift
        assert math.isfinite(elbo.loss(model_k, guide_k, x, shift=2.0))
        assert elbo.differentiable_loss(model_k, guide_k, x, shift=2.0).requires_grad
        svi = SVI(model_k, guide_k, Adam({"lr": 0.01}), elbo)
        assert math.isfinite(svi.step(x, shift=2.0)) and elbo.num_steps == 1


@pytest.mark.filterwarnings("ignore:`torch.jit.trace` is deprecated:DeprecationWarning")
@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize("cls", [AnnealedELBO, FreeBitsELBO])
def test_loss_names_non_finite_data(cls, jit):
    x = X.clone().to(torch.get_default_dtype())
    elbo = cls(0.5, jit=jit)
    assert elbo.jit is jit
    elbo.loss(model, guide, x)  # compiles under jit
    x[1, 2] = math.nan  # with Pyro's validation off, the loss itself looks for the cause
    message = (
        f"^{cls.__name__}.loss: particle 0: model observed site 'x': its value is not finite "
        r"\(the data are not finite\)$"
    )
    with pytest.raises(ValueError, match=message), pyro.validation_enabled(False):
        elbo.loss(model, guide, x)


def test_loss_joins_the_lines_of_every_particle():
    x = X.clone().to(torch.get_default_dtype())
    x[0, 0] = math.inf
    line = "particle {}: model observed site 'x': its value is not finite"
    message = f"^AnnealedELBO.loss: {line.format(0)}; {line.format(1)} " + r"\(the data"
    with pytest.raises(ValueError, match=message), pyro.validation_enabled(False):
        AnnealedELBO(0.5, num_particles=2).loss(model, guide, x)


def test_non_finite_guide_draw_is_named():
    x = X.to(torch.get_default_dtype())
    pyro.param("mu", torch.full((G, 2), math.nan))
    with pytest.raises(FloatingPointError) as info, pyro.validation_enabled(False):
        SVI(model, guide, Adam({"lr": 0.01}), AnnealedELBO(0.5)).step(x)
    assert "particle 0: guide latent site 'u': its value is not finite" in str(info.value)


def test_jit_warns_of_the_deprecated_tracer():
    x = X.to(torch.get_default_dtype())
    with pytest.warns(DeprecationWarning, match="torch.jit.trace"):
        AnnealedELBO(0.5, jit=True).loss(model, guide, x)


def test_loss_warns_on_nan_from_the_parameters():
    x = X.to(torch.get_default_dtype())
    pyro.param("w", torch.tensor([math.nan, 1.0]))
    with pytest.warns(UserWarning, match="^Encountered NaN: loss$"), pyro.validation_enabled(False):
        loss = AnnealedELBO(0.5).loss(model, guide, x)
    assert math.isnan(loss)


def test_non_finite_step_names_every_particle_and_the_class():
    x = X.clone().to(torch.get_default_dtype())
    pyro.param("w", torch.tensor([math.inf, 1.0]))  # every particle's likelihood goes non-finite
    elbo = FreeBitsELBO(0.1, num_particles=2)
    svi = SVI(model, guide, Adam({"lr": 0.01}), elbo)
    with pytest.raises(FloatingPointError, match=r"^FreeBitsELBO step 0") as info:
        svi.step(x)
    text = str(info.value)
    assert "particle 0: model observed site 'x': log_prob is not finite" in text
    assert "particle 1: model observed site 'x': log_prob is not finite" in text
    assert elbo.num_steps == 0


def test_non_finite_kl_term_is_named():
    """An infinite closed-form KL (the guide's support is wider than the prior's) while every
    site's value and log-density are finite: the message names the KL term."""

    def model_u():
        pyro.sample("y", dist.Normal(0.0, 1.0))
        pyro.sample("z", dist.Uniform(0.0, 1.0))

    def guide_u():
        hi = pyro.param("hi", torch.tensor(1.01), constraint=dist.constraints.positive)
        pyro.sample("y", dist.Normal(0.5, 1.0))  # a finite KL term, not named
        pyro.sample("z", dist.Uniform(0.0, hi))

    pyro.set_rng_seed(0)
    elbo = AnnealedELBO(1.0, num_particles=2)
    svi = SVI(model_u, guide_u, Adam({"lr": 0.01}), elbo)
    with pytest.raises(FloatingPointError) as info:
        svi.step()
    text = str(info.value)
    for i in (0, 1):
        assert f"particle {i}: the KL term of site 'z' is not finite" in text
    assert "log_prob is not finite" not in text and "'y'" not in text


@pytest.mark.parametrize("cls", [AnnealedELBO, FreeBitsELBO])
def test_empty_data_names_the_loss(cls):
    empty = torch.zeros(0, N)

    def model_e(x):
        with pyro.plate("points", len(x)):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            pyro.sample("x", dist.Normal(z, 1.0).to_event(1), obs=x)

    def guide_e(x):
        with pyro.plate("points", len(x)):
            pyro.sample("z", dist.Normal(0.0, 1.0))

    with pytest.raises(ValueError, match=f"^{cls.__name__}: a plate of size 0"):
        cls(0.5).loss(model_e, guide_e, empty)


def autoguide_model(x):
    """A location and a positive scale (a constrained site: the autoguides' ``Delta`` sites
    carry a nonzero log-density), with a plate of observations."""
    loc = pyro.sample("loc", dist.Normal(0.0, 5.0))
    scale = pyro.sample("scale", dist.HalfNormal(2.0))
    with pyro.plate("data", x.shape[0]):
        pyro.sample("x", dist.Normal(loc, scale), obs=x)


def _autoguides():
    from pyro.infer.autoguide import AutoDiagonalNormal, AutoMultivariateNormal, AutoNormal

    from pyrogen.infer import AutoFlow

    return {
        "AutoNormal": AutoNormal,
        "AutoDiagonalNormal": AutoDiagonalNormal,
        "AutoMultivariateNormal": AutoMultivariateNormal,
        "AutoFlow": lambda m: AutoFlow(m, num_layers=1, hidden_dims=(8,), init_laplace=False),
    }


def _loss_and_grads(loss, guide_name, x, seed=0):
    """The loss and parameter gradients of one draw at a fixed seed (fresh guide each call)."""
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    guide = _autoguides()[guide_name](autoguide_model)
    guide(x)  # create the parameters
    pyro.set_rng_seed(seed + 1)
    value = loss.differentiable_loss(autoguide_model, guide, x)
    params = dict(pyro.get_param_store().named_parameters())
    grads = torch.autograd.grad(value, list(params.values()), allow_unused=True)
    grads = {k: g for k, g in zip(params, grads, strict=True) if g is not None}
    return float(value.detach()), grads


@pytest.mark.parametrize("guide_name", ["AutoNormal", "AutoDiagonalNormal",
                                        "AutoMultivariateNormal", "AutoFlow"])  # fmt: skip
def test_annealed_elbo_with_autoguides_is_the_elbo_at_beta_one(guide_name, rtol):
    """Autoguides draw an auxiliary latent and set the model's sites with ``Delta``s: at beta = 1
    the annealed loss and its gradients are ``Trace_ELBO``'s (the same draw), and the loss is
    linear in beta between the reconstruction term (beta = 0) and the ELBO."""
    from pyro.infer import Trace_ELBO

    x = torch.tensor([0.5, 1.0, 1.5, 3.0])
    ref, ref_grads = _loss_and_grads(Trace_ELBO(), guide_name, x)
    ours, grads = _loss_and_grads(AnnealedELBO(1.0), guide_name, x)
    assert ours == pytest.approx(ref, rel=rtol, abs=rtol)
    assert grads.keys() == ref_grads.keys() and grads
    for name, g in grads.items():
        torch.testing.assert_close(g, ref_grads[name], rtol=rtol, atol=rtol)
    zero, _ = _loss_and_grads(AnnealedELBO(0.0), guide_name, x)
    half, _ = _loss_and_grads(AnnealedELBO(0.5), guide_name, x)
    assert half == pytest.approx((zero + ours) / 2, rel=rtol, abs=rtol)
    assert zero != pytest.approx(ours)  # the KL term is not zero: the check has teeth


def test_kl_terms_of_an_autoguide_sum_to_the_monte_carlo_kl():
    """The auxiliary site's term is its ``log q``, each ``Delta`` site's is ``log_density -
    log p``: their sum is ``log q(z) - log p(z)`` of the draw (Pyro's registered KL of a Delta,
    ``-log p(v)``, would drop the log-density of the constrained site)."""
    from pyro.infer.autoguide import AutoMultivariateNormal

    x = torch.tensor([0.5, 1.0, 1.5, 3.0])
    guide = AutoMultivariateNormal(autoguide_model)
    guide_trace = poutine.trace(guide).get_trace(x)
    model_trace = poutine.trace(poutine.replay(autoguide_model, guide_trace)).get_trace(x)
    terms = {t.name: t for t in kl_terms(model_trace, guide_trace)}
    assert set(terms) == {"_AutoMultivariateNormal_latent", "loc", "scale"}
    assert [n for n, t in terms.items() if t.auxiliary] == ["_AutoMultivariateNormal_latent"]
    assert not any(t.analytic for t in terms.values())
    latent = guide_trace.nodes["_AutoMultivariateNormal_latent"]
    log_q = latent["fn"].log_prob(latent["value"])
    for name in ("loc", "scale"):
        log_q = log_q + guide_trace.nodes[name]["fn"].log_prob(guide_trace.nodes[name]["value"])
    log_p = sum(model_trace.nodes[n]["fn"].log_prob(model_trace.nodes[n]["value"])
                for n in ("loc", "scale"))  # fmt: skip
    total = sum(t.kl.sum() for t in terms.values())
    torch.testing.assert_close(total, log_q - log_p)
    scale = model_trace.nodes["scale"]
    dropped = -scale["fn"].log_prob(scale["value"])  # Pyro's KL(Delta || p)
    assert float(terms["scale"].kl.detach()) != pytest.approx(float(dropped.detach()))
    # the Delta's log-density (log |dz/du| of the positive site) is counted


@pytest.mark.parametrize("guide_name", ["AutoNormal", "AutoFlow"])
def test_free_bits_rejects_an_autoguide(guide_name):
    x = torch.tensor([0.5, 1.0, 1.5, 3.0])
    pyro.clear_param_store()
    guide = _autoguides()[guide_name](autoguide_model)
    svi = SVI(autoguide_model, guide, Adam({"lr": 0.01}), FreeBitsELBO(0.5))
    with pytest.raises(ValueError, match="auxiliary latent"):
        svi.step(x)
    with pytest.raises(ValueError, match="auxiliary latent"):
        svi.evaluate_loss(x)


def test_free_bits_with_a_site_masked_out_entirely():
    """A latent site whose every batch element is masked out (a padded step) contributes no KL:
    at ``free_bits = 0`` the loss is the mean-field ELBO's, finite, and a step trains."""
    from pyro.infer import TraceMeanField_ELBO

    x = torch.tensor([0.5, 1.0, 1.5])

    def masked_model(x):
        with pyro.plate("data", len(x)):
            pyro.sample("z1", dist.Normal(0.0, 1.0))
            with poutine.mask(mask=torch.zeros(len(x), dtype=torch.bool)):
                z2 = pyro.sample("z2", dist.Normal(0.0, 1.0))
                pyro.sample("x2", dist.Normal(z2, 1.0), obs=x)

    def masked_guide(x):
        loc = pyro.param("loc", torch.zeros(2, len(x)))
        with pyro.plate("data", len(x)):
            pyro.sample("z1", dist.Normal(loc[0], 1.0))
            pyro.sample("z2", dist.Normal(loc[1], 1.0))

    values = {}
    for name, loss in (("ref", TraceMeanField_ELBO()), ("fb", FreeBitsELBO(0.0))):
        pyro.clear_param_store()
        pyro.set_rng_seed(0)
        values[name] = loss.loss(masked_model, masked_guide, x)
    assert math.isfinite(values["fb"])
    assert values["fb"] == pytest.approx(values["ref"], rel=1e-6)
    pyro.clear_param_store()
    svi = SVI(masked_model, masked_guide, Adam({"lr": 0.1}), FreeBitsELBO(0.5))
    assert math.isfinite(svi.step(x))
