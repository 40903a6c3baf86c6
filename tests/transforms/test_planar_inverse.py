"""The planar flow's inverse: a root find that converges in a few Newton steps for every
``c = w^T u_hat`` in ``(-1, inf)`` and every input scale, in float32 and float64."""

import math

import pytest
import torch

from pyrogen.transforms import Planar


def planar_with(c: float, dtype: torch.dtype) -> Planar:
    """A 3-d planar flow whose constrained ``w^T u_hat`` is ``c``."""
    f = Planar(3).to(dtype)
    with torch.no_grad():
        f.w.copy_(torch.tensor([0.6, -0.3, 0.9]))
        f.b.fill_(0.2)
        # m(a) = softplus(a + log(e - 1)) - 1 = c  <=>  a = log(expm1(c + 1)) - log(e - 1)
        raw = c + 1 + math.log(-math.expm1(-(c + 1))) - math.log(math.e - 1)
        f.u.copy_(raw * f.w / (f.w @ f.w))
    return f


def inputs(dtype: torch.dtype) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    parts = [
        3 * torch.randn(2000, 3, generator=g),
        0.01 * torch.randn(500, 3, generator=g),
        30 * torch.randn(500, 3, generator=g),
        torch.zeros(2, 3),
    ]
    return torch.cat(parts).to(dtype)


@pytest.mark.parametrize("c", [-0.999, -0.99, -0.5, 0.5, 5.0, 50.0, 1e3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_inverse_converges_in_a_few_newton_steps(c, dtype):
    """Within 20 iterations at the default tolerance (32 eps relative), where bisection alone
    would need about 50 (float64) or 25 (float32); the result solves the forward map."""
    f = planar_with(c, dtype)
    assert float(f._constrained()[1].detach()) == pytest.approx(c, rel=1e-5)
    f.max_inverse_iters = 20
    y = inputs(dtype)
    with torch.no_grad():
        x = f.inv(y)
        back = f(x)
    eps = torch.finfo(dtype).eps
    # the root's residual, mapped back to y: at most the tolerance times the scale of t, c
    scale = 1 + y.abs().max() + abs(c)
    assert float((back - y).abs().max()) <= 64 * eps * scale * (1 + abs(c))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_inverse_stops_as_soon_as_every_element_converged(dtype):
    """The identity (``c = 0``) needs no iteration, and one element that converged does not
    move while the others are still iterating: a second call returns the same bits."""
    f = planar_with(0.0, dtype)
    f.max_inverse_iters = 1
    y = inputs(dtype)
    with torch.no_grad():
        torch.testing.assert_close(f.inv(y), y)
    f = planar_with(5.0, dtype)
    with torch.no_grad():
        c = f._constrained()[1]
        t = y @ f.w + f.b
        # elementwise root find: a converged element's root does not depend on how long the
        # rest of its batch takes
        roots = f._solve(t, c)
        assert torch.equal(f._solve(t[:10], c), roots[:10])
        assert torch.equal(f._solve(t[-2:], c), roots[-2:])  # t = b: one Newton step or none


def test_messages():
    f = planar_with(5.0, torch.float32)
    f.inverse_tol = 1e-10
    message = (
        r"^inverse_tol=1e-10 is below the resolution of torch.float32 \(eps = 1.19e-07\): the "
        r"root find cannot reach it; use inverse_tol >= 1.19e-07 or None$"
    )
    with pytest.raises(ValueError, match=message):
        f.inv(inputs(torch.float32))
    f = planar_with(5.0, torch.float64)
    f.max_inverse_iters = 2
    with pytest.raises(RuntimeError, match=r"^Planar inverse did not converge in 2 iterations"):
        f.inv(inputs(torch.float64))
    Planar(2, inverse_tol=torch.finfo(torch.float64).eps)  # the smallest tolerance accepted
    with pytest.raises(ValueError, match=r"^inverse_tol must be"):
        Planar(2, inverse_tol=torch.finfo(torch.float64).eps / 2)
    with pytest.raises(ValueError, match=r"^input_dim must be an int >= 1, got 0$"):
        Planar(0)
    with pytest.raises(ValueError, match=r"^max_inverse_iters must be an int >= 1, got 0$"):
        Planar(2, max_inverse_iters=0)
    assert Planar(2).max_inverse_iters == 100
