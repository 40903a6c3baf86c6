"""Image flow builders (Glow, image RealNVP) and ImageFlow: log_prob against autograd, the
split prior's factorization, dequantization and bits/dim, ActNorm initialization, errors."""

import math

import pyro.distributions as dist
import pytest
import torch

from pyrogen import flows
from pyrogen.datasets import bits_per_dim, logit_transform
from pyrogen.transforms import ActNorm, MultiScale


def perturbed(flow, scale=0.1, seed=0):
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(scale * torch.randn_like(p))
        for name, b in flow.named_buffers():
            if name.endswith("initialized"):
                b.fill_(True)
    return flow


@pytest.mark.parametrize("builder", [flows.glow, flows.realnvp_image])
def test_log_prob_is_base_density_plus_autograd_log_det(builder, float64_only):
    flow = perturbed(builder((1, 4, 4), num_steps=2, hidden_channels=8, pixel_levels=17))
    d = flow.distribution()
    torch.manual_seed(1)
    eps = torch.randn(1, 4, 4)

    def forward(e):
        return logit_transform(17)(flow.transform(e.reshape(1, 4, 4))).reshape(-1)

    v = forward(eps).reshape(1, 4, 4).detach()
    jac = torch.autograd.functional.jacobian(forward, eps.reshape(-1))
    log_det = torch.linalg.slogdet(jac)[1]
    expected = dist.Normal(0.0, 1.0).log_prob(eps).sum() - log_det
    assert torch.allclose(d.log_prob(v.clone()), expected, atol=1e-8)


def test_split_prior_factorizes_the_density(float64_only):
    """log p(x) = log N(h2; mu(h1), sigma(h1)) + log p_inner(h1) + log-dets of the steps, with
    the inner level's base density standard normal."""
    flow = perturbed(flows.glow((1, 4, 4), num_levels=2, num_steps=1, hidden_channels=8,
                                pixel_levels=None))  # fmt: skip
    level: MultiScale = flow.transform
    x = torch.randn(3, 1, 4, 4)
    h, _ = level.squeeze.forward_and_ladj(x)
    steps_ladj = 0
    for step in reversed(level.steps):
        h, ladj = step.inverse_and_ladj(h)
        steps_ladj = steps_ladj + ladj
    h1, h2 = h[:, :2], h[:, 2:]
    mean, log_scale = level._prior(h1)
    log_split = dist.Normal(mean, log_scale.exp()).log_prob(h2).sum((-3, -2, -1))
    inner = dist.TransformedDistribution(
        dist.Normal(torch.zeros(2, 2, 2), 1.0).to_event(3), [level.inner]
    )
    expected = log_split + inner.log_prob(h1) + steps_ladj
    assert torch.allclose(flow.log_prob(x), expected, atol=1e-10)


def test_bits_per_dim_and_dequantization(float64_only):
    flow = perturbed(flows.glow((1, 4, 4), num_steps=1, hidden_channels=8, pixel_levels=17))
    x = torch.randint(0, 17, (5, 1, 4, 4)).double()
    torch.manual_seed(3)
    lp = flow.log_prob(x, num_draws=4)
    torch.manual_seed(3)
    bpd = flow.bits_per_dim(x, num_draws=4)
    assert torch.allclose(bpd, -lp / (16 * math.log(2)))
    assert torch.allclose(bpd, bits_per_dim(lp, 16))
    # the estimate averages log p(x + u) over draws of u
    torch.manual_seed(3)
    d = flow.distribution()
    draws = torch.stack([d.log_prob(x + torch.rand_like(x)) for _ in range(4)])
    assert torch.allclose(lp, draws.mean(0))


def test_pixel_density_is_normalized(float64_only):
    """A 1x2x2 image with 3 levels. The inverse logit preprocessing maps onto
    (-a L / (1 - 2a), L (1 - a) / (1 - 2a)) per pixel, where p integrates to 1; the cube
    [0, L)^D, which dequantization uses, holds less, so sum_k E_u p(k + u) <= 1 and the
    dequantized bound stays conservative."""
    flow = flows.realnvp_image(
        (1, 2, 2), num_levels=1, num_steps=2, hidden_channels=8, pixel_levels=3
    )
    flow = perturbed(flow, scale=0.05)
    a, L, n = flow.alpha, 3, 200_000
    lo, hi = -a * L / (1 - 2 * a), L * (1 - a) / (1 - 2 * a)
    v = lo + (hi - lo) * torch.rand(n, 1, 2, 2)
    with torch.no_grad():
        p = flow.distribution().log_prob(v).exp() * (hi - lo) ** 4
    mean, se = p.mean(), p.std() / math.sqrt(n)
    assert abs(mean - 1) < 4 * se + 1e-3, (mean, se)
    inside = ((v >= 0) & (v < L)).flatten(1).all(1)
    assert (p * inside).mean() < 1 - 4 * se


def test_actnorm_initializes_on_the_first_data_batch():
    flow = flows.glow((1, 4, 4), num_steps=1, hidden_channels=8, pixel_levels=17)
    norms = [m for m in flow.modules() if isinstance(m, ActNorm)]
    assert norms and not any(bool(m.initialized) for m in norms)
    flow.log_prob(torch.randint(0, 17, (64, 1, 4, 4)).to(torch.get_default_dtype()))
    assert all(bool(m.initialized) for m in norms)


def test_samples_and_temperature():
    flow = flows.glow((1, 8, 8), num_steps=1, hidden_channels=8, pixel_levels=17)
    x = flow.sample((4,))
    lo, hi = -0.05 * 17 / 0.9, 17 * 0.95 / 0.9  # the range of the inverse logit map
    assert x.shape == (4, 1, 8, 8) and bool(((x > lo) & (x < hi)).all())
    torch.manual_seed(0)
    cold = flow.sample((2000,), temperature=0.5)
    torch.manual_seed(0)
    warm = flow.sample((2000,), temperature=1.0)
    assert cold.std() < warm.std()


def test_errors():
    with pytest.raises(ValueError, match="divisible by 2\\*\\*num_levels=4"):
        flows.glow((1, 6, 6), num_levels=2)
    with pytest.raises(ValueError, match="input_shape"):
        flows.realnvp_image((8, 8))
    with pytest.raises(ValueError, match="num_steps"):
        flows.glow((1, 4, 4), num_steps=0)
    flow = flows.glow((1, 4, 4), num_steps=1, hidden_channels=8, pixel_levels=17)
    with pytest.raises(ValueError, match="images must have shape"):
        flow.log_prob(torch.zeros(2, 1, 8, 8))
    with pytest.raises(ValueError, match=r"integers in 0\.\.16"):
        flow.log_prob(torch.full((2, 1, 4, 4), 17.0))
    with pytest.raises(ValueError, match="temperature"):
        flow.distribution(temperature=0.0)
    with pytest.raises(ValueError, match="pixel_levels"):
        flows.glow((1, 4, 4), pixel_levels=1)


def test_maf_draws_a_random_order_per_layer_and_saves_it():
    """The default MAF gives every MADE its own order, kept in the state_dict."""
    torch.manual_seed(0)
    f = flows.maf(6, num_layers=3, hidden_dims=[16])
    orders = [m.orders[0].tolist() for m in f.modules() if hasattr(m, "orders")]
    assert len(orders) == 3 and len({tuple(o) for o in orders}) == 3
    torch.manual_seed(1)
    g = flows.maf(6, num_layers=3, hidden_dims=[16])
    g.load_state_dict(f.state_dict())
    assert [m.orders[0].tolist() for m in g.modules() if hasattr(m, "orders")] == orders
    x = torch.randn(4, 6)
    torch.testing.assert_close(g(x), f(x))
    natural = flows.maf(6, num_layers=2, order="natural")
    assert all(
        m.orders[0].tolist() == list(range(6)) for m in natural.modules() if hasattr(m, "orders")
    )
