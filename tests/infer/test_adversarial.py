"""GANs: the optimal discriminator, the gradient penalty, training, conditioning, errors."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.optim import Adam
from torch import nn

from pyrogen.infer import GAN, gradient_penalty


def shifted_generator(shift=1.0):
    def generator(num):
        with pyro.plate("samples", num):
            z = pyro.sample("z", dist.Normal(torch.zeros(()), 1.0))
        return (z + shift).unsqueeze(-1)

    return generator


def critic():
    return nn.Sequential(
        nn.Linear(1, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 1)
    )


def test_discriminator_approaches_the_optimal_ratio():
    """With the generator fixed, sigma(D*) = p_data / (p_data + p_g) (Goodfellow et al. 2014)."""
    d = critic()
    gan = GAN(shifted_generator(1.0), d, Adam({"lr": 0.0}), Adam({"lr": 3e-3}), loss="minimax")
    for _ in range(1500):
        gan.discriminator_step(torch.randn(512, 1))
    x = torch.linspace(-1.5, 2.5, 9)
    p_data, p_g = dist.Normal(0.0, 1.0).log_prob(x).exp(), dist.Normal(1.0, 1.0).log_prob(x).exp()
    optimal = p_data / (p_data + p_g)
    with torch.no_grad():
        learned = torch.sigmoid(d(x[:, None]).squeeze(-1))
    assert (learned - optimal).abs().max() < 0.06, (learned, optimal)


def test_gradient_penalty_of_a_linear_critic_is_exact():
    w = torch.tensor([[3.0, 4.0]])
    lin = nn.Linear(2, 1)
    with torch.no_grad():
        lin.weight.copy_(w)
    gp = gradient_penalty(lin, torch.randn(10, 2), torch.randn(10, 2))
    assert torch.allclose(gp, torch.tensor((5.0 - 1.0) ** 2))


@pytest.mark.parametrize("loss", ["nonsaturating", "minimax"])
def test_generator_learns_a_shift(loss):
    pyro.set_rng_seed(0)

    def generator(num):
        shift = pyro.param("shift", torch.tensor(-2.0))
        with pyro.plate("samples", num):
            z = pyro.sample("z", dist.Normal(torch.zeros(()), 1.0))
        return (z + shift).unsqueeze(-1)

    steps = 1
    betas = (0.5, 0.9)
    net = nn.Sequential(
        nn.Linear(1, 64), nn.LeakyReLU(0.2), nn.Linear(64, 64), nn.LeakyReLU(0.2), nn.Linear(64, 1)
    )
    gan = GAN(
        generator,
        net,
        Adam({"lr": 0.01, "betas": betas}),
        Adam({"lr": 2e-3, "betas": betas}),
        loss=loss,
        critic_steps=steps,
    )
    for _ in range(400):
        gan.step(torch.randn(256, 1) + 1.5)
    assert pyro.param("shift").item() == pytest.approx(1.5, abs=0.3)


def test_conditional_gan_passes_labels_to_both_networks():
    seen = {}

    def generator(num, y):
        seen["g"] = y.shape
        with pyro.plate("samples", num):
            z = pyro.sample("z", dist.Normal(torch.zeros(()), 1.0))
        return torch.stack([z, y.argmax(-1).to(z)], -1)

    class Critic(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = nn.Linear(4, 1)

        def forward(self, x, y):
            seen["d"] = y.shape
            return self.net(torch.cat([x, y], -1))

    y = torch.eye(2)[torch.randint(2, (8,))]
    gan = GAN(generator, Critic(), Adam({"lr": 1e-3}), Adam({"lr": 1e-3}))
    d_loss, g_loss = gan.step(torch.randn(8, 2), y)
    assert seen == {"g": (8, 2), "d": (8, 2)}
    assert torch.isfinite(torch.tensor([d_loss, g_loss])).all()


def test_errors():
    with pytest.raises(ValueError, match="loss"):
        GAN(shifted_generator(), critic(), Adam({}), Adam({}), loss="hinge")
    with pytest.raises(ValueError, match="critic_steps"):
        GAN(shifted_generator(), critic(), Adam({}), Adam({}), critic_steps=0)
    with pytest.raises(TypeError, match="discriminator"):
        GAN(shifted_generator(), lambda x: x, Adam({}), Adam({}))
    gan = GAN(shifted_generator(), critic(), Adam({"lr": 1e-3}), Adam({"lr": 1e-3}))
    with pytest.raises(ValueError, match="shaped like the data"):
        gan.step(torch.randn(16, 2))


def test_critic_output_and_data_dtype_are_checked_before_any_update():
    pyro.clear_param_store()
    wide = nn.Linear(1, 2)  # two values per sample
    gan = GAN(shifted_generator(), wide, Adam({"lr": 0.1}), Adam({"lr": 0.1}))
    before = [p.detach().clone() for p in wide.parameters()]
    with pytest.raises(
        ValueError, match=r"one logit .* per sample, shape \(16,\) .* got \(16, 2\)"
    ):
        gan.step(torch.randn(16, 1))
    with pytest.raises(ValueError, match="one logit"):
        gradient_penalty(wide, torch.randn(4, 1), torch.randn(4, 1))
    assert all(torch.equal(a, b) for a, b in zip(before, wide.parameters(), strict=True))
    pyro.clear_param_store()
    gan = GAN(shifted_generator(), critic(), Adam({"lr": 0.1}), Adam({"lr": 0.1}))
    other = torch.float64 if torch.get_default_dtype() == torch.float32 else torch.float32
    with pytest.raises(TypeError, match=f"data are {other}"):
        gan.step(torch.randn(16, 1, dtype=other))
    with pytest.raises(TypeError, match="fake is"):
        gradient_penalty(critic(), torch.randn(4, 1), torch.randn(4, 1, dtype=other))
    with pytest.raises(ValueError, match="N >= 1"):
        gradient_penalty(critic(), torch.randn(0, 1), torch.randn(0, 1))


def test_a_network_of_another_shape_under_the_critic_name_is_refused():
    """Pyro would silently load the first critic's values into the second one's modules."""
    pyro.clear_param_store()
    GAN(shifted_generator(), nn.Linear(1, 1), Adam({}), Adam({}))
    with pytest.raises(ValueError, match=r"already holds 'discriminator\$\$\$weight'"):
        GAN(shifted_generator(), nn.Linear(3, 1), Adam({}), Adam({}))
    pyro.clear_param_store()
    GAN(shifted_generator(), nn.Linear(3, 1), Adam({}), Adam({}))


def test_a_critic_update_does_not_move_learned_particles():
    """A generator that returns a parameter as it is (learned particles): only the generator's
    optimizer may change it, so with its learning rate 0 it stays where it is."""
    pyro.clear_param_store()

    def particles(num):
        return pyro.param("particles", torch.linspace(-1.0, 1.0, num).unsqueeze(-1))

    gan = GAN(particles, critic(), Adam({"lr": 0.0}), Adam({"lr": 0.1}), critic_steps=3)
    start = particles(8).detach().clone()
    gan.step(torch.randn(8, 1) + 2.0)
    assert torch.equal(pyro.param("particles").detach(), start)
    gan.generator_optim = Adam({"lr": 0.1})
    gan.step(torch.randn(8, 1) + 2.0)
    assert not torch.equal(pyro.param("particles").detach(), start)


def _linear_critic(weight: float, bias: float = 0.0) -> nn.Linear:
    lin = nn.Linear(1, 1)
    with torch.no_grad():
        lin.weight.fill_(weight)
        lin.bias.fill_(bias)
    return lin


def test_wasserstein_losses_have_the_documented_signs():
    """Critic D(x) = x (gradient norm 1, penalty 0) and a generator that puts every sample at
    ``shift``: the critic loss is D(fake) - D(real), the generator loss -D(fake)."""

    def generator(num):
        shift = pyro.param("shift", torch.tensor(0.5))
        return shift.expand(num, 1)

    data = torch.randn(64, 1) + 2.0
    gan = GAN(
        generator, _linear_critic(1.0), Adam({"lr": 0.0}), Adam({"lr": 0.0}), loss="wasserstein"
    )
    critic_loss = gan.discriminator_step(data)
    assert critic_loss == pytest.approx(0.5 - float(data.mean()), abs=1e-6)
    assert gan.generator_step(data) == pytest.approx(-0.5, abs=1e-6)


def test_wasserstein_critic_reaches_its_closed_form_optimum():
    """A linear critic D(x) = w x + b between N(0, 1) (generated) and N(2, 1) (data): the critic
    loss w (m_fake - m_real) + lambda (|w| - 1)^2 is smallest at w = 1 + 2 / (2 lambda) = 1.1;
    the bias cancels. The real samples score higher than the generated ones."""
    pyro.set_rng_seed(0)
    d = _linear_critic(0.5, 0.3)
    gan = GAN(
        shifted_generator(0.0), d, Adam({"lr": 0.0}), pyro.optim.SGD({"lr": 0.02}),
        loss="wasserstein", penalty_weight=10.0,
    )  # fmt: skip
    for _ in range(300):
        gan.discriminator_step(torch.randn(512, 1) + 2.0)
    assert d.weight.item() == pytest.approx(1.1, abs=0.02)
    assert d.bias.item() == pytest.approx(torch.tensor(0.3).item(), abs=1e-12)  # 0.3 as stored


def test_wasserstein_generator_moves_towards_the_data():
    """-D(fake) with D(x) = w x + b has gradient -w in the generator's shift: one SGD step of
    rate eta moves the shift by exactly eta * w, towards the higher-scored (real) side; a full
    ``step`` updates the critic first, then the generator with the updated critic."""

    def generator(num):
        shift = pyro.param("shift", torch.tensor(0.0))
        with pyro.plate("samples", num):
            z = pyro.sample("z", dist.Normal(torch.zeros(()), 1.0))
        return (z + shift).unsqueeze(-1)

    d = _linear_critic(1.1, -0.4)
    gan = GAN(
        generator, d, pyro.optim.SGD({"lr": 0.1}), pyro.optim.SGD({"lr": 0.0}),
        loss="wasserstein",
    )  # fmt: skip
    data = torch.randn(256, 1) + 2.0
    gan.generator_step(data)
    # exact up to a few roundings in the dtype of the parameters
    tol = max(1e-12, 8 * torch.finfo().eps * 0.11)
    assert pyro.param("shift").item() == pytest.approx(0.11, abs=tol)
    critic = GAN(
        generator, d, pyro.optim.SGD({"lr": 0.1}), pyro.optim.SGD({"lr": 0.01}),
        loss="wasserstein", critic_steps=3,
    )  # fmt: skip
    before = pyro.param("shift").item()
    critic.step(data)
    assert pyro.param("shift").item() == pytest.approx(before + 0.1 * d.weight.item(), abs=tol)
    assert d.weight.item() != pytest.approx(1.1)  # the critic moved before the generator did
