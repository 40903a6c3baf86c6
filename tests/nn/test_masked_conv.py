"""MaskedConv2d's channel groups and PixelCNNNetwork's context shapes."""

import pytest
import torch

from pyrogen.nn import MaskedConv2d, PixelCNNNetwork


def test_gated_masks_repeat_the_channel_groups():
    conv = MaskedConv2d(2, 8, 3, "B", data_channels=2, out_repeats=2)
    centre = conv.mask[:, :, 1, 1]
    # each half of the output channels is (group 0, group 0, group 1, group 1)
    expected = torch.tensor([[1, 0], [1, 0], [1, 1], [1, 1]] * 2, dtype=centre.dtype)
    assert torch.equal(centre, expected)


@pytest.mark.parametrize(
    ("out_channels", "data_channels", "out_repeats"),
    [(4, 1, 3), (4, 1, 8), (4, 2, 4), (6, 2, 2)],
    ids=["not-a-divisor", "more-than-the-channels", "copies-smaller-than-the-groups", "odd-copies"],
)
def test_out_repeats_must_split_the_channels_into_whole_groups(
    out_channels, data_channels, out_repeats
):
    with pytest.raises(ValueError, match="out_repeats"):
        MaskedConv2d(2, out_channels, 3, "A", data_channels=data_channels, out_repeats=out_repeats)


@pytest.mark.parametrize("out_repeats", [0, -1, 2.0, True])
def test_out_repeats_must_be_a_positive_int(out_repeats):
    with pytest.raises((TypeError, ValueError), match="out_repeats"):
        MaskedConv2d(1, 4, 3, "A", out_repeats=out_repeats)


def test_pixelcnn_network_context_broadcasts_to_the_images():
    net = PixelCNNNetwork(1, 2, hidden_channels=4, num_layers=1, context_dim=3)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.3 * torch.randn_like(p))
    x = torch.randint(0, 2, (2, 4, 1, 5, 5)).to(torch.get_default_dtype())
    context = torch.randn(4, 3)  # one context per image of the last batch dim
    out = net(x, context)
    assert out.shape == (2, 4, 1, 5, 5, 1)
    torch.testing.assert_close(out, net(x, context.expand(2, 4, 3)))


@pytest.mark.parametrize(
    "shape", [(3, 3), (5, 4, 3), (2, 1, 3)], ids=["wrong-size", "more-dims", "broadcast-larger"]
)
def test_pixelcnn_network_context_that_does_not_broadcast_to_x_is_a_value_error(shape):
    net = PixelCNNNetwork(1, 2, hidden_channels=4, num_layers=1, context_dim=3)
    with pytest.raises(ValueError, match=r"context must have shape \(\*batch, 3\).*\(4,\)"):
        net(torch.zeros(4, 1, 5, 5), torch.zeros(shape))
