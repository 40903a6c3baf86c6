"""Degree-blocked sequential direction of autoregressive layers: the same fixed point as ``D``
full MADE passes, values and gradients, in every order, degree scheme, batch shape and map."""

import pytest
import torch

from pyrogen.nn import MADE
from pyrogen.nn.sequential import made_sequential, unit_degrees
from pyrogen.transforms import (
    Autoregressive,
    ConditionalAutoregressive,
    InverseAutoregressive,
    MaskedAutoregressive,
    RationalQuadraticSpline,
)


def perturbed(module, scale=0.3):
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn_like(p))
    return module


def fixed_point(layer, target, context, step):
    """The reference: ``D`` full passes of ``c <- step(target, params(c))`` from zero."""
    c, ladj = step(target, layer._params(torch.zeros_like(target), context))
    for _ in range(layer.input_dim - 1):
        c, ladj = step(target, layer._params(c, context))
    return c, ladj


def make(kind, order, degrees, context_dim):
    d = 5
    g = RationalQuadraticSpline(4) if kind == "spline" else None
    made = MADE(
        d,
        [12, 9],
        num_params=g.num_params if g else 2,
        order=order,
        degrees=degrees,
        context_dim=context_dim,
        activation=torch.nn.Tanh,
    )
    if kind == "maf":
        layer = MaskedAutoregressive(made) if not context_dim else None
    elif kind == "iaf":
        layer = InverseAutoregressive(made) if not context_dim else None
    else:
        layer = None
    if layer is None:
        cls = ConditionalAutoregressive if context_dim else Autoregressive
        layer = cls(made, g, cheap="forward" if kind == "iaf" else "inverse")
    return perturbed(layer)


CASES = [
    ("maf", "natural", "cyclic", 0),
    ("maf", [3, 0, 4, 1, 2], "random", 0),
    ("iaf", "reversed", "cyclic", 0),
    ("iaf", "random", "random", 3),
    ("spline", [1, 4, 0, 3, 2], "cyclic", 0),
    ("maf", "natural", "cyclic", 2),
]


@pytest.mark.parametrize("batch", [(), (3,), (2, 3)])
@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(map(str, c[:3])) + f"-ctx{c[3]}")
@pytest.mark.parametrize("grad", [False, True])
def test_sequential_equals_fixed_point(case, batch, grad, rtol):
    kind, order, degrees, context_dim = case
    layer = make(kind, order, degrees, context_dim)
    target = torch.randn(*batch, 5)
    context = torch.randn(*batch, context_dim) if context_dim else None
    step = layer.transform.forward if layer.cheap == "inverse" else layer.transform.inverse
    with torch.set_grad_enabled(grad):
        fast = layer._solve(target, context, step)
        slow = fixed_point(layer, target, context, step)
    tol = dict(rtol=rtol, atol=rtol)
    torch.testing.assert_close(fast[0], slow[0], **tol)
    torch.testing.assert_close(fast[1], slow[1], **tol)
    assert fast[0].requires_grad == grad
    if grad:
        params = list(layer.parameters())
        g_fast = torch.autograd.grad((fast[0].sum() + fast[1].sum()), params, allow_unused=True)
        g_slow = torch.autograd.grad((slow[0].sum() + slow[1].sum()), params, allow_unused=True)
        for a, b in zip(g_fast, g_slow, strict=True):
            assert (a is None) == (b is None)
            if a is not None:
                torch.testing.assert_close(a, b, rtol=1e3 * rtol, atol=1e3 * rtol)


def test_context_broadcasts_against_the_target(rtol):
    layer = make("maf", "natural", "cyclic", 2)
    target, context = torch.randn(5), torch.randn(4, 2)
    step = layer.transform.forward
    fast = layer._solve(target, context, step)
    slow = fixed_point(layer, target.expand(4, 5), context, step)
    assert fast[0].shape == (4, 5)
    torch.testing.assert_close(fast[0], slow[0], rtol=rtol, atol=rtol)


def test_sampling_round_trip_with_the_fast_direction(rtol):
    layer = make("maf", "random", "random", 0)
    x = torch.randn(7, 5)
    with torch.no_grad():
        y = layer(x)
        torch.testing.assert_close(layer.inv(y.clone()), x, rtol=1e3 * rtol, atol=1e3 * rtol)


def test_unit_degrees_bound_each_units_inputs():
    made = MADE(4, [6, 5], degrees="random", order=[2, 0, 3, 1], seed=1)
    degrees_in = torch.argsort(made.orders[0]) + 1
    first, second = unit_degrees(made)
    mask0 = made.hidden[0].mask[0].bool()
    for u in range(6):
        assert int(first[u]) == max(degrees_in[mask0[u]].tolist(), default=0)
    mask1 = made.hidden[1].mask[0].bool()
    for u in range(5):
        assert int(second[u]) == max(first[mask1[u]].tolist(), default=0)


def test_context_errors():
    made = MADE(3, [4], context_dim=2)
    x = torch.randn(2, 3)
    with pytest.raises(ValueError, match="context"):
        made_sequential(made, lambda t, p: (t, t), x)
    with pytest.raises(ValueError, match="context"):
        made_sequential(MADE(3, [4]), lambda t, p: (t, t), x, torch.randn(2, 2))


@pytest.mark.parametrize("block_size", [1, 2, 3, 5])
@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(map(str, c[:3])) + f"-ctx{c[3]}")
@pytest.mark.parametrize("grad", [False, True])
def test_every_block_size_gives_the_fixed_point(case, block_size, grad, rtol):
    kind, order, degrees, context_dim = case
    layer = make(kind, order, degrees, context_dim)
    target = torch.randn(4, 5)
    context = torch.randn(4, context_dim) if context_dim else None
    step = layer.transform.forward if layer.cheap == "inverse" else layer.transform.inverse
    with torch.set_grad_enabled(grad):
        fast = made_sequential(layer.conditioner, step, target, context, block_size=block_size)
        slow = fixed_point(layer, target, context, step)
    torch.testing.assert_close(fast[0], slow[0], rtol=rtol, atol=rtol)
    torch.testing.assert_close(fast[1], slow[1], rtol=rtol, atol=rtol)
    if grad:
        params = list(layer.conditioner.parameters())
        g_fast = torch.autograd.grad(fast[0].sum() + fast[1].sum(), params, allow_unused=True)
        g_slow = torch.autograd.grad(slow[0].sum() + slow[1].sum(), params, allow_unused=True)
        for a, b in zip(g_fast, g_slow, strict=True):
            if a is not None and b is not None:
                torch.testing.assert_close(a, b, rtol=1e3 * rtol, atol=1e3 * rtol)


@pytest.mark.parametrize("activation", [torch.nn.ReLU, torch.nn.ELU])
def test_activations_with_and_without_an_in_place_form(activation, rtol):
    made = perturbed(MADE(6, [11, 7], activation=activation, order="random", seed=0))
    layer = MaskedAutoregressive(made)
    target = torch.randn(3, 6)
    with torch.no_grad():
        fast = made_sequential(made, layer.transform.forward, target, block_size=2)
        slow = fixed_point(layer, target, None, layer.transform.forward)
    torch.testing.assert_close(fast[0], slow[0], rtol=rtol, atol=rtol)


def test_block_size_errors():
    with pytest.raises(ValueError, match="block_size"):
        made_sequential(MADE(3, [4]), lambda t, p: (t, t), torch.randn(2, 3), block_size=0)


def test_repeated_calls_follow_new_weights_batch_sizes_and_masks():
    """Without autograd the solve keeps buffers between calls: they must never go stale."""
    layer = make("maf", "random", "random", 0)
    step = layer.transform.forward
    with torch.no_grad():
        for n in [4, 4, 7]:
            target = torch.randn(n, 5)
            fast = layer._solve(target, None, step)
            torch.testing.assert_close(fast[0], fixed_point(layer, target, None, step)[0])
            perturbed(layer)  # in place, as an optimizer step
        for p in layer.parameters():
            p.data.mul_(0.5)  # through .data: no version bump
        target = torch.randn(4, 5)
        fast = layer._solve(target, None, step)
        torch.testing.assert_close(fast[0], fixed_point(layer, target, None, step)[0])
        other = make("maf", [4, 2, 0, 1, 3], "random", 0)
        layer.load_state_dict(other.state_dict())  # new order and masks
        fast = layer._solve(target, None, step)
        torch.testing.assert_close(fast[0], fixed_point(other, target, None, step)[0])
        assert fast[0].data_ptr() != layer._solve(target, None, step)[0].data_ptr()
