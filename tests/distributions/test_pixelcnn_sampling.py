"""PixelCNN sampling over causal windows: the same logits and the same samples as full passes."""

import pytest
import torch

from pyrogen.distributions import PixelCNN
from pyrogen.nn import PixelCNNNetwork
from tests.same_draws import in_float64


def perturbed(net: PixelCNNNetwork, scale: float = 0.5) -> PixelCNNNetwork:
    with torch.no_grad():
        for p in net.parameters():
            p.add_(scale * torch.randn_like(p))
    return net


def test_receptive_field_counts_every_masked_convolution():
    assert PixelCNNNetwork(num_layers=5).receptive_field == 3 + 5
    assert PixelCNNNetwork(num_layers=0, first_kernel_size=3).receptive_field == 1
    net = PixelCNNNetwork(num_layers=2, kernel_size=5, first_kernel_size=5, gated=True)
    assert net.receptive_field == 2 + 2 + 2


@pytest.mark.parametrize("gated", [False, True])
@pytest.mark.parametrize("context_dim", [0, 3])
def test_receptive_field_is_exact(gated, context_dim):
    # the logits at (i, j) never change when an input outside the window changes, and the
    # window is tight: its top row, its leftmost and its rightmost columns are all reached
    # built, perturbed and its inputs drawn in float64, then cast: every dtype checks the same
    # network (the one drawn in float32 happens not to pass pixel (i, j) on to its own logits,
    # in float32 and in float64 alike)
    with in_float64():
        torch.manual_seed(0)
        net = perturbed(
            PixelCNNNetwork(
                2,
                3,
                hidden_channels=4,
                num_layers=2,
                gated=gated,
                context_dim=context_dim,
                first_kernel_size=3,
            )
        )
        r, (h, w), (i, j) = net.receptive_field, (12, 12), (8, 6)
        x = torch.randint(0, 3, (1, 2, h, w)).double()
        ctx = torch.randn(1, 3) if context_dim else None
    dtype = torch.get_default_dtype()
    net, x = net.to(dtype), x.to(dtype)
    ctx = None if ctx is None else ctx.to(dtype)
    base = net(x, ctx)[0, :, i, j]
    reached = set()
    for a in range(h):
        for b in range(w):
            y = x.clone()
            y[..., a, b] = (y[..., a, b] + 1) % 3
            if not torch.equal(net(y, ctx)[0, :, i, j], base):
                reached.add((a, b))
    assert all(i - r <= a <= i and abs(b - j) <= r and (a, b) <= (i, j) for a, b in reached)
    assert {(i - r, j), (i, j - r), (i - r, j + r), (i, j)} <= reached
    assert min(a for a, _ in reached) == i - r


@pytest.mark.parametrize(
    ("categories", "channels", "context_dim", "layers", "kernel", "first", "shape"),
    [
        (2, 1, 0, 2, 3, 5, (1, 11, 13)),
        (2, 1, 4, 1, 3, 3, (1, 9, 9)),
        (4, 1, 0, 1, 3, 3, (1, 10, 8)),
        (3, 2, 2, 2, 3, 3, (2, 9, 10)),
        (2, 1, 0, 3, 5, 7, (1, 6, 7)),  # receptive field 9 covers the whole image
    ],
)
def test_samples_equal_full_pass_samples(
    categories, channels, context_dim, layers, kernel, first, shape
):
    torch.manual_seed(1)
    net = perturbed(
        PixelCNNNetwork(
            channels,
            categories,
            hidden_channels=2 * channels,
            num_layers=layers,
            kernel_size=kernel,
            first_kernel_size=first,
            gated=layers % 2 == 1,
            context_dim=context_dim,
        )
    )
    ctx = torch.randn(3, context_dim) if context_dim else None
    d = PixelCNN(net, shape, ctx)
    sample_shape = (2,) if context_dim else (2, 3)
    torch.manual_seed(7)
    fast = d.sample(sample_shape)
    torch.manual_seed(7)
    full = d._sample(sample_shape, None)
    assert fast.shape == (2, 3, *shape)
    assert torch.equal(fast, full)
    assert fast.unique().numel() == categories  # not a constant image
    # the logits of the samples themselves: window and full pass agree at every pixel
    logits = net(full, ctx)
    r = net.receptive_field
    for i, j in [(0, 0), (shape[1] - 1, shape[2] - 1), (shape[1] // 2, 1)]:
        top, left = max(0, i - r), max(0, j - r)
        window = net(full[..., top : i + 1, left : j + r + 1], ctx)
        torch.testing.assert_close(
            window[..., i - top, j - left, :], logits[..., i, j, :], rtol=1e-12, atol=1e-12
        )


def test_float32_samples_equal_full_pass_samples():
    torch.manual_seed(2)
    net = perturbed(PixelCNNNetwork(hidden_channels=4, num_layers=2, gated=True)).float()
    d = PixelCNN(net, (1, 12, 12))
    torch.manual_seed(3)
    fast = d.sample((4,))
    torch.manual_seed(3)
    assert torch.equal(fast, d._sample((4,), None))
    assert fast.dtype == torch.float32
