"""Exact error messages of the transforms' constructors and conditioner checks, and which
``log_abs_det_jacobian`` calls the round-trip cache serves (counted calls, not only values)."""

import re

import pytest
import torch

from pyrogen.nn import DenseNN
from pyrogen.transforms import (
    AffineCoupling,
    Compose,
    Coupling,
    ImageCoupling,
    Invertible1x1Conv,
    LULinear,
    Permute,
    Planar,
)


def full(message: str) -> str:
    return "^" + re.escape(message) + "$"


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (
            lambda: Compose([]),
            ValueError,
            "parts must be a non-empty list of pyrogen Bijectors, got []",
        ),
        (
            lambda: Compose([Planar(2), "x"]),
            ValueError,
            "parts must be a non-empty list of pyrogen Bijectors, got [Planar(input_dim=2), 'x']",
        ),
        (
            lambda: Compose([Planar(2), Planar(2), Planar(3)]),
            ValueError,
            "parts[1] returns event shape (2,), which does not fit parts[2] (Planar with "
            "event_shape (3,))",
        ),
        (lambda: Permute([0.0, 1.0]), ValueError, "permutation must hold ints, got [0.0, 1.0]"),
        (lambda: Permute("01"), ValueError, "permutation must be a sequence of ints, got '01'"),
        (lambda: Permute(3), ValueError, "permutation must be a sequence of ints, got 3"),
        (
            lambda: Permute([]),
            ValueError,
            "permutation must be a permutation of range(D), got []",
        ),
        (
            lambda: Permute(torch.tensor([[0, 1]])),
            ValueError,
            "permutation must be a permutation of range(D), got [[0, 1]]",
        ),
        (
            lambda: Coupling((4,), DenseNN(2, [8], 4), parity=2),
            ValueError,
            "mask must be in ('split', 'channel', 'checkerboard'), parity 0 or 1; got 'split', 2",
        ),
        (
            lambda: Coupling((4,), DenseNN(2, [8], 4), parity=True),
            ValueError,
            "mask must be in ('split', 'channel', 'checkerboard'), parity 0 or 1; got 'split', "
            "True",
        ),
        (
            lambda: Coupling((4,), DenseNN(2, [8], 4), mask="channel"),
            ValueError,
            "mask='channel' needs a matching event_shape, got (4,)",
        ),
        (
            lambda: Coupling((0,), DenseNN(2, [8], 4)),
            ValueError,
            "event_shape[0] must be an int >= 1, got 0",
        ),
        (
            lambda: Coupling((4,), DenseNN(2, [8], 4), split_dim=4),
            ValueError,
            "split_dim must be an int with 1 <= split_dim < input_dim=4, got 4 (the channel "
            "mask needs num_channels >= 2)",
        ),
        (
            lambda: Coupling((4,), DenseNN(2, [8], 4), split_dim=2.0),
            ValueError,
            "split_dim must be an int with 1 <= split_dim < input_dim=4, got 2.0 (the channel "
            "mask needs num_channels >= 2)",
        ),
        (
            lambda: AffineCoupling(1, DenseNN(1, [8], 3), input_dim=3),
            ValueError,
            "conditioner.output_dim must be 4 for input_dim=3, split_dim=1 and 2 parameters per "
            "feature; got 3",
        ),
        (
            lambda: Coupling((4,), lambda x: x),
            TypeError,
            "conditioner must be an nn.Module (e.g. pyrogen.nn.DenseNN or ConvNet), got function",
        ),
    ],
)
def test_constructor_messages(make, error, message):
    with pytest.raises(error, match=full(message)):
        make()


def test_one_element_permutation_is_valid():
    f = Permute([0])
    x = torch.randn(3, 1)
    assert torch.equal(f(x), x)


class _Returns(torch.nn.Module):
    def __init__(self, make):
        super().__init__()
        self.make = make

    def forward(self, x):
        return self.make(x)


@pytest.mark.parametrize(
    ("out", "message"),
    [
        (lambda x: [x], "conditioner must return a tensor with features on dim -1, got list"),
        (
            lambda x: torch.zeros(()),
            "conditioner must return a tensor with features on dim -1, got ()",
        ),
        (
            lambda x: torch.zeros(len(x), 3),
            "conditioner returned 3 features, expected 4 (2 parameters for each of 2)",
        ),
    ],
)
def test_conditioner_output_messages(out, message):
    f = AffineCoupling(2, _Returns(out), input_dim=4)
    with pytest.raises(ValueError, match=full(message)):
        f(torch.randn(5, 4))


def test_image_conditioner_output_must_keep_the_spatial_sizes():
    """A 1x1 output is not broadcast over the image."""
    f = ImageCoupling(2, _Returns(lambda x: torch.zeros(len(x), 4, 1, 1)))
    message = (
        "conditioner returned trailing sizes (1, 1) after its channels, expected (4, 4) (those "
        "of its input)"
    )
    with pytest.raises(ValueError, match=full(message)):
        f(torch.randn(3, 2, 4, 4))
    g = ImageCoupling(2, _Returns(lambda x: torch.zeros(4, 4)))
    with pytest.raises(
        ValueError,
        match=full("conditioner must return a tensor with channels on dim -3, got (4, 4)"),
    ):
        g(torch.randn(3, 2, 4, 4))


class Counted(Planar):
    """A planar flow that counts its computations in each direction."""

    def __init__(self, dim):
        super().__init__(dim)
        self.calls = {"forward": 0, "inverse": 0}
        with torch.no_grad():
            self.u.copy_(torch.linspace(0.5, -0.3, dim))

    def forward_and_ladj(self, x):
        self.calls["forward"] += 1
        return super().forward_and_ladj(x)

    def inverse_and_ladj(self, y):
        self.calls["inverse"] += 1
        return super().inverse_and_ladj(y)


def test_log_det_of_the_last_round_trip_is_served_from_the_cache():
    f = Counted(3)
    x = torch.randn(6, 3)
    with torch.no_grad():
        y = f(x)
        expected = f.forward_and_ladj(x)[1]
        f.calls.update(forward=0, inverse=0)
        # the forward call's pair: served
        assert torch.equal(f.log_abs_det_jacobian(x, y), expected)
        assert f.calls == {"forward": 0, "inverse": 0}
        # the inverse call's pair: served, with the forward sign
        y2 = torch.randn(6, 3)
        x2 = f.inv(y2)
        assert f.calls == {"forward": 0, "inverse": 1}
        ladj = f.log_abs_det_jacobian(x2, y2)
        assert f.calls == {"forward": 0, "inverse": 1}
        torch.testing.assert_close(ladj, f.forward_and_ladj(x2)[1])
        f.calls.update(forward=0, inverse=0)
        # a pair that is not the last round trip is computed from x
        other = x2.clone()
        f.log_abs_det_jacobian(other, y2)
        assert f.calls == {"forward": 1, "inverse": 0}
        f.log_abs_det_jacobian(x2, y2.clone())
        assert f.calls == {"forward": 2, "inverse": 0}
        # the reversed pair (y2 given as x) is not the inverse call's entry either
        f.log_abs_det_jacobian(y2, x2)
        assert f.calls == {"forward": 3, "inverse": 0}


def test_log_det_checks_x():
    f = Planar(2)
    with pytest.raises(ValueError, match=full("x must have shape (*batch, 2), got (3, 3)")):
        f.log_abs_det_jacobian(torch.randn(3, 3), torch.randn(3, 2))


@pytest.mark.parametrize("cls, shape", [(LULinear, (5,)), (Invertible1x1Conv, (5, 2, 3))])
def test_lu_initializations(cls, shape):
    """``init="rotation"`` (the default, Glow) starts at a random orthogonal ``W`` (log-det 0,
    not the identity); ``init="identity"`` at ``W = I``."""
    torch.manual_seed(0)
    f = cls(5)
    w = f.weight().detach()
    eye = torch.eye(5, dtype=w.dtype)
    torch.testing.assert_close(w @ w.T, eye)
    assert (w - eye).abs().max() > 0.1
    assert float(f.log_s.detach().sum()) == pytest.approx(0.0, abs=1e-6)
    torch.testing.assert_close(f.inverse_weight().detach() @ w, eye)
    g = cls(5, init="identity")
    assert torch.equal(g.weight().detach(), eye)
    x = torch.randn(4, *shape)
    torch.testing.assert_close(g(x), x)
    with pytest.raises(
        ValueError, match=full("init must be one of ('rotation', 'identity'), got 'x'")
    ):
        cls(5, init="x")


def test_compose_check_shape_names_the_part():
    from pyrogen.transforms import ActNorm, Squeeze

    flow = Compose([ActNorm((1, 4, 4)), Squeeze()])
    assert flow.check_shape((1, 4, 4)) == (4, 2, 2)
    message = "parts[0]: event shape (2, 4, 4) does not fit ActNorm with event_shape (1, 4, 4)"
    with pytest.raises(ValueError, match=full(message)):
        flow.check_shape((2, 4, 4))
    deep = Compose([ActNorm((1, 4, 4)), Compose([Squeeze(), ActNorm((1, 2, 2))])])
    message = (
        "parts[1]: parts[1]: event shape (4, 2, 2) does not fit ActNorm with event_shape (1, 2, 2)"
    )
    with pytest.raises(ValueError, match=full(message)):
        deep.check_shape((1, 4, 4))


def test_cache_entry_is_dropped_once_backward_has_freed_its_graph():
    """After ``backward`` through ``y = f(x)`` the entry's graph is freed: a later
    ``log_abs_det_jacobian(x, y)`` must be computed afresh (a served entry would point into the
    freed graph and its backward would raise)."""
    f = Counted(3)
    x = torch.randn(4, 3, requires_grad=True)
    y = f(x)
    y.sum().backward()
    calls = f.calls["forward"]
    ladj = f.log_abs_det_jacobian(x, y)
    assert f.calls["forward"] == calls + 1
    ladj.sum().backward()  # a fresh graph
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_qr_linear_learns_a_bias_by_default():
    from pyrogen.transforms import QRLinear

    f = QRLinear(3)
    assert isinstance(f.bias, torch.nn.Parameter) and torch.equal(f.bias.detach(), torch.zeros(3))
    assert QRLinear(3, bias=False).bias is None


def test_act_norm_initializes_from_its_first_batch():
    """Glow's data-dependent initialization: when the first call is an inverse (data to base),
    every channel of its output has mean 0 and standard deviation 1 over the batch and pixels;
    a first forward call keeps the identity."""
    from pyrogen.transforms import ActNorm

    f = ActNorm((2, 4, 4))
    assert not bool(f.initialized)
    data = 3.0 + 2.0 * torch.randn(16, 2, 4, 4)
    z = f.inv(data).detach()
    assert bool(f.initialized)
    torch.testing.assert_close(z.mean((0, 2, 3)), torch.zeros(2), atol=1e-5, rtol=0)
    torch.testing.assert_close(z.std((0, 2, 3)), torch.ones(2), atol=1e-3, rtol=0)
    g = ActNorm((2, 4, 4))
    assert torch.equal(g(data), data) and bool(g.initialized)
    assert torch.equal(g.inv(data), data)  # no initialization after a forward call
