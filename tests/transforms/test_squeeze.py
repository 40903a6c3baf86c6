"""Squeeze: the index map, round trips, shapes, zero log-det, errors."""

import pyro.distributions as dist
import pytest
import torch

from pyrogen.transforms import Invertible1x1Conv, Squeeze


@pytest.mark.parametrize("factor", [2, 3])
@pytest.mark.parametrize("batch", [(), (2,), (2, 3)])
def test_index_map_round_trip_and_shapes(factor, batch):
    s = Squeeze(factor)
    c, h, w = 2, 2 * factor, 3 * factor
    x = torch.randn(*batch, c, h, w)
    y = s(x)
    assert y.shape == (*batch, c * factor**2, h // factor, w // factor)
    assert s.forward_shape(x.shape) == y.shape and s.inverse_shape(y.shape) == x.shape
    for ch, a, b, i, j in [(1, 1, 0, 1, 2), (0, factor - 1, factor - 1, 0, 0)]:
        assert y[..., ch * factor**2 + a * factor + b, i, j].equal(
            x[..., ch, i * factor + a, j * factor + b]
        )
    assert s.inv(y.clone()).equal(x)
    assert s.log_abs_det_jacobian(x, y).equal(torch.zeros(batch))


def test_log_det_against_autograd_and_inside_a_flow():
    s = Squeeze()
    x = torch.randn(1, 4, 4)
    jac = torch.autograd.functional.jacobian(lambda u: s(u).reshape(-1), x).reshape(16, 16)
    assert torch.allclose(torch.linalg.slogdet(jac).logabsdet, torch.tensor(0.0))
    assert torch.allclose(s.inv.log_abs_det_jacobian(s(x), x), torch.zeros(()))
    base = dist.Normal(torch.zeros(4, 2, 2), 1.0).to_event(3)
    conv = Invertible1x1Conv(4)
    with torch.no_grad():  # away from the (orthogonal, log-det 0) initialization
        for p in conv.parameters():
            p.add_(0.5 * torch.randn_like(p))
    flow = dist.TransformedDistribution(base, [conv, s.inv])  # (4, 2, 2) -> (1, 4, 4)
    images = torch.randn(5, 1, 4, 4)

    def to_base(image):  # the flow's inverse, (1, 4, 4) -> (4, 2, 2)
        return conv.inv(s(image))

    expected = []
    for image in images:
        z = to_base(image.clone())
        jac = torch.autograd.functional.jacobian(lambda u: to_base(u).reshape(-1), image.clone())
        logdet = torch.linalg.slogdet(jac.reshape(16, 16)).logabsdet
        expected.append(torch.distributions.Normal(0.0, 1.0).log_prob(z).sum() + logdet)
    expected = torch.stack(expected)
    # the 1x1 convolution's own log-det is H * W * log|det W| and is not zero after perturbing
    assert not torch.allclose(expected, base.log_prob(to_base(images)), atol=1e-3)
    torch.testing.assert_close(flow.log_prob(images), expected)
    # a sample's score: base score minus the forward map's log-det, from autograd as well
    z = base.sample((3,))
    x = s.inv(conv(z))
    forward = [
        torch.autograd.functional.jacobian(lambda u: s.inv(conv(u)).reshape(-1), zi.clone())
        for zi in z
    ]
    logdets = torch.stack([torch.linalg.slogdet(j.reshape(16, 16)).logabsdet for j in forward])
    torch.testing.assert_close(flow.log_prob(x.clone()), base.log_prob(z) - logdets)


def test_errors():
    with pytest.raises(ValueError, match="factor"):
        Squeeze(1)
    with pytest.raises(ValueError, match="divisible"):
        Squeeze()(torch.zeros(1, 3, 4))
    with pytest.raises(ValueError, match="divisible"):
        Squeeze().inv(torch.zeros(3, 2, 2))
    with pytest.raises(ValueError, match="shape"):
        Squeeze(num_channels=2)(torch.zeros(3, 4, 4))
