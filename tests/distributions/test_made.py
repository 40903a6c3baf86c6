"""MADE distribution: autoregressive masks for every ordering, normalization, samples."""

import pytest
import torch

from pyrogen.distributions import MADE, MADENetwork
from pyrogen.distributions.base import all_binary_states

stats = pytest.importorskip("scipy.stats")


def perturbed(net):
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.5 * torch.randn_like(p))
    return net


@pytest.mark.parametrize("num_categories", [2, 3])
@pytest.mark.parametrize("mask_index", [0, 1, 2])
def test_autoregressive_property_for_every_mask_set(num_categories, mask_index):
    d = 5
    net = perturbed(MADENetwork(d, [16, 16], num_categories=num_categories, num_masks=3))
    order = net.orders[mask_index]
    position = torch.empty(d, dtype=torch.long)
    position[order] = torch.arange(d)
    x = torch.randint(num_categories, (d,)).to(torch.get_default_dtype())
    if num_categories > 2:
        # categorical inputs are one-hot encoded inside; perturb through a relaxed input
        def f(u):
            return net.forward_onehot(u, mask_index=mask_index).sum(-1)

        u = torch.nn.functional.one_hot(x.long(), num_categories).to(torch.get_default_dtype())
        jac = torch.autograd.functional.jacobian(f, u).sum(-1)  # (d_out, d_in)
    else:

        def f(u):
            return net(u, mask_index=mask_index).sum(-1)

        jac = torch.autograd.functional.jacobian(f, x)
    allowed = position[None, :] < position[:, None]  # output j may see inputs earlier in order
    assert (jac[~allowed] == 0).all()
    assert (jac[allowed] != 0).float().mean() > 0.5  # and it does use them


@pytest.mark.parametrize("num_categories", [2, 3])
@pytest.mark.parametrize("mask_index", [None, 1])
def test_log_prob_sums_to_one(num_categories, mask_index):
    d = 4
    net = perturbed(MADENetwork(d, [12], num_categories=num_categories, num_masks=3))
    dist = MADE(net, mask_index=mask_index)
    states = torch.cartesian_prod(*[torch.arange(num_categories).to(torch.get_default_dtype())] * d)
    assert torch.allclose(dist.log_prob(states).exp().sum(), torch.tensor(1.0))


@pytest.mark.parametrize("mask_index", [None, 2])
def test_samples_match_log_prob(mask_index):
    net = perturbed(MADENetwork(4, [12], num_masks=3))
    dist = MADE(net, mask_index=mask_index)
    x = dist.sample((20000,))
    codes = (x * 2 ** torch.arange(4)).sum(-1).long()
    counts = torch.bincount(codes, minlength=16).to(torch.get_default_dtype())
    expected = dist.log_prob(all_binary_states(4, x)).detach().exp().to(
        torch.get_default_dtype()
    ) * len(codes)
    assert stats.chisquare(counts.numpy(), expected.numpy()).pvalue > 1e-3


def test_context_and_errors():
    net = MADENetwork(3, [8], context_dim=2)
    ctx = torch.randn(5, 2)
    dist = MADE(net, ctx)
    assert dist.batch_shape == (5,)
    assert dist.sample().shape == (5, 3)
    with pytest.raises(ValueError, match="context"):
        MADE(net)
    with pytest.raises(ValueError, match="mask_index"):
        MADE(MADENetwork(3, [8], num_masks=2), mask_index=2)
    with pytest.raises(ValueError, match="num_categories"):
        MADENetwork(3, [8], num_categories=1)
    with pytest.raises(ValueError, match="support"):
        MADE(MADENetwork(3, [8]), validate_args=True).log_prob(torch.full((3,), 0.5))


def test_conditional_log_prob_under_vmap_and_a_nan_context():
    """A context is checked for NaN while validation is on, but not inside ``torch.func``
    transforms, where a data-dependent ``bool`` cannot be taken: ``vmap`` over rows gives the
    batched ``log_prob``, and outside it a NaN context is an error."""
    torch.manual_seed(0)
    net = MADENetwork(3, [8], context_dim=2)
    x = torch.bernoulli(torch.full((4, 3), 0.5))
    context = torch.randn(4, 2)
    batched = torch.func.vmap(lambda xi, ci: MADE(net, ci).log_prob(xi))(x, context)
    torch.testing.assert_close(batched, MADE(net, context).log_prob(x))
    with pytest.raises(ValueError, match="context contains non-finite"):
        MADE(net, torch.full((4, 2), float("nan")))


@pytest.mark.parametrize(
    "mask_index",
    [
        lambda: torch.tensor(1),
        lambda: torch.randint(1, 2, ()),
        lambda: __import__("numpy").int64(1),
    ],
    ids=["tensor", "randint", "numpy"],
)
def test_mask_index_of_any_integer_type_is_the_int(mask_index):
    """The order-agnostic training recipe ``mask_index=torch.randint(net.num_masks, ())`` (a
    0-d integer tensor) and NumPy integers select the same mask set as the ``int``."""
    net = perturbed(MADENetwork(3, [8], num_masks=2))
    d = MADE(net, mask_index=mask_index())
    assert type(d.mask_index) is int and d.mask_index == 1
    states = all_binary_states(3, net.output.weight)
    torch.testing.assert_close(d.log_prob(states), MADE(net, mask_index=1).log_prob(states))


@pytest.mark.parametrize(
    ("mask_index", "error"),
    [
        (True, TypeError),
        (0.0, TypeError),
        ("0", TypeError),
        (torch.tensor(0.0), TypeError),
        (torch.tensor([0]), TypeError),
        (torch.tensor(2), ValueError),
        (-1, ValueError),
    ],
    ids=["bool", "float", "str", "float-tensor", "1d-tensor", "large-tensor", "negative"],
)
def test_mask_index_errors(mask_index, error):
    with pytest.raises(error, match="mask_index"):
        MADE(MADENetwork(3, [8], num_masks=2), mask_index=mask_index)
