"""ImageFlow as a Pyro distribution: log_prob against a direct computation, batch shapes and
expand, pyro.sample(obs=...) in Trace_ELBO within a plate, sample shapes, bits/dim, dtypes,
persistence (including state_dicts of the former module) and the PixelLogit bijection."""

import io
import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import Trace_ELBO
from torch.distributions import AffineTransform, ComposeTransform, SigmoidTransform

from pyrogen import analysis, datasets, flows
from pyrogen.distributions import ImageFlow
from pyrogen.transforms import ActNorm, PixelLogit

SHAPE = (1, 4, 4)


def make(pixel_levels=17, seed=0):
    torch.manual_seed(seed)
    flow = flows.glow(SHAPE, num_levels=1, num_steps=2, hidden_channels=8,
                      pixel_levels=pixel_levels)  # fmt: skip
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.1 * torch.randn_like(p))
        for m in flow.modules():
            if isinstance(m, ActNorm):
                m.initialized.fill_(True)
    return flow


def pixels(*batch, levels=17):
    return torch.randint(0, levels, (*batch, *SHAPE)).to(torch.get_default_dtype())


def direct_log_prob(flow, v):
    """log N(f^-1(v)) + log|det| written with torch's own transforms (the former ImageFlow)."""
    a, L = flow.alpha, flow.pixel_levels
    scale = L / (1 - 2 * a)
    logit = ComposeTransform([SigmoidTransform(), AffineTransform(-a * scale, scale)])
    base = dist.Normal(torch.zeros(SHAPE), 1.0).to_event(3)
    return dist.TransformedDistribution(base, [flow.transform, logit]).log_prob(v)


def test_is_a_distribution_and_the_old_name():
    flow = make()
    assert flows.ImageFlow is ImageFlow
    assert isinstance(flow, dist.TorchDistribution) and isinstance(flow, torch.nn.Module)
    assert flow.batch_shape == () and flow.event_shape == SHAPE
    assert not [name for name, _ in flow.named_buffers() if name == "_anchor"]


def test_log_prob_is_the_dequantized_direct_computation():
    flow = make()
    x = pixels(5)
    torch.manual_seed(3)
    lp = flow.log_prob(x, num_draws=3)
    torch.manual_seed(3)
    expected = torch.stack([direct_log_prob(flow, x + torch.rand_like(x)) for _ in range(3)])
    torch.testing.assert_close(lp, expected.mean(0))
    assert lp.shape == (5,)


def test_expand_and_batch_shapes():
    flow = make(pixel_levels=None)
    x = torch.randn(3, *SHAPE)
    large = flow.expand((2, 3))
    assert large.batch_shape == (2, 3) and large.transform is flow.transform
    lp = large.log_prob(x)
    assert lp.shape == (2, 3)
    torch.testing.assert_close(lp, flow.log_prob(x).expand(2, 3))
    assert large.log_prob(x[0]).shape == (2, 3)
    assert large.sample((4,)).shape == (4, 2, 3, *SHAPE)
    assert flow.expand_by((5,)).batch_shape == (5,)
    with pytest.raises(ValueError, match="cannot expand"):
        large.expand((4, 3))
    with pytest.raises(ValueError, match="batch_shape"):
        large.log_prob(torch.randn(4, *SHAPE))


def test_sample_shapes_and_temperature():
    flow = make()
    assert flow.sample().shape == SHAPE
    assert flow.sample((2, 3)).shape == (2, 3, *SHAPE)
    assert not flow.sample((2,)).requires_grad
    draw = flow.rsample((2,))
    assert draw.requires_grad and draw.shape == (2, *SHAPE)
    torch.manual_seed(0)
    cold = flow.sample((500,), temperature=0.3)
    torch.manual_seed(0)
    warm = flow.sample((500,))
    assert cold.std() < warm.std()


@pytest.mark.parametrize("plate_dim_in_value", [True, False])
def test_pyro_sample_obs_in_a_plate(plate_dim_in_value):
    flow = make(pixel_levels=None)
    x = torch.randn(3, *SHAPE) if plate_dim_in_value else torch.randn(*SHAPE)

    def model(x):
        pyro.module("flow", flow)
        with pyro.plate("data", 3):
            pyro.sample("x", flow, obs=x)

    loss = Trace_ELBO(max_plate_nesting=1).loss(model, lambda x: None, x)
    expected = -float(flow.log_prob(x).detach().sum()) * (1 if plate_dim_in_value else 3)
    assert loss == pytest.approx(expected, rel=1e-6)
    names = set(pyro.get_param_store().keys())
    assert names and all(n.startswith("flow$$$transform.") for n in names)


def test_pyro_sample_obs_integer_pixels_trains():
    flow = make()
    x = pixels(4)
    optim = pyro.optim.Adam({"lr": 1e-2})

    def model(x):
        pyro.module("flow", flow)
        with pyro.plate("data", 4):
            pyro.sample("x", flow, obs=x)

    svi = pyro.infer.SVI(model, lambda x: None, optim, Trace_ELBO())
    before = [p.detach().clone() for p in flow.parameters()]
    loss = svi.step(x)
    assert math.isfinite(loss)
    assert any(not torch.equal(b, p) for b, p in zip(before, flow.parameters(), strict=True))


def test_bits_per_dim():
    flow = make()
    x = pixels(5)
    torch.manual_seed(1)
    lp = flow.log_prob(x, num_draws=2)
    torch.manual_seed(1)
    bpd = flow.bits_per_dim(x, num_draws=2)
    torch.testing.assert_close(bpd, -lp / (16 * math.log(2)))
    torch.testing.assert_close(bpd, analysis.bits_per_dim(lp, 16))
    assert datasets.bits_per_dim(-16 * math.log(2), 16) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="num_dims"):
        analysis.bits_per_dim(1.0, 0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_follows_the_parameters(dtype):
    flow = make().to(dtype)
    x = pixels(2).to(dtype)
    assert flow.sample((2,)).dtype == dtype
    assert flow.log_prob(x).dtype == dtype
    assert flow.expand((3, 2)).log_prob(x).dtype == dtype
    assert flow.log_prob(x.long()).dtype == dtype  # integer pixels are converted


def test_state_dict_round_trip_and_the_former_device_buffer():
    flow, other = make(seed=0), make(seed=1)
    x = pixels(3)
    buffer = io.BytesIO()
    torch.save(flow.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    old_style = {**state, "_anchor": torch.zeros(())}  # saved by the former nn.Module
    other.load_state_dict(old_style)
    torch.manual_seed(0)
    a = flow.log_prob(x)
    torch.manual_seed(0)
    torch.testing.assert_close(other.log_prob(x), a)


def test_errors():
    flow = make()
    with pytest.raises(ValueError, match="images must have shape"):
        flow.log_prob(torch.zeros(2, 1, 8, 8))
    with pytest.raises(ValueError, match=r"integers in 0\.\.16"):
        flow.log_prob(torch.full((2, *SHAPE), 0.5))
    with pytest.raises(ValueError, match="alpha"):
        ImageFlow(flow.transform, SHAPE, pixel_levels=17, alpha=0.5)
    with pytest.raises(ValueError, match="num_draws"):
        flow.log_prob(pixels(1), num_draws=0)


def test_vmap_over_log_prob_of_real_images_matches_a_loop():
    flow = make(pixel_levels=None)
    x = torch.randn(4, *SHAPE)
    out = torch.func.vmap(flow.log_prob)(x)
    torch.testing.assert_close(out, torch.stack([flow.log_prob(xi) for xi in x]))


def test_vmap_over_log_prob_of_pixels_matches_a_loop_with_the_same_draws():
    flow = make()
    x = pixels(4)
    torch.manual_seed(1)
    out = torch.func.vmap(flow.log_prob, randomness="same")(x)
    loop = []
    for xi in x:
        torch.manual_seed(1)
        loop.append(flow.log_prob(xi))
    torch.testing.assert_close(out, torch.stack(loop))


def test_value_checks_follow_validate_args():
    flow = make()
    quiet = ImageFlow(flow.transform, SHAPE, pixel_levels=17, validate_args=False)
    assert quiet.log_prob(torch.full((2, *SHAPE), 0.5)).shape == (2,)
    with pytest.raises(ValueError, match="images must have shape"):  # shapes are always checked
        quiet.log_prob(torch.zeros(2, 1, 8, 8))


def test_pixel_logit_is_the_logit_preprocessing(float64_only):
    t = PixelLogit(17, alpha=0.05)
    z = 2 * torch.randn(50)
    v = t(z)
    assert bool(((v > -0.05 * 17 / 0.9) & (v < 17 * 0.95 / 0.9)).all())
    torch.testing.assert_close(t.inv(v.clone()), z)
    deriv = torch.func.vmap(torch.func.grad(lambda s: t(s)))(z)
    torch.testing.assert_close(t.log_abs_det_jacobian(z, v), deriv.log())
    # logit(alpha + (1 - 2 alpha) v / L) recovers z
    torch.testing.assert_close(torch.logit(0.05 + 0.9 * v / 17), z)
    alias = datasets.logit_transform(17)
    assert isinstance(alias, PixelLogit)
    torch.testing.assert_close(alias(z), v)
    with pytest.raises(ValueError, match="num_levels"):
        PixelLogit(1)
    with pytest.raises(ValueError, match="alpha"):
        PixelLogit(17, alpha=0.0)
