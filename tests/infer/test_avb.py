"""Adversarial Variational Bayes: the discriminator's optimum, the ELBO estimate and its
gradient with an exact discriminator, adaptive contrast, SVI integration and errors."""

import math

import pyro
import pyro.distributions as dist
import pytest
import scipy.special
import torch
from pyro.infer import SVI
from pyro.optim import Adam
from torch import nn

from pyrogen.infer import AVB
from tests import same_draws

W = 1.5  # x | z ~ N(W z, 1), z ~ N(0, 1)


def model(x):
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", same_draws.Normal(torch.zeros_like(x), 1.0).to_event(1))
        pyro.sample("x", dist.Normal(W * z, 1.0).to_event(1), obs=x)


def implicit_guide(x):
    """A Gaussian written as an implicit guide: z = a x + s eps."""
    a = pyro.param("a", torch.tensor(0.8))
    s = pyro.param("s", torch.tensor(0.5))
    eps = same_draws.randn(*x.shape).to(x)  # drawn in float64: the same in every dtype
    with pyro.plate("data", x.shape[0]):
        pyro.sample("z", dist.Delta(a * x + s * eps, event_dim=1))


def log_ratio(z, x, a=0.8, s=0.5):
    """log q(z | x) - log p(z) for the Gaussian guide above."""
    return (dist.Normal(a * x, s).log_prob(z) - dist.Normal(0.0, 1.0).log_prob(z)).sum(-1)


class Exact(nn.Module):
    """The optimal discriminator T*(z, x) = log q - log p, read from the param store."""

    def __init__(self):
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(()))

    def forward(self, z, x):
        return log_ratio(z, x, pyro.param("a"), pyro.param("s")) + 0 * self.unused


def analytic_elbo(x, a, s):
    m = a * x
    log_lik = -0.5 * math.log(2 * math.pi) - 0.5 * ((x - W * m) ** 2 + W**2 * s**2)
    log_prior = -0.5 * math.log(2 * math.pi) - 0.5 * (m**2 + s**2)
    entropy = 0.5 * torch.log(2 * math.pi * math.e * s**2)
    return (log_lik + log_prior + entropy).sum()


def test_discriminator_recovers_log_q_minus_log_p():
    # initial weights, data, guide and prior draws made in float64, then cast: every dtype
    # trains from the same start on the same draws (float32 draws of its own are another run)
    pyro.set_rng_seed(0)
    implicit_guide(torch.zeros(1, 1))  # create the guide's params
    with same_draws.in_float64():
        net = nn.Sequential(
            nn.Linear(2, 64), nn.ELU(), nn.Linear(64, 64), nn.ELU(), nn.Linear(64, 1)
        )
    dtype = torch.get_default_dtype()
    net = net.to(dtype)

    class T(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, z, x):
            return self.net(torch.cat([z, x], -1))

    avb = AVB(T(), Adam({"lr": 3e-3}))
    for _ in range(2000):
        avb.discriminator_step(model, implicit_guide, same_draws.randn(512, 1))
    x = same_draws.randn(2000, 1)
    z = 0.8 * x + 0.5 * same_draws.randn(2000, 1)  # where the guide puts its mass
    with torch.no_grad():
        learned = avb.discriminator(z, x).squeeze(-1)
    exact = log_ratio(z, x)
    err = (learned - exact).abs()
    assert err.mean() < 0.1 and torch.quantile(err, 0.9) < 0.2, (err.mean(), err.max())


def test_loss_with_exact_discriminator_is_the_elbo_of_the_same_draw(rtol):
    pyro.set_rng_seed(1)
    x = torch.randn(64, 1)
    implicit_guide(x)
    avb = AVB(Exact(), Adam({"lr": 0.0}), discriminator_steps=0)
    torch.manual_seed(3)
    loss = avb.loss(model, implicit_guide, x)
    torch.manual_seed(3)
    z = 0.8 * x + 0.5 * same_draws.randn(*x.shape)  # the guide's draw
    log_joint = dist.Normal(W * z, 1.0).log_prob(x).sum() + dist.Normal(0.0, 1.0).log_prob(z).sum()
    log_q = dist.Normal(0.8 * x, 0.5).log_prob(z).sum()
    assert loss == pytest.approx(-(log_joint - log_q).item(), rel=rtol, abs=rtol)


def test_gradient_with_exact_discriminator_is_the_elbo_gradient():
    """E_q[grad_phi T*] = 0 makes the path gradient with T fixed unbiased for the ELBO's."""
    pyro.set_rng_seed(2)
    x = torch.randn(4096, 1)
    implicit_guide(x)
    avb = AVB(Exact(), Adam({"lr": 0.0}), discriminator_steps=0)
    a, s = pyro.param("a").unconstrained(), pyro.param("s").unconstrained()
    grads = []
    for _ in range(30):
        a.grad = s.grad = None
        avb.loss_and_grads(model, implicit_guide, x)
        grads.append(torch.stack([a.grad, s.grad]))
    grads = torch.stack(grads)
    mean, se = grads.mean(0), grads.std(0) / math.sqrt(len(grads))
    a0, s0 = torch.tensor(0.8, requires_grad=True), torch.tensor(0.5, requires_grad=True)
    exact = torch.stack(torch.autograd.grad(-analytic_elbo(x, a0, s0), (a0, s0)))
    assert ((mean - exact).abs() < 4 * se + 1e-6).all(), (mean, exact, se)
    assert (exact.abs() > 10 * se).all()  # the check has power


def moment_bias(n: int) -> float:
    r"""E[KL(q || r)] per datum for a 1-D Gaussian q and the Gaussian r with the mean and the
    (unbiased) sd of n independent draws of q: with (n - 1) s_r^2 / s^2 ~ chi^2_{n-1}
    independent of the mean's error ~ N(0, s^2 / n),
    E[log(s_r / s)] + (1 + 1/n) E[s^2 / s_r^2] / 2 - 1/2, E[s^2 / s_r^2] = (n - 1) / (n - 3)."""
    log_ratio = 0.5 * (scipy.special.digamma((n - 1) / 2) + math.log(2 / (n - 1)))
    return log_ratio + (1 + 1 / n) * (n - 1) / (2 * (n - 3)) - 0.5


class Zero(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, z, x):
        return self.w * z.sum(-1)


def adaptive_losses(x, num_moment_samples: int, repeats: int) -> torch.Tensor:
    avb = AVB(
        Zero(), Adam({"lr": 0.0}), discriminator_steps=0, adaptive_contrast=True,
        num_moment_samples=num_moment_samples,
    )  # fmt: skip
    return torch.tensor([avb.loss(model, implicit_guide, x) for _ in range(repeats)])


def test_adaptive_contrast_with_the_exact_posterior_as_guide():
    """With T = 0 the estimate is log p(x, z) - log r(z), r the Gaussian with the guide's
    sample moments. For the exact posterior as guide log p(x, z) - log q(z) = log p(x) for
    every z, so the loss is -log p(x) - sum_i (log q - log r)(z_i), of mean
    -log p(x) - N E[KL(q || r)] (``moment_bias``, 4 nats here) and small variance: the
    tolerance is 4 Monte Carlo standard errors (about 1.5 nats), nothing more."""
    pyro.set_rng_seed(4)
    x = torch.randn(256, 1)
    pyro.param("a", torch.tensor(W / (1 + W**2)))  # z | x ~ N(W x / (1 + W^2), 1 / (1 + W^2))
    pyro.param("s", torch.tensor((1 + W**2) ** -0.5))
    n, repeats = 64, 50
    losses = adaptive_losses(x, n, repeats)
    se = float(losses.std()) / math.sqrt(repeats)
    log_px = float(dist.Normal(0.0, math.sqrt(1 + W**2)).log_prob(x).sum())
    expected = -log_px - len(x) * moment_bias(n)
    assert se < 0.5 and len(x) * moment_bias(n) > 6 * se  # the bias is resolved
    assert abs(float(losses.mean()) - expected) < 4 * se, (float(losses.mean()), expected, se)


def test_adaptive_contrast_with_a_gaussian_guide():
    """For a Gaussian guide, log q - log r = 0 when r has q's moments, so T = 0 is optimal and
    the estimate is the ELBO plus the moments' sampling error, of mean N E[KL(q || r)]
    (``moment_bias``); the tolerance is 4 Monte Carlo standard errors of the mean of the
    losses (their spread is that of log p(x, z) - log q(z) over the draws)."""
    pyro.set_rng_seed(4)
    x = torch.randn(256, 1)
    implicit_guide(x)
    n, repeats = 400, 50
    losses = adaptive_losses(x, n, repeats)
    se = float(losses.std()) / math.sqrt(repeats)
    elbo = float(analytic_elbo(x, torch.tensor(0.8), torch.tensor(0.5)))
    expected = -elbo - len(x) * moment_bias(n)
    assert abs(float(losses.mean()) - expected) < 4 * se, (float(losses.mean()), expected, se)


def test_adaptive_contrast_discriminator_learns_zero_for_gaussian_guide():
    pyro.set_rng_seed(5)
    implicit_guide(torch.zeros(1, 1))

    class T(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(2, 32), nn.ELU(), nn.Linear(32, 1))

        def forward(self, z, x):
            return self.net(torch.cat([z, x], -1))

    avb = AVB(T(), Adam({"lr": 3e-3}), adaptive_contrast=True)
    for _ in range(300):
        avb.discriminator_step(model, implicit_guide, torch.randn(256, 1))
    x = torch.randn(1000, 1)
    with torch.no_grad():
        t = avb.discriminator(torch.randn(1000, 1), x)
    assert t.abs().mean() < 0.1


def test_svi_step_trains_model_guide_and_discriminator_separately():
    pyro.set_rng_seed(6)
    x = torch.randn(128, 1)

    class T(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = nn.Linear(2, 1)

        def forward(self, z, x):
            return self.net(torch.cat([z, x], -1))

    disc = T()
    before = [p.detach().clone() for p in disc.parameters()]
    avb = AVB(disc, Adam({"lr": 1e-2}))
    svi = SVI(model, implicit_guide, Adam({"lr": 1e-2}), loss=avb)
    a0 = pyro.param("a", torch.tensor(0.8)).item()
    loss = svi.step(x)
    assert math.isfinite(loss)
    assert pyro.param("a").item() != a0
    assert all(p.grad is None for p in disc.parameters())
    assert any(not torch.equal(b, p) for b, p in zip(before, disc.parameters(), strict=True))


def test_errors():
    x = torch.randn(8, 1)
    disc = nn.Linear(2, 1)
    with pytest.raises(TypeError, match="discriminator"):
        AVB(lambda z, x: z, Adam({"lr": 1e-3}))
    with pytest.raises(ValueError, match="discriminator_steps"):
        AVB(disc, Adam({"lr": 1e-3}), discriminator_steps=-1)
    with pytest.raises(ValueError, match="num_moment_samples"):
        AVB(disc, Adam({"lr": 1e-3}), num_moment_samples=1)

    class Cat(nn.Module):
        def __init__(self, out=1):
            super().__init__()
            self.net = nn.Linear(2, out)

        def forward(self, z, x):
            return self.net(torch.cat([z, x], -1))

    def wrong_guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("w", dist.Delta(x, event_dim=1))

    with pytest.raises(ValueError, match="'w' is not a latent of the model"):
        AVB(Cat(), Adam({"lr": 1e-3}), discriminator_steps=0).loss(model, wrong_guide, x)

    def discrete_guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Bernoulli(0.5 * torch.ones_like(x)).to_event(1))

    with pytest.raises(ValueError, match="reparameterized"):
        AVB(Cat(), Adam({"lr": 1e-3})).loss(model, discrete_guide, x)
    pyro.clear_param_store()  # another discriminator under the same name
    with pytest.raises(ValueError, match=r"must return shape \(8,\)"):
        AVB(Cat(out=3), Adam({"lr": 1e-3}), discriminator_steps=0).loss(model, implicit_guide, x)
