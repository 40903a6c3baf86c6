"""Bad input gives a clear ValueError/TypeError naming the argument."""

from __future__ import annotations

import pytest
import torch

from pyrogen import flows
from pyrogen.nn import MADE, DenseNN
from pyrogen.transforms import (
    ActNorm,
    AffineCoupling,
    ConditionalAffineCoupling,
    ConditionalMaskedAutoregressive,
    ImageCoupling,
    InverseAutoregressive,
    Invertible1x1Conv,
    LULinear,
    MaskedAutoregressive,
    Permute,
    Planar,
)

CONSTRUCTOR_ERRORS = {
    "planar_dim": (lambda: Planar(0), ValueError, "input_dim"),
    "planar_tol": (lambda: Planar(2, inverse_tol=0.0), ValueError, "inverse_tol"),
    "planar_iters": (lambda: Planar(2, max_inverse_iters=0), ValueError, "max_inverse_iters"),
    "coupling_split": (
        lambda: AffineCoupling(4, DenseNN(4, [8], 2), input_dim=4),
        ValueError,
        "split_dim",
    ),
    "coupling_out": (
        lambda: AffineCoupling(2, DenseNN(2, [8], 3), input_dim=4),
        ValueError,
        "output_dim",
    ),
    "coupling_bound": (
        lambda: AffineCoupling(1, DenseNN(1, [8], 2), log_scale_bound=-1.0),
        ValueError,
        "log_scale_bound",
    ),
    "coupling_no_dim": (lambda: AffineCoupling(1, torch.nn.Linear(1, 2)), ValueError, "input_dim"),
    "maf_net": (lambda: MaskedAutoregressive(DenseNN(2, [8], 4)), TypeError, "MADE"),
    "maf_params": (
        lambda: MaskedAutoregressive(MADE(3, [8], num_params=3)),
        ValueError,
        "num_params",
    ),
    "iaf_bound": (
        lambda: InverseAutoregressive(MADE(3, [8]), log_scale_bound=0.0),
        ValueError,
        "log_scale_bound",
    ),
    "cond_maf_no_context": (
        lambda: ConditionalMaskedAutoregressive(MADE(3, [8])),
        TypeError,
        "context_dim",
    ),
    "made_order": (lambda: MADE(3, [8], order=[0, 0, 1]), ValueError, "permutation"),
    "made_order_name": (lambda: MADE(3, [8], order="sideways"), ValueError, "order"),
    "made_hidden": (lambda: MADE(3, [0]), ValueError, "hidden_dims"),
    "made_hidden_int": (lambda: MADE(3, 8), ValueError, "hidden_dims"),
    "dense_out": (lambda: DenseNN(3, [8], 0), ValueError, "output_dim"),
    "permute": (lambda: Permute([0, 2]), ValueError, "permutation"),
    "lu_dim": (lambda: LULinear(0), ValueError, "input_dim"),
    "lu_init": (lambda: LULinear(3, init="zeros"), ValueError, "init"),
    "conv_channels": (lambda: Invertible1x1Conv(0), ValueError, "num_channels"),
    "actnorm_shape": (lambda: ActNorm(()), ValueError, "event_shape"),
    "actnorm_eps": (lambda: ActNorm((3,), eps=0.0), ValueError, "eps"),
    "realnvp_1d": (lambda: flows.realnvp(1), ValueError, "input_dim"),
    "maf_layers": (lambda: flows.maf(3, num_layers=0), ValueError, "num_layers"),
    "iaf_mixing": (lambda: flows.iaf(3, mixing="shuffle"), ValueError, "mixing"),
    "planar_flow_dim": (lambda: flows.planar(-1), ValueError, "input_dim"),
}


@pytest.mark.parametrize("name", list(CONSTRUCTOR_ERRORS))
def test_constructor_errors(name):
    make, error, match = CONSTRUCTOR_ERRORS[name]
    with pytest.raises(error, match=match):
        make()


TRANSFORMS = {
    "planar": lambda: Planar(3),
    "coupling": lambda: AffineCoupling(1, DenseNN(1, [8], 4)),
    "maf": lambda: MaskedAutoregressive(MADE(3, [8])),
    "iaf": lambda: InverseAutoregressive(MADE(3, [8])),
    "lu": lambda: LULinear(3),
    "actnorm": lambda: ActNorm((3,)),
    "flow": lambda: flows.maf(3, num_layers=2),
}


@pytest.mark.parametrize("name", list(TRANSFORMS))
@pytest.mark.parametrize("direction", ["forward", "inverse"])
def test_wrong_event_shape(name, direction):
    f = TRANSFORMS[name]()
    g = f if direction == "forward" else f.inv
    with pytest.raises(ValueError, match=r"shape \(\*batch, 3\)"):
        g(torch.randn(5, 4))


@pytest.mark.parametrize("name", list(TRANSFORMS))
def test_integer_input(name):
    with pytest.raises(TypeError, match="floating-point"):
        TRANSFORMS[name]()(torch.ones(2, 3, dtype=torch.long))


@pytest.mark.parametrize("name", list(TRANSFORMS))
def test_dtype_mix(name):
    f = TRANSFORMS[name]().to(torch.float64)
    with pytest.raises(TypeError, match="dtype"):
        f(torch.randn(2, 3, dtype=torch.float32))


@pytest.mark.parametrize("name", list(TRANSFORMS))
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_input(name, bad):
    x = torch.randn(2, 3)
    x[1, 2] = bad
    with pytest.raises(ValueError, match="non-finite"):
        TRANSFORMS[name]()(x)
    with pytest.raises(ValueError, match="non-finite"):
        TRANSFORMS[name]().inv(x)


@pytest.mark.gpu
def test_device_mix(device):
    f = LULinear(3).to(device)
    with pytest.raises(ValueError, match="device"):
        f(torch.randn(2, 3))


def test_conv_wrong_channels():
    with pytest.raises(ValueError, match=r"\(\*batch, 3, \*, \*\)"):
        Invertible1x1Conv(3)(torch.randn(2, 4, 5, 5))


def test_conditional_context_shape():
    f = ConditionalAffineCoupling(1, DenseNN(1, [8], 2, context_dim=3))
    with pytest.raises(ValueError, match="context"):
        f.condition(torch.randn(2, 4))(torch.randn(2, 2))


def test_planar_inverse_raises_when_not_converged():
    f = Planar(2, max_inverse_iters=1)  # one Newton step cannot reach 32 eps
    with torch.no_grad():
        f.u.copy_(torch.tensor([3.0, -2.0]))
        f.w.copy_(torch.tensor([1.0, 0.5]))
    with pytest.raises(RuntimeError, match="did not converge"):
        f.inv(torch.randn(4, 2))


def test_planar_stays_invertible_for_any_parameters():
    """u^T w > -1 holds by construction even when the raw u points against w."""
    f = Planar(2)
    with torch.no_grad():
        f.u.copy_(torch.tensor([-5.0, -5.0]))
        f.w.copy_(torch.tensor([1.0, 1.0]))
    c = float((f.w @ f.u_hat()).detach())
    assert c > -1
    x = torch.randn(50, 2)
    # u^T w is close to -1 here: the map's inverse has condition number up to 1 / (1 + c)
    # (about 3e3 in float32, where c is floored at sqrt(eps) - 1, and 1.3e4 in float64), so
    # the round trip keeps cond * eps relative accuracy
    eps = torch.finfo(x.dtype).eps
    tol = 8 * eps / (1 + c)
    torch.testing.assert_close(f.inv(f(x).clone()), x, atol=tol, rtol=tol)


def test_conditioner_with_the_wrong_number_of_channels_raises():
    """A conditioner without declared channel counts returning C instead of 2C channels was
    broadcast (a log-det of half the right value); now it is an error naming both counts."""

    class Net(torch.nn.Module):  # no in_channels / out_channels attributes to check upfront
        def forward(self, x):
            return torch.zeros_like(x)  # C channels, while the affine map needs 2C

    f = ImageCoupling(2, Net())
    with pytest.raises(ValueError, match="returned 2 channels, expected 4"):
        f(torch.randn(3, 2, 4, 4))


def test_conditioner_with_the_wrong_number_of_features_raises():
    f = AffineCoupling(1, torch.nn.Linear(1, 3), input_dim=3)
    with pytest.raises(ValueError, match="returned 3 features, expected 4"):
        f(torch.randn(5, 3))


@pytest.mark.parametrize("net, dim", [(lambda: DenseNN(2, [8], 3), 2), (lambda: MADE(3, [8]), 3)])
def test_context_given_to_a_network_without_one_raises(net, dim):
    with pytest.raises(ValueError, match="takes no context"):
        net()(torch.randn(4, dim), torch.randn(4, 2))


def test_elementwise_map_and_conditioner_must_agree():
    from pyrogen.transforms import Autoregressive, RationalQuadraticSpline

    with pytest.raises(ValueError, match="num_params must be 11"):
        Autoregressive(MADE(3, [8], num_params=2), RationalQuadraticSpline(4))
    with pytest.raises(ValueError, match="num_bins"):
        RationalQuadraticSpline(1)
    with pytest.raises(ValueError, match="bound"):
        RationalQuadraticSpline(4, float("inf"))
    with pytest.raises(ValueError, match="cheap"):
        Autoregressive(MADE(3, [8]), cheap="both")
    with pytest.raises(ValueError, match="mask_index"):
        MADE(3, [8], num_masks=2)(torch.randn(3), mask_index=2)
