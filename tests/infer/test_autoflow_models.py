"""AutoFlow starts and trains on models with constrained latents that Pyro's autoguides accept
(a Beta mixing weight, Dirichlet rows, Gamma scales, an LKJ Cholesky factor)."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO

from pyrogen.infer import AutoFlow


def beta_mixture(data):
    w = pyro.sample("w", dist.Beta(2.0, 2.0))
    locs = pyro.sample("locs", dist.Normal(0.0, 5.0).expand([2]).to_event(1))
    mix = dist.Categorical(torch.stack([w, 1 - w]))
    with pyro.plate("data", len(data)):
        pyro.sample("obs", dist.MixtureSameFamily(mix, dist.Normal(locs, 1.0)), obs=data)


def dirichlet_rows(data):
    probs = pyro.sample("probs", dist.Dirichlet(torch.ones(3)).expand([2]).to_event(1))
    with pyro.plate("data", len(data)):
        pyro.sample("obs", dist.Categorical(probs[data % 2]), obs=data % 3)


def gamma_scale(data):
    s = pyro.sample("s", dist.Gamma(2.0, 1.0))
    with pyro.plate("data", len(data)):
        pyro.sample("obs", dist.Normal(0.0, s), obs=data.float())


def lkj(data):
    corr = pyro.sample("corr", dist.LKJCholesky(2, 2.0))
    x = torch.stack([data.float(), data.float().flip(0)], -1)
    with pyro.plate("data", len(data)):
        pyro.sample("obs", dist.MultivariateNormal(torch.zeros(2), scale_tril=corr), obs=x)


@pytest.mark.parametrize("model", [beta_mixture, dirichlet_rows, gamma_scale, lkj])
def test_autoflow_starts_and_trains(model):
    data = (
        torch.cat([torch.randn(30) - 2, torch.randn(20) + 2])
        if model is beta_mixture
        else torch.arange(20)
        if model is dirichlet_rows
        else torch.randn(20)
    )
    if model is lkj or model is gamma_scale:
        data = torch.randn(20)
    guide = AutoFlow(model, num_layers=2, hidden_dims=[8, 8])
    svi = SVI(model, guide, pyro.optim.Adam({"lr": 0.01}), Trace_ELBO())
    losses = [svi.step(data) for _ in range(5)]
    assert all(torch.isfinite(torch.tensor(losses)))
    draws = guide(data)
    for name, value in draws.items():
        site = pyro.poutine.trace(model).get_trace(data).nodes[name]
        assert bool(site["fn"].support.check(value).all()), name


def test_enumerated_discrete_site_with_trace_enum_elbo():
    """A two-component mixture with its assignments enumerated (config_enumerate) and AutoFlow
    over the continuous sites (the model's discrete site hidden, as for Pyro's AutoNormal):
    TraceEnum_ELBO's loss equals -(log sum_k p(x, k, locs) - log q(locs)) at the guide's
    draw, and training lowers it."""
    from pyro import poutine
    from pyro.infer import SVI, TraceEnum_ELBO, config_enumerate

    data = torch.tensor([-2.1, -1.9, -2.3, 1.8, 2.2, 2.0])

    @config_enumerate
    def mixture():
        locs = pyro.sample("locs", dist.Normal(torch.zeros(2), 3.0).to_event(1))
        with pyro.plate("data", len(data)):
            k = pyro.sample("k", dist.Categorical(torch.tensor([0.5, 0.5])))
            pyro.sample("x", dist.Normal(locs[k], 1.0), obs=data)

    guide = AutoFlow(poutine.block(mixture, hide=["k"]), num_layers=1)
    elbo = TraceEnum_ELBO(max_plate_nesting=1)
    guide()  # set up (its initialization draws random numbers)
    pyro.set_rng_seed(3)
    loss = elbo.differentiable_loss(mixture, guide)
    pyro.set_rng_seed(3)
    trace = poutine.trace(guide).get_trace()
    locs = trace.nodes["locs"]["value"]
    latent = trace.nodes["_AutoFlow_latent"]
    log_q = latent["fn"].log_prob(latent["value"]) - trace.nodes["locs"]["fn"].log_prob(locs)
    components = dist.Normal(locs, 1.0).log_prob(data[:, None]) + torch.tensor(0.5).log()
    log_p = dist.Normal(torch.zeros(2), 3.0).to_event(1).log_prob(locs)
    log_p = log_p + components.logsumexp(-1).sum()
    torch.testing.assert_close(loss, -(log_p - log_q))
    svi = SVI(mixture, guide, pyro.optim.Adam({"lr": 0.05}), elbo)
    losses = [svi.step() for _ in range(200)]
    assert sum(losses[-20:]) / 20 < sum(losses[:20]) / 20
