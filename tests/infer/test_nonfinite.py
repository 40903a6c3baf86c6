"""A step whose loss or gradient is not finite raises at that step and changes nothing:
parameters, gradients, optimizer state (Adam moments) and the loss's own state are equal, bit
for bit, to those before the step, and training continues exactly as if it had not happened."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import SVI
from pyro.optim import Adam
from torch import nn

from pyrogen.distributions import BernoulliRBM, DeepBoltzmannMachine, EnergyBasedDistribution
from pyrogen.infer import (
    AVB,
    GAN,
    IWAE,
    AnnealedELBO,
    ContrastiveDivergence,
    Cyclical,
    FreeBitsELBO,
    LinearWarmup,
    MeanFieldPCD,
)

pytestmark = [
    pytest.mark.filterwarnings("ignore:Encountered NaN"),
    pytest.mark.filterwarnings("ignore:`torch.jit.trace` is deprecated:DeprecationWarning"),
]


def clone(obj):
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone()
    if isinstance(obj, dict):
        return {k: clone(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(clone(v) for v in obj)
    return obj


def assert_identical(a, b, path="state"):
    """Equal bit for bit: same structure, tensors ``torch.equal``, other leaves ``==``."""
    assert type(a) is type(b), path
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b), path
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            assert_identical(a[k], b[k], f"{path}[{k!r}]")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_identical(x, y, f"{path}[{i}]")
    else:
        assert a == b, path


def snapshot(*optims, extra=None):
    """Parameters with their ``.grad``, each optimizer's state, and ``extra``, cloned."""
    store = pyro.get_param_store()
    params = {
        k: (clone(v.unconstrained()), clone(v.unconstrained().grad)) for k, v in store.items()
    }
    return clone({"params": params, "optims": [o.get_state() for o in optims], "extra": extra})


def big() -> float:
    """Finite, but its square overflows: a datum whose log-density is ``-inf``."""
    return torch.finfo(torch.get_default_dtype()).max / 4


def corrupt(x: torch.Tensor, how: str) -> torch.Tensor:
    x = x.clone()
    x[1] = {"inf": float("inf"), "huge": big()}[how]
    return x


# -- SVI losses ---------------------------------------------------------------------------


def model(x):
    w = pyro.param("w", torch.tensor(0.7))
    with pyro.plate("data", len(x)):
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        pyro.sample("x", dist.Normal(w * z, 1.0), obs=x)


def guide(x):
    loc = pyro.param("loc", 0.1 * torch.arange(len(x), dtype=x.dtype))
    scale = pyro.param("scale", torch.tensor(0.8), constraint=dist.constraints.positive)
    with pyro.plate("data", len(x)):
        pyro.sample("z", dist.Normal(loc, scale))


SVI_LOSSES = {
    "iwae-dreg": lambda: IWAE(4, "dreg"),
    "iwae-iwae": lambda: IWAE(4, "iwae"),
    "iwae-stl": lambda: IWAE(4, "stl"),
    "annealed-warmup": lambda: AnnealedELBO(LinearWarmup(10)),
    "annealed-cyclical-mc": lambda: AnnealedELBO(Cyclical(4), analytic_kl=False),
    "annealed-particles": lambda: AnnealedELBO(0.5, num_particles=3, vectorize_particles=True),
    "free-bits": lambda: FreeBitsELBO(0.2, num_particles=2),
    "annealed-jit": lambda: AnnealedELBO(LinearWarmup(10), jit=True),
}
X = torch.tensor([0.3, -1.2, 2.0, 0.5])


def svi_run(name: str, bad: str | None):
    """Two good steps, optionally one corrupted step (which must raise and change nothing),
    then two good steps; returns the final parameters, the losses and the loss object."""
    pyro.clear_param_store()
    pyro.set_rng_seed(1)
    x = X.to(torch.get_default_dtype())
    loss, optim = SVI_LOSSES[name](), Adam({"lr": 0.05})
    svi = SVI(model, guide, optim, loss)
    values = [svi.step(x) for _ in range(2)]
    if bad is not None:
        before = snapshot(optim, extra=loss.state_dict())
        error = ValueError if bad == "inf" else FloatingPointError
        with pytest.raises(error, match=r"step 2.*site 'x'") as info:
            svi.step(corrupt(x, bad))
        assert_identical(before, snapshot(optim, extra=loss.state_dict()))
        assert "Nothing was updated" in str(info.value)
    pyro.set_rng_seed(2)
    values += [svi.step(x) for _ in range(2)]
    return {k: clone(v) for k, v in pyro.get_param_store().items()}, values, loss


@pytest.mark.parametrize("bad", ["inf", "huge"])
@pytest.mark.parametrize("name", list(SVI_LOSSES))
def test_svi_loss_raises_before_the_optimizer_and_training_continues_exactly(name, bad):
    params, values, loss = svi_run(name, bad)
    reference_params, reference_values, _ = svi_run(name, None)
    assert values == reference_values
    assert_identical(params, reference_params)
    assert loss.num_steps == 4


def test_a_finite_gradient_overflowing_its_sum_is_not_an_error():
    """The fused check sums each gradient; a sum that overflows is confirmed elementwise."""
    from pyrogen.infer.checks import checked_grads

    p = torch.zeros(2, requires_grad=True)
    top = torch.finfo(p.dtype).max
    (g,) = checked_grads(torch.tensor(1.0), (p * top).sum(), [p], where="test")
    assert torch.equal(g, torch.full((2,), top))
    with pytest.raises(FloatingPointError, match=r"test: non-finite gradient.*parameters"):
        checked_grads(torch.tensor(1.0), (p * top * 2).sum(), [p], where="test")


# -- contrastive divergence -----------------------------------------------------------------


def rbm_model(v):
    w = pyro.param("w", 0.5 * torch.randn(5, 3))
    b = pyro.param("b", 0.1 * torch.randn(5))
    c = pyro.param("c", 0.1 * torch.randn(3))
    with pyro.plate("data", len(v)):
        pyro.sample("v", BernoulliRBM(w, b, c), obs=v)


def ebm_model(x):
    log_scale = pyro.param("log_scale", torch.tensor(0.2))
    ebm = EnergyBasedDistribution(
        lambda y: 0.5 * (y**2).sum(-1) * torch.exp(-2 * log_scale), (2,), step_size=0.05
    )
    with pyro.plate("data", len(x)):
        pyro.sample("x", ebm, obs=x)


def empty_guide(x):
    pass


CD_CASES = {
    "rbm-cd1": (rbm_model, lambda: ContrastiveDivergence(1)),
    "rbm-pcd": (rbm_model, lambda: ContrastiveDivergence(2, persistent=True, num_chains=7)),
    "ebm-cd": (ebm_model, lambda: ContrastiveDivergence(3)),
    "ebm-pcd": (ebm_model, lambda: ContrastiveDivergence(3, persistent=True)),
    "ebm-replay": (ebm_model, lambda: ContrastiveDivergence(3, replay_buffer=12)),
}
# corruption: (expected error, message)
CORRUPTIONS = {
    "nan": (ValueError, "outside the support"),
    "inf": (ValueError, "outside the support"),
    "half": (ValueError, "outside the support"),  # not binary
    "huge": (FloatingPointError, "free energy of the data"),  # finite, but E(x) overflows
}
CD_PAIRS = [(c, b) for c in CD_CASES for b in ("nan", "inf", "half" if "rbm" in c else "huge")]


@pytest.mark.parametrize(("case", "bad"), CD_PAIRS)
def test_contrastive_divergence_validates_data_and_changes_nothing(case, bad):
    fn, make = CD_CASES[case]
    error, message = CORRUPTIONS[bad]
    pyro.set_rng_seed(0)
    if fn is rbm_model:
        data = torch.bernoulli(torch.full((10, 5), 0.4))
    else:
        data = torch.randn(10, 2)
    cd, optim = make(), Adam({"lr": 0.05})
    svi = SVI(fn, empty_guide, optim, cd)
    for _ in range(2):
        svi.step(data)
    value = {"nan": float("nan"), "inf": float("inf"), "half": 0.5, "huge": big()}[bad]
    corrupted = data.clone()
    corrupted[3, 1] = value
    before = snapshot(optim, extra=cd.state_dict())
    with pytest.raises(error, match=rf"step 2.*{message}"):
        svi.step(corrupted)
    assert_identical(before, snapshot(optim, extra=cd.state_dict()))
    # loss (no gradient) validates too and leaves the chains alone
    with pytest.raises(error, match=message):
        cd.loss(fn, empty_guide, corrupted) if error is ValueError else cd.differentiable_loss(
            fn, empty_guide, corrupted
        )
    assert_identical(before, snapshot(optim, extra=cd.state_dict()))


def dbm_model(v):
    w = [pyro.param("w0", 0.3 * torch.randn(5, 4)), pyro.param("w1", 0.3 * torch.randn(4, 3))]
    b = [pyro.param(f"b{i}", torch.zeros(n)) for i, n in enumerate((5, 4, 3))]
    with pyro.plate("data", len(v)):
        pyro.sample("v", DeepBoltzmannMachine(w, b), obs=v)


DBM_BAD = {
    "nan": (lambda x: x.index_put_((torch.tensor(3), torch.tensor(1)), torch.tensor(float("nan"))),
            "outside the support"),
    "inf": (lambda x: x.index_put_((torch.tensor(3), torch.tensor(1)), torch.tensor(float("inf"))),
            "outside the support"),
    "half": (lambda x: x.index_put_((torch.tensor(3), torch.tensor(1)), torch.tensor(0.5)),
             "outside the support"),
    "empty": (lambda x: x[:0], "plate of size 0"),
    "width": (lambda x: torch.cat([x, x[:, :1]], -1), "5 visible units"),
}  # fmt: skip


def _trained_dbm():
    pyro.set_rng_seed(0)
    data = torch.bernoulli(torch.full((10, 5), 0.4))
    loss, optim = MeanFieldPCD(num_chains=6), Adam({"lr": 0.05})
    svi = SVI(dbm_model, empty_guide, optim, loss)
    for _ in range(2):
        svi.step(data)
    return data, loss, optim, svi


@pytest.mark.parametrize("bad", list(DBM_BAD))
def test_mean_field_pcd_validates_data_and_changes_nothing(bad):
    data, loss, optim, svi = _trained_dbm()
    corrupt_fn, message = DBM_BAD[bad]
    corrupted = corrupt_fn(data.clone())
    before = snapshot(optim, extra=loss.state_dict())
    with pytest.raises(ValueError, match=message):
        svi.step(corrupted)
    assert_identical(before, snapshot(optim, extra=loss.state_dict()))
    with pytest.raises(ValueError, match=message):
        svi.evaluate_loss(corrupted)
    assert_identical(before, snapshot(optim, extra=loss.state_dict()))


def test_mean_field_pcd_non_finite_step_changes_nothing():
    """Finite biases whose energy overflows, written through ``p.data`` (as ``ClippedAdam``
    writes): the step raises before its optimizer, and the chains stay as they were."""
    data, loss, optim, svi = _trained_dbm()
    pyro.param("b1").data[:] = torch.finfo(torch.get_default_dtype()).max / 2
    before = snapshot(optim, extra=loss.state_dict())
    with pytest.raises(FloatingPointError, match="MeanFieldPCD step"):
        svi.step(data)
    assert_identical(before, snapshot(optim, extra=loss.state_dict()))
    with pytest.raises(FloatingPointError, match="chains are as before"):
        loss.differentiable_loss(dbm_model, empty_guide, data)
    assert_identical(before, snapshot(optim, extra=loss.state_dict()))


# -- GAN -------------------------------------------------------------------------------------


def poisoned_generator(poison: bool):
    """``x = z + shift``; with ``poison`` the value is unchanged but d x / d gate is NaN."""

    def generator(num):
        shift = pyro.param("shift", torch.tensor(-1.0))
        gate = pyro.param("gate", torch.tensor(1.0))
        with pyro.plate("samples", num):
            z = pyro.sample("z", dist.Normal(torch.zeros(()), 1.0))
        x = z + shift
        if poison:
            x = x + torch.sqrt(gate * 0.0)  # value 0, gradient 0 * inf = nan
        return x.unsqueeze(-1)

    return generator


class Quadratic(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Parameter(torch.tensor(0.5))

    def forward(self, x):
        return -self.a * x**2


def make_gan(poison=False, critic_steps=2):
    pyro.set_rng_seed(0)
    critic = nn.Sequential(nn.Linear(1, 8), nn.Tanh(), nn.Linear(8, 1))
    return GAN(
        poisoned_generator(poison),
        critic,
        Adam({"lr": 0.01}),
        Adam({"lr": 0.01}),
        critic_steps=critic_steps,
    )


@pytest.mark.parametrize("bad", ["inf", "huge"])
def test_gan_checks_the_critic_update_before_its_optimizer(bad):
    gan = make_gan()
    data = torch.randn(16, 1) + 1.0
    for _ in range(2):
        gan.step(data)
    if bad == "huge":
        # a quadratic critic: its logit -a x^2 of the huge datum, and the loss, overflow
        gan = GAN(poisoned_generator(False), Quadratic(), Adam({"lr": 0.01}), Adam({"lr": 0.01}))
        for _ in range(2):
            gan.step(data)
    before = snapshot(gan.discriminator_optim, gan.generator_optim, extra=gan.state_dict())
    error = ValueError if bad == "inf" else FloatingPointError
    with pytest.raises(error, match=r"GAN step 2"):
        gan.step(corrupt(data, bad))
    assert_identical(
        before, snapshot(gan.discriminator_optim, gan.generator_optim, extra=gan.state_dict())
    )


def test_gan_checks_the_generator_update_before_its_optimizer():
    gan = make_gan()
    data = torch.randn(16, 1) + 1.0
    for _ in range(2):
        gan.step(data)
    gan.generator = poisoned_generator(True)
    generator_params = lambda: {k: clone(pyro.param(k)) for k in ("shift", "gate")}  # noqa: E731
    before = clone([generator_params(), gan.generator_optim.get_state(), gan.num_steps])
    with pytest.raises(FloatingPointError, match=r"GAN step 2: generator update.*'gate'"):
        gan.step(data)
    assert_identical(before, [generator_params(), gan.generator_optim.get_state(), gan.num_steps])
    assert all(p.grad is None for p in gan.discriminator.parameters())


# -- AVB -------------------------------------------------------------------------------------


def avb_model(x):
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Normal(torch.zeros_like(x), 1.0).to_event(1))
        pyro.sample("x", dist.Normal(1.5 * z, 1.0).to_event(1), obs=x)


def avb_guide(x):
    loc = pyro.param("loc", torch.tensor(0.2))
    s = pyro.param("s", torch.tensor(0.5))
    eps = torch.randn(x.shape, dtype=x.dtype)
    with pyro.plate("data", x.shape[0]):
        pyro.sample("z", dist.Delta(loc + s * eps, event_dim=1))


class Critic(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1))
        self.poisoned = False  # when set, every logit is +inf: the critic's loss is not finite

    def forward(self, z, x):
        logits = self.net(torch.cat([z, x], -1))
        return logits + float("inf") if self.poisoned else logits


@pytest.mark.parametrize("bad", ["inf", "huge"])
def test_avb_checks_the_elbo_before_the_svi_optimizer(bad):
    pyro.set_rng_seed(0)
    x = torch.randn(12, 1)
    avb, optim = AVB(Critic(), Adam({"lr": 0.01}), discriminator_steps=0), Adam({"lr": 0.01})
    svi = SVI(avb_model, avb_guide, optim, avb)
    for _ in range(2):
        svi.step(x)
    before = snapshot(optim, avb.discriminator_optim, extra=avb.state_dict())
    error = ValueError if bad == "inf" else FloatingPointError
    with pytest.raises(error, match=r"AVB step 2: ELBO.*site 'x'"):
        svi.step(corrupt(x, bad))
    assert_identical(before, snapshot(optim, avb.discriminator_optim, extra=avb.state_dict()))


@pytest.mark.parametrize("cause", ["critic", "data"])
def test_avb_checks_each_discriminator_update_before_its_optimizer(cause):
    pyro.set_rng_seed(0)
    x = torch.randn(12, 1)
    critic = Critic()
    avb = AVB(critic, Adam({"lr": 0.01}), discriminator_steps=2)
    optim = Adam({"lr": 0.01})
    svi = SVI(avb_model, avb_guide, optim, avb)
    for _ in range(2):
        svi.step(x)
    before = snapshot(optim, avb.discriminator_optim, extra=avb.state_dict())
    if cause == "critic":
        critic.poisoned = True
        with pytest.raises(FloatingPointError, match=r"AVB step 2: discriminator update 1 of 2"):
            svi.step(x)
    else:  # an infinite observation is rejected before the critic ever sees it
        with pytest.raises(ValueError, match=r"site 'x'"):
            svi.step(corrupt(x, "inf"))
    assert_identical(before, snapshot(optim, avb.discriminator_optim, extra=avb.state_dict()))
