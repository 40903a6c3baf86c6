"""PixelCNN: masks give the raster-order autoregressive property; normalization; samples."""

import pytest
import torch

from pyrogen.distributions import PixelCNN
from pyrogen.nn import MaskedConv2d, PixelCNNNetwork

stats = pytest.importorskip("scipy.stats")


def perturbed(net):
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return net


@pytest.mark.parametrize("gated", [False, True])
@pytest.mark.parametrize(("channels", "categories"), [(1, 2), (2, 2), (2, 3)])
def test_autoregressive_property(gated, channels, categories):
    net = perturbed(
        PixelCNNNetwork(
            channels, categories, hidden_channels=4 * channels, num_layers=2, gated=gated
        )
    )
    x = torch.randint(categories, (channels, 4, 4)).to(torch.get_default_dtype())

    def f(u):
        return net(u).sum(-1)  # (C, H, W)

    jac = torch.autograd.functional.jacobian(f, x).reshape(channels * 16, channels * 16)
    # raster position of (c, i, j): pixel-major, channel-minor
    pos = torch.arange(16).reshape(4, 4)[None] * channels + torch.arange(channels)[:, None, None]
    pos = pos.reshape(-1)
    allowed = pos[None, :] < pos[:, None]  # output may depend on strictly earlier entries
    assert (jac[~allowed] == 0).all()
    assert (jac[allowed] != 0).float().mean() > 0.3


@pytest.mark.parametrize("mask_type", ["A", "B"])
def test_masked_conv_centre(mask_type):
    conv = MaskedConv2d(2, 4, 3, mask_type, data_channels=2)
    centre = conv.mask[:, :, 1, 1]
    expected = (
        torch.tensor([[0, 0], [0, 0], [1, 0], [1, 0]])
        if mask_type == "A"
        else torch.tensor([[1, 0], [1, 0], [1, 1], [1, 1]])
    )
    assert centre.equal(expected.float())
    assert conv.mask[:, :, 2, :].sum() == 0 and conv.mask[:, :, 1, 2].sum() == 0


@pytest.mark.parametrize("categories", [2, 3])
def test_log_prob_sums_to_one_and_samples_match(categories):
    net = perturbed(PixelCNNNetwork(1, categories, hidden_channels=8, num_layers=1))
    d = PixelCNN(net, (1, 2, 2))
    states = torch.cartesian_prod(
        *[torch.arange(categories).to(torch.get_default_dtype())] * 4
    ).reshape(-1, 1, 2, 2)
    probs = d.log_prob(states).exp().detach()
    assert torch.allclose(probs.sum(), torch.tensor(1.0))
    x = d.sample((20000,))
    codes = (x.reshape(-1, 4) * categories ** torch.arange(3, -1, -1)).sum(-1).long()
    counts = torch.bincount(codes, minlength=categories**4).to(torch.get_default_dtype())
    expected = probs * len(codes)
    keep = expected > 5
    obs = torch.cat([counts[keep], counts[~keep].sum()[None]])
    exp = torch.cat([expected[keep], expected[~keep].sum()[None]])
    if exp[-1] < 5:
        obs, exp = obs[:-1], exp[:-1] * obs[:-1].sum() / exp[:-1].sum()
    assert stats.chisquare(obs.numpy(), exp.numpy()).pvalue > 1e-3


def test_context_batch_and_errors():
    net = PixelCNNNetwork(1, 2, hidden_channels=4, num_layers=1, context_dim=3)
    d = PixelCNN(net, (1, 3, 3), torch.randn(5, 3))
    assert d.batch_shape == (5,) and d.sample().shape == (5, 1, 3, 3)
    assert d.log_prob(torch.zeros(5, 1, 3, 3)).shape == (5,)
    with pytest.raises(ValueError, match="context"):
        PixelCNN(net, (1, 3, 3))
    with pytest.raises(ValueError, match="image_shape"):
        PixelCNN(PixelCNNNetwork(1, 2, hidden_channels=4), (2, 3, 3))
    with pytest.raises(ValueError, match="odd"):
        MaskedConv2d(1, 2, 2, "A")
    with pytest.raises(ValueError, match="mask_type"):
        MaskedConv2d(1, 2, 3, "C")
    with pytest.raises(ValueError, match="support"):
        PixelCNN(PixelCNNNetwork(1, 2, hidden_channels=4), (1, 2, 2), validate_args=True).log_prob(
            torch.full((1, 2, 2), 0.5)
        )
