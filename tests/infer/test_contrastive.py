"""Contrastive divergence: the CD-infinity limit is the exact likelihood gradient; training
raises the exact likelihood; continuous EBMs; errors."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import SVI
from pyro.optim import Adam

from pyrogen.distributions import BernoulliRBM, EnergyBasedDistribution
from pyrogen.infer import ContrastiveDivergence
from tests.infer.test_nonfinite import ebm_model


def rbm_model(v):
    w = pyro.param("w", 0.5 * torch.randn(5, 4))
    b = pyro.param("b", 0.1 * torch.randn(5))
    c = pyro.param("c", 0.1 * torch.randn(4))
    with pyro.plate("data", len(v)):
        pyro.sample("v", BernoulliRBM(w, b, c), obs=v)


def empty_guide(v):
    pass


def params():
    return [pyro.param(n).unconstrained() for n in ("w", "b", "c")]


def test_cd_infinity_limit_is_the_exact_log_likelihood_gradient():
    v = torch.bernoulli(torch.full((30, 5), 0.3))
    rbm_model(v)  # create the parameters
    exact = torch.autograd.grad(
        -BernoulliRBM(*(pyro.param(n) for n in ("w", "b", "c"))).log_prob(v).sum(), params()
    )
    # persistent chains run long enough to be exact draws from the model
    cd = ContrastiveDivergence(200, persistent=True, num_chains=40000)
    estimate = torch.autograd.grad(cd.differentiable_loss(rbm_model, empty_guide, v), params())
    for e, g in zip(estimate, exact, strict=True):
        assert torch.allclose(e, g, atol=0.25), (e - g).abs().max()
    # and CD-1 is a different (biased) estimate: the comparison above has power
    cd1 = ContrastiveDivergence(1)
    one = torch.autograd.grad(cd1.differentiable_loss(rbm_model, empty_guide, v), params())
    assert max(float((o - g).abs().max()) for o, g in zip(one, exact, strict=True)) > 0.5


@pytest.mark.parametrize("loss", ["cd1", "cd10", "pcd"])
def test_training_raises_exact_log_likelihood(loss):
    target = BernoulliRBM(2 * torch.randn(5, 4), torch.randn(5), torch.randn(4))
    data = target.sample((500,))
    cd = {
        "cd1": ContrastiveDivergence(1),
        "cd10": ContrastiveDivergence(10),
        "pcd": ContrastiveDivergence(1, persistent=True, num_chains=100),
    }[loss]
    rbm_model(data)

    def exact_ll():
        with torch.no_grad():
            rbm = BernoulliRBM(*(pyro.param(n) for n in ("w", "b", "c")))
            return float(rbm.log_prob(data).mean())

    before = exact_ll()
    svi = SVI(rbm_model, empty_guide, Adam({"lr": 0.05}), cd)
    for _ in range(150):
        svi.step(data)
    after = exact_ll()
    assert after > before + 0.3, (before, after)
    assert after < float(target.log_prob(data).mean()) + 0.2  # cannot beat the truth by much


@pytest.mark.parametrize("replay", [0, 200])
def test_langevin_cd_learns_a_gaussian_scale(replay):
    x = 2.0 * torch.randn(2000, 1)

    def model(x):
        log_scale = pyro.param("log_scale", torch.tensor(0.0))
        ebm = EnergyBasedDistribution(
            lambda y: 0.5 * (y**2).sum(-1) * torch.exp(-2 * log_scale),
            (1,),
            step_size=0.05,
            init_scale=1.0,
        )
        with pyro.plate("data", len(x), subsample_size=200) as idx:
            pyro.sample("x", ebm, obs=x[idx])

    cd = ContrastiveDivergence(20, replay_buffer=replay) if replay else ContrastiveDivergence(20)
    svi = SVI(model, empty_guide, Adam({"lr": 0.05}), cd)
    for _ in range(200):
        svi.step(x)
    assert pyro.param("log_scale").exp().item() == pytest.approx(2.0, rel=0.15)


def test_errors():
    with pytest.raises(ValueError, match="num_gibbs_steps"):
        ContrastiveDivergence(0)
    with pytest.raises(ValueError, match="num_chains"):
        ContrastiveDivergence(1, persistent=True, num_chains=0)
    with pytest.raises(ValueError, match="replay_buffer"):
        ContrastiveDivergence(1, replay_buffer=-1)

    def no_energy(v):
        pyro.sample("v", dist.Normal(0.0, 1.0), obs=v)

    with pytest.raises(ValueError, match="no observed site"):
        ContrastiveDivergence(1).loss(no_energy, empty_guide, torch.zeros(()))

    def latent(v):
        pyro.sample("z", dist.Normal(0.0, 1.0))
        rbm_model(v)

    with pytest.raises(ValueError, match="latent"):
        ContrastiveDivergence(1).loss(latent, empty_guide, torch.zeros(3, 5))


def test_cd_trains_a_boltzmann_machine():
    from pyrogen.distributions import BoltzmannMachine

    target_w = torch.randn(5, 5)
    target_w = target_w + target_w.T - 2 * torch.diag(torch.diag(target_w))
    data = BoltzmannMachine(target_w, torch.randn(5)).sample((500,))

    def model(v):
        raw = pyro.param("raw", torch.zeros(5, 5))
        w = (raw + raw.T) * (1 - torch.eye(5))
        b = pyro.param("bias", torch.zeros(5))
        with pyro.plate("data", len(v)):
            pyro.sample("v", BoltzmannMachine(w, b), obs=v)

    def exact_ll():
        with torch.no_grad():
            raw = pyro.param("raw")
            bm = BoltzmannMachine((raw + raw.T) * (1 - torch.eye(5)), pyro.param("bias"))
            return float(bm.log_prob(data).mean())

    model(data)
    before = exact_ll()
    svi = SVI(model, empty_guide, Adam({"lr": 0.05}), ContrastiveDivergence(5))
    for _ in range(100):
        svi.step(data)
    assert exact_ll() > before + 0.3


@pytest.mark.gpu
def test_contrastive_divergence_on_cuda(device):
    def model_d(v):
        w = pyro.param("w_d", 0.1 * torch.randn(5, 3, device=v.device))
        b = pyro.param("b_d", torch.zeros(5, device=v.device))
        c = pyro.param("c_d", torch.zeros(3, device=v.device))
        with pyro.plate("data", len(v)):
            pyro.sample("v", BernoulliRBM(w, b, c), obs=v)

    v = torch.bernoulli(torch.full((20, 5), 0.5, device=device))
    for cd in (ContrastiveDivergence(2), ContrastiveDivergence(1, persistent=True, num_chains=8)):
        surrogate = cd.differentiable_loss(model_d, empty_guide, v)
        assert surrogate.device.type == device.type
        assert all(torch.isfinite(g).all() for g in torch.autograd.grad(surrogate, params_d()))


def params_d():
    return [pyro.param(n).unconstrained() for n in ("w_d", "b_d", "c_d")]


EVALUATE_CASES = {
    "rbm-pcd-fast": (rbm_model, lambda: ContrastiveDivergence(1, persistent=True, num_chains=7)),
    "rbm-pcd-traced": (
        rbm_model,
        lambda: ContrastiveDivergence(2, persistent=True, num_chains=7, fast=False),
    ),
    "ebm-replay": (ebm_model, lambda: ContrastiveDivergence(3, replay_buffer=12)),
}


@pytest.mark.parametrize("case", list(EVALUATE_CASES))
def test_evaluate_loss_between_steps_leaves_the_chains(case):
    """``svi.evaluate_loss`` between steps, its random numbers undone, gives the run without
    it bit for bit: it neither advances the persistent chains nor fills the replay buffer."""
    fn, make = EVALUATE_CASES[case]
    g = torch.Generator().manual_seed(3)
    if fn is rbm_model:
        data = torch.bernoulli(torch.full((10, 5), 0.4), generator=g)
    else:
        data = torch.randn(10, 2, generator=g)

    def run(evaluate: bool):
        pyro.clear_param_store()
        pyro.set_rng_seed(0)
        cd = make()
        svi = SVI(fn, empty_guide, Adam({"lr": 0.05}), cd)
        losses = []
        for _ in range(4):
            losses.append(svi.step(data))
            if evaluate:
                state, rng = cd.state_dict(), torch.get_rng_state()
                value = svi.evaluate_loss(data)
                assert value == value  # a number, not NaN
                for key in ("chains", "buffers"):
                    assert state[key].keys() == cd.state_dict()[key].keys()
                    for name, t in state[key].items():
                        assert torch.equal(t, cd.state_dict()[key][name])
                torch.set_rng_state(rng)
        return losses, {k: v.detach().clone() for k, v in pyro.get_param_store().items()}

    plain, with_evaluation = run(False), run(True)
    assert plain[0] == with_evaluation[0]
    for name, value in plain[1].items():
        assert torch.equal(value, with_evaluation[1][name])


def _symmetric(raw):
    return (raw + raw.transpose(-1, -2)) * (1 - torch.eye(raw.shape[-1]))


BATCHED_CASES = {
    # (parameter batch shape, model family, the plate's size against num_chains)
    "rbm-batched": ((2,), "rbm"),
    "bm-unbatched": ((), "bm"),
    "bm-batched": ((2,), "bm"),
}


@pytest.mark.parametrize("case", list(BATCHED_CASES))
def test_persistent_cd_with_batched_models_and_fewer_chains_than_rows(case):
    """Persistent CD keeps ``(num_chains, *parameter batch, *event)`` chains whatever the
    plate's size: with chains long enough to be exact draws, its gradient is each member's
    exact log-likelihood gradient, for a batched model and for chains fewer than the rows."""
    from pyrogen.distributions import BoltzmannMachine

    batch, family = BATCHED_CASES[case]
    g = torch.Generator().manual_seed(1)
    data = torch.bernoulli(torch.full((30, *batch, 4), 0.3), generator=g)
    dim = -1 - len(batch)

    def build():
        if family == "rbm":
            return BernoulliRBM(pyro.param("w"), pyro.param("b"), pyro.param("c"))
        return BoltzmannMachine(_symmetric(pyro.param("w")), pyro.param("b"))

    def model(v):
        shape = (*batch, 4, 3) if family == "rbm" else (*batch, 4, 4)
        pyro.param("w", 0.5 * torch.randn(shape, generator=g))
        pyro.param("b", 0.1 * torch.randn(*batch, 4, generator=g))
        pyro.param("c", 0.1 * torch.randn(*batch, 3, generator=g))
        with pyro.plate("data", len(v), dim=dim):
            pyro.sample("v", build(), obs=v)

    model(data)
    names = ("w", "b", "c") if family == "rbm" else ("w", "b")
    leaves = [pyro.param(n).unconstrained() for n in names]
    exact = torch.autograd.grad(-build().log_prob(data).sum(), leaves)
    cd = ContrastiveDivergence(100, persistent=True, num_chains=20000)
    estimate = torch.autograd.grad(cd.differentiable_loss(model, empty_guide, data), leaves)
    assert cd.chains["v"].shape == (20000, *batch, 4)
    for e, x in zip(estimate, exact, strict=True):
        assert torch.allclose(e, x, atol=0.3), (e - x).abs().max()
    # a later, smaller batch runs on from the same chains
    cd.differentiable_loss(model, empty_guide, data[:5])
    assert cd.chains["v"].shape == (20000, *batch, 4)
