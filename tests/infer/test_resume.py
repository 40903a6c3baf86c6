"""An interrupted-then-resumed run reproduces the uninterrupted one bit for bit.

Each case runs 20 steps; the resumed run stops after 10, writes everything (the param store's
tensors, the optimizer state, the loss's ``state_dict``, the torch RNG state) with
``torch.save``, clears everything, rebuilds from scratch, reads the file back with
``torch.load(weights_only=True)`` and runs 10 more. All 20 losses and every parameter must be
equal to the uninterrupted run's."""

import pyro
import pyro.distributions as dist
import pytest
import torch
import torch.nn.functional as F
from pyro.distributions import constraints
from pyro.infer import SVI
from pyro.optim import Adam, ClippedAdam
from torch import nn

from pyrogen.distributions import BernoulliRBM, EnergyBasedDistribution
from pyrogen.infer import (
    AVB,
    GAN,
    IWAE,
    AnnealedELBO,
    ContrastiveDivergence,
    Cyclical,
    FreeBitsELBO,
    LinearWarmup,
)

STEPS, STOP = 20, 10


def data(*shape, binary=False):
    g = torch.Generator().manual_seed(123)  # fixed data, the global RNG untouched
    x = torch.rand(shape, generator=g, dtype=torch.get_default_dtype())
    return torch.bernoulli(x, generator=g) if binary else 4 * x - 2


# -- the cases: each builds its objects from scratch and returns (step, optim, stateful) -----


def vae_case(make_loss):
    def model(x):
        w = pyro.param("w", torch.tensor(0.7))
        with pyro.plate("data", len(x), subsample_size=4):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            pyro.sample("x", dist.Normal(w * z, 1.0), obs=x[:4])

    def guide(x):
        loc = pyro.param("loc", torch.zeros(4))
        scale = F.softplus(pyro.param("raw_scale", torch.tensor(0.3)))
        with pyro.plate("data", len(x), subsample_size=4):
            pyro.sample("z", dist.Normal(loc, scale))

    def build():
        x = data(6)
        loss, optim = make_loss(), ClippedAdam({"lr": 0.05, "lrd": 0.99})
        svi = SVI(model, guide, optim, loss)
        # evaluate_loss between steps, as users do: it must not advance any schedule
        return (lambda: (svi.step(x), svi.evaluate_loss(x))), optim, loss

    return build


def rbm_case(make_loss):
    def model(v):
        w = pyro.param("w", 0.3 * torch.randn(5, 3))
        b, c = pyro.param("b", torch.zeros(5)), pyro.param("c", torch.zeros(3))
        with pyro.plate("data", len(v), subsample_size=6) as idx:
            pyro.sample("v", BernoulliRBM(w, b, c), obs=v[idx])

    def build():
        v = data(12, 5, binary=True)
        loss, optim = make_loss(), Adam({"lr": 0.05})
        svi = SVI(model, lambda v: None, optim, loss)
        return (lambda: svi.step(v)), optim, loss

    return build


def ebm_case(make_loss):
    def model(x):
        log_scale = pyro.param("log_scale", torch.tensor(0.2))
        ebm = EnergyBasedDistribution(
            lambda y: 0.5 * (y**2).sum(-1) * torch.exp(-2 * log_scale), (2,), step_size=0.05
        )
        with pyro.plate("data", len(x), subsample_size=5) as idx:
            pyro.sample("x", ebm, obs=x[idx])

    def build():
        x = data(12, 2)
        loss, optim = make_loss(), Adam({"lr": 0.05})
        svi = SVI(model, lambda x: None, optim, loss)
        return (lambda: svi.step(x)), optim, loss

    return build


def gan_case():
    def generator(num):
        shift = pyro.param("shift", torch.tensor(-1.0))
        with pyro.plate("samples", num):
            z = pyro.sample("z", dist.Normal(torch.zeros(()), 1.0))
        return (z + shift).unsqueeze(-1)

    def build():
        x = data(16, 1) + 1.0
        critic = nn.Sequential(nn.Linear(1, 8), nn.Tanh(), nn.Linear(8, 1))
        gan = GAN(generator, critic, Adam({"lr": 0.02}), Adam({"lr": 0.01}), critic_steps=2)
        return (lambda: gan.step(x)), None, gan

    return build


def avb_case(adaptive_contrast):
    def model(x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(torch.zeros_like(x), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(1.5 * z, 1.0).to_event(1), obs=x)

    def guide(x):
        a, s = pyro.param("a", torch.tensor(0.8)), pyro.param("s", torch.tensor(0.5))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Delta(a * x + s * torch.randn_like(x), event_dim=1))

    class Critic(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1))

        def forward(self, z, x):
            return self.net(torch.cat([z, x], -1))

    def build():
        x = data(8, 1)
        avb = AVB(
            Critic(),
            Adam({"lr": 0.01}),
            adaptive_contrast=adaptive_contrast,
            num_moment_samples=4,
        )
        optim = Adam({"lr": 0.01})
        svi = SVI(model, guide, optim, avb)
        return (lambda: svi.step(x)), optim, avb

    return build


CASES = {
    "annealed-linear-warmup": vae_case(lambda: AnnealedELBO(LinearWarmup(15))),
    "annealed-cyclical": vae_case(lambda: AnnealedELBO(Cyclical(6, ratio=0.5))),
    "free-bits": vae_case(lambda: FreeBitsELBO(0.3)),
    "iwae-dreg": vae_case(lambda: IWAE(3, "dreg")),
    "rbm-pcd": rbm_case(lambda: ContrastiveDivergence(2, persistent=True, num_chains=9)),
    "rbm-cd1": rbm_case(lambda: ContrastiveDivergence(1)),
    "ebm-pcd": ebm_case(lambda: ContrastiveDivergence(3, persistent=True)),
    "ebm-replay": ebm_case(lambda: ContrastiveDivergence(3, replay_buffer=8)),
    "gan": gan_case(),
    "avb": avb_case(False),
    "avb-adaptive": avb_case(True),
}


def restore_param_store(params: dict) -> None:
    # ParamStore.get_state() also holds constraint objects, which weights_only=True refuses;
    # every parameter here is unconstrained, so its tensors alone restore the store
    pyro.get_param_store().set_state(
        {"params": params, "constraints": {k: constraints.real for k in params}}
    )


def run(build, steps, *, resume_at=None, path=None):
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    step, optim, stateful = build()
    losses = []
    for i in range(steps):
        if i == resume_at:
            torch.save(
                {
                    "params": pyro.get_param_store().get_state()["params"],
                    "optim": None if optim is None else optim.get_state(),
                    "loss": stateful.state_dict(),
                    "rng": torch.get_rng_state(),
                },
                path,
            )
            del step, optim, stateful
            pyro.clear_param_store()
            pyro.set_rng_seed(999)  # the restored RNG state must take over
            step, optim, stateful = build()
            state = torch.load(path, weights_only=True)
            restore_param_store(state["params"])
            if optim is not None:
                optim.set_state(state["optim"])
            stateful.load_state_dict(state["loss"])
            torch.set_rng_state(state["rng"])
        losses.append(step())
    params = {k: v.detach().clone() for k, v in pyro.get_param_store().items()}
    return losses, params, stateful


@pytest.mark.parametrize("case", list(CASES))
def test_resumed_run_reproduces_the_uninterrupted_run(case, tmp_path):
    build = CASES[case]
    losses, params, full = run(build, STEPS)
    resumed_losses, resumed_params, resumed = run(
        build, STEPS, resume_at=STOP, path=tmp_path / "checkpoint.pt"
    )
    assert resumed_losses == losses
    assert params.keys() == resumed_params.keys()
    for k in params:
        assert torch.equal(params[k], resumed_params[k]), k
    assert resumed.num_steps == full.num_steps == STEPS
    if isinstance(full, ContrastiveDivergence):
        for k in full.chains:
            assert torch.equal(full.chains[k], resumed.chains[k])
        for k in full.buffers:
            assert torch.equal(full.buffers[k], resumed.buffers[k])


def test_annealed_elbo_resumes_its_schedule():
    loss = AnnealedELBO(LinearWarmup(20))
    loss.num_steps = 10
    other = AnnealedELBO(LinearWarmup(20))
    other.load_state_dict(loss.state_dict())
    assert other.step == 10 and other.beta == 0.5


@pytest.mark.parametrize(
    ("state", "error", "match"),
    [
        ([1], TypeError, "expects a dict"),
        ({}, ValueError, "missing keys"),
        ({"num_steps": 1, "extra": 0}, ValueError, "unexpected keys"),
        ({"num_steps": 1.5}, TypeError, "'num_steps'"),
        ({"num_steps": -1}, ValueError, "num_steps"),
    ],
)
def test_load_state_dict_rejects_bad_states(state, error, match):
    with pytest.raises(error, match=match):
        AnnealedELBO(1.0).load_state_dict(state)


def test_contrastive_divergence_state_rejects_non_tensor_chains():
    state = {"num_steps": 0, "chains": {"v": [0, 1]}, "buffers": {}}
    with pytest.raises(TypeError, match="chains"):
        ContrastiveDivergence(1, persistent=True).load_state_dict(state)


@pytest.mark.parametrize(
    ("state", "error", "match"),
    [
        ([1], TypeError, "expects a dict"),
        ({}, ValueError, "missing keys"),
        ({"num_steps": 3, "chains": {}, "buffers": {}}, ValueError, "unexpected keys"),
        ({"chains": {"v": [0, 1]}}, TypeError, "'v'"),
        ({"chains": {"v": torch.zeros(5, 4)}}, TypeError, "'v'"),
        ({"chains": {1: [torch.zeros(2, 4), torch.zeros(2, 3)]}}, TypeError, "site names"),
    ],
)
def test_mean_field_pcd_state_rejects_bad_states(state, error, match):
    """A wrong state (e.g. a ContrastiveDivergence one) is refused, never split into rows."""
    from pyrogen.infer import MeanFieldPCD

    loss = MeanFieldPCD()
    with pytest.raises(error, match=match):
        loss.load_state_dict(state)
    assert loss.chains == {}
