"""Bad input to the transforms and the flow builders."""

from __future__ import annotations

import torch
from torch import nn

from pyrogen import flows
from pyrogen.nn import MADE, ConvNet, DenseNN
from pyrogen.transforms import (
    ActNorm,
    Affine,
    AffineCoupling,
    Autoregressive,
    Compose,
    ConditionalAffineCoupling,
    Coupling,
    ImageCoupling,
    InverseAutoregressive,
    Invertible1x1Conv,
    LULinear,
    MaskedAutoregressive,
    MultiScale,
    Permute,
    PixelLogit,
    Planar,
    QRLinear,
    RationalQuadraticSpline,
    Squeeze,
)
from tests.bad_input.table import (
    COUNT,
    COUNT0,
    COUNT2,
    INF,
    NAN,
    POSITIVE,
    Case,
    hyper,
    inputs,
)

CASES: list[Case] = []
add = CASES.extend

# -- constructors x bad hyper-parameters ----------------------------------------------------
add(hyper("Planar", lambda v: Planar(v), "input_dim", COUNT))
add(hyper("Planar", lambda v: Planar(2, max_inverse_iters=v), "max_inverse_iters", COUNT))
add(hyper("Planar", lambda v: Planar(2, inverse_tol=v), "inverse_tol"))
add(hyper("Planar", lambda v: Planar(2, inverse_tol=v), "inverse_tol", [("below-eps", 1e-30, ValueError)]))  # fmt: skip
add(hyper("Affine", lambda v: Affine(v), "log_scale_bound"))
add(hyper("AffineCoupling", lambda v: AffineCoupling(1, DenseNN(1, [4], 2), log_scale_bound=v), "log_scale_bound"))  # fmt: skip
add(hyper("AffineCoupling", lambda v: AffineCoupling(v, DenseNN(1, [4], 2), input_dim=2), "split_dim", COUNT))  # fmt: skip
add(hyper("AffineCoupling", lambda v: AffineCoupling(1, DenseNN(1, [4], 2), input_dim=v), "input_dim", COUNT))  # fmt: skip
add(hyper("ImageCoupling", lambda v: ImageCoupling(2, ConvNet(2, 4, 4), log_scale_bound=v), "log_scale_bound"))  # fmt: skip
add(hyper("ImageCoupling", lambda v: ImageCoupling(v, ConvNet(2, 4, 4)), "num_channels", COUNT))
add(hyper("MAF", lambda v: MaskedAutoregressive(MADE(3, [8]), log_scale_bound=v), "log_scale_bound"))  # fmt: skip
add(hyper("IAF", lambda v: InverseAutoregressive(MADE(3, [8]), log_scale_bound=v), "log_scale_bound"))  # fmt: skip
add(hyper("MultiScale", lambda v: MultiScale(1, [], log_scale_bound=v), "log_scale_bound"))
add(hyper("MultiScale", lambda v: MultiScale(v, []), "num_channels", COUNT))
add(hyper("Spline", lambda v: RationalQuadraticSpline(v), "num_bins", COUNT2))
add(hyper("Spline", lambda v: RationalQuadraticSpline(4, v), "bound"))
_FRACTION = [*POSITIVE[:4], ("one", 1.0, ValueError), ("str", "a", TypeError)]
add(hyper("Spline", lambda v: RationalQuadraticSpline(4, min_bin_size=v), "min_bin_size", _FRACTION))  # fmt: skip
add(hyper("Spline", lambda v: RationalQuadraticSpline(4, min_derivative=v), "min_derivative", _FRACTION))  # fmt: skip
add(hyper("PixelLogit", lambda v: PixelLogit(v), "num_levels", COUNT2))
_ALPHA = [("zero", 0.0, ValueError), ("half", 0.5, ValueError), ("nan", NAN, ValueError),
          ("inf", INF, ValueError), ("str", "0.1", TypeError)]  # fmt: skip
add(hyper("PixelLogit", lambda v: PixelLogit(17, alpha=v), "alpha", _ALPHA))
add(hyper("LULinear", lambda v: LULinear(v), "input_dim", COUNT))
add(hyper("LULinear", lambda v: LULinear(3, init=v), "init", [("name", "zeros", ValueError)]))
add(hyper("Invertible1x1Conv", lambda v: Invertible1x1Conv(v), "num_channels", COUNT))
add(hyper("QRLinear", lambda v: QRLinear(v), "input_dim", COUNT))
add(hyper("QRLinear", lambda v: QRLinear(3, num_reflections=v), "num_reflections", COUNT))
add(hyper("ActNorm", lambda v: ActNorm((3,), eps=v), "eps"))
_SHAPES = [("empty", (), ValueError), ("zero", (0,), ValueError), ("negative", (-1, 2), ValueError),
           ("str", "ab", ValueError), ("float", (2.5,), ValueError)]  # fmt: skip
add(hyper("ActNorm", lambda v: ActNorm(v), "event_shape", _SHAPES))
add(hyper("Squeeze", lambda v: Squeeze(v), "factor", COUNT2))
add(hyper("Squeeze", lambda v: Squeeze(2, num_channels=v), "num_channels", COUNT))
_PERMS = [("repeat", [0, 0], ValueError), ("gap", [1, 2], ValueError), ("empty", [], ValueError),
          ("str", "ab", (TypeError, ValueError)), ("float", [0.5, 1.0], (TypeError, ValueError))]  # fmt: skip
add(hyper("Permute", lambda v: Permute(v), "permutation", _PERMS))
add(hyper("Coupling", lambda v: Coupling((3,), DenseNN(1, [4], 4), mask=v), "mask", [("name", "halves", ValueError)]))  # fmt: skip
add(hyper("Coupling", lambda v: Coupling((3,), DenseNN(1, [4], 4), parity=v), "parity", [("two", 2, ValueError), ("str", "0", ValueError)]))  # fmt: skip
add(hyper("Coupling", lambda v: Coupling((3,), DenseNN(1, [4], 4), transform=v), "transform", [("str", "affine", TypeError)]))  # fmt: skip
add(hyper("Autoregressive", lambda v: Autoregressive(MADE(3, [8]), v), "transform", [("str", "affine", TypeError)]))  # fmt: skip
add(hyper("Autoregressive", lambda v: Autoregressive(MADE(3, [8]), cheap=v), "cheap", [("name", "both", ValueError)]))  # fmt: skip
add(hyper("Autoregressive", lambda v: Autoregressive(v), "conditioner", [("dense", DenseNN(3, [8], 6), TypeError), ("none", None, TypeError)]))  # fmt: skip
add(hyper("Compose", lambda v: Compose(v), "parts", [("empty", [], ValueError), ("torch", [torch.distributions.ExpTransform()], ValueError)]))  # fmt: skip

# the conditioner is missing or not a module
for cls in (AffineCoupling, ConditionalAffineCoupling):
    add(hyper(cls.__name__, lambda v, cls=cls: cls(1, v), "conditioner", [("none", None, TypeError), ("str", "dense", TypeError)]))  # fmt: skip
add(hyper("ImageCoupling", lambda v: ImageCoupling(2, v), "conditioner", [("none", None, TypeError)]))  # fmt: skip

# builders x bad common keywords
_VECTOR = {"planar": flows.planar, "realnvp": flows.realnvp, "maf": flows.maf, "iaf": flows.iaf,
           "nsf": flows.nsf, "spline_coupling": flows.spline_coupling}  # fmt: skip
for key, builder in _VECTOR.items():
    add(hyper(key, lambda v, b=builder: b(v), "input_dim", COUNT))
    add(hyper(key, lambda v, b=builder: b(3, num_layers=v), "num_layers", COUNT))
    add(hyper(key, lambda v, b=builder: b(3, context_dim=v), "context_dim", COUNT0))
    add(hyper(key, lambda v, b=builder: b(3, activation=v), "activation", [("str", "relu", TypeError), ("instance", nn.ReLU(), TypeError)]))  # fmt: skip
    if key != "planar":
        add(hyper(key, lambda v, b=builder: b(3, mixing=v), "mixing", [("name", "shuffle", ValueError)]))  # fmt: skip
        _HIDDEN = [("zero", [0], ValueError), ("int", 8, ValueError), ("str", ["a"], ValueError)]
        add(hyper(key, lambda v, b=builder: b(3, hidden_dims=v), "hidden_dims", _HIDDEN))
for key in ("realnvp", "maf", "iaf"):
    add(hyper(key, lambda v, b=_VECTOR[key]: b(3, log_scale_bound=v), "log_scale_bound"))
for key in ("nsf", "spline_coupling"):
    add(hyper(key, lambda v, b=_VECTOR[key]: b(3, num_bins=v), "num_bins", COUNT2))
    add(hyper(key, lambda v, b=_VECTOR[key]: b(3, bound=v), "bound"))
for key, builder in (("glow", flows.glow), ("realnvp_image", flows.realnvp_image)):
    small = {"num_steps": 1, "hidden_channels": 4}
    _IMAGE = [("2d", (1, 8), ValueError), ("zero", (0, 8, 8), ValueError),
              ("str", "abc", ValueError), ("odd", (1, 6, 6), ValueError)]  # fmt: skip
    add(hyper(key, lambda v, b=builder, s=small: b(v, **s), "input_shape", _IMAGE))
    add(hyper(key, lambda v, b=builder, s=small: b((1, 8, 8), num_levels=v, **s), "num_levels", COUNT))  # fmt: skip
    add(hyper(key, lambda v, b=builder: b((1, 8, 8), num_steps=v, hidden_channels=4), "num_steps", COUNT))  # fmt: skip
    add(hyper(key, lambda v, b=builder: b((1, 8, 8), num_steps=1, hidden_channels=v), "hidden_channels", COUNT))  # fmt: skip
    add(hyper(key, lambda v, b=builder, s=small: b((1, 8, 8), pixel_levels=v, **s), "pixel_levels", COUNT2))  # fmt: skip


# -- calls x bad inputs ---------------------------------------------------------------------
def _perturbed(f):
    with torch.no_grad():
        for p in f.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return f


_LAYERS = {
    "Planar": lambda: Planar(3),
    "LULinear": lambda: LULinear(3),
    "QRLinear": lambda: QRLinear(3),
    "Permute": lambda: Permute([2, 0, 1]),
    "ActNorm": lambda: ActNorm((3,)),
    "AffineCoupling": lambda: AffineCoupling(1, DenseNN(1, [8], 4)),
    "MAF": lambda: _perturbed(MaskedAutoregressive(MADE(3, [8]))),
    "IAF": lambda: _perturbed(InverseAutoregressive(MADE(3, [8]))),
    "realnvp": lambda: flows.realnvp(3, num_layers=2),
    "nsf": lambda: flows.nsf(3, num_layers=1),
}
for key, make in _LAYERS.items():
    skip = ("dtype",) if key == "Permute" else ()  # a permutation takes any dtype
    add(inputs(key, make, lambda f, x: f(x), "x", (4, 3), skip=skip))
    add(inputs(f"{key}.inv", make, lambda f, y: f.inv(y), "y", (4, 3), skip=skip))
    add(inputs(f"{key}.ladj", make, lambda f, x: f.log_abs_det_jacobian(x, torch.zeros(4, 3)), "x", (4, 3), skip=("list", "nan", "inf", *skip)))  # fmt: skip


# the context of the sequential direction (MAF forward, IAF inverse) is checked as in the cheap
# direction: NaN, a wrong width, another dtype
def _other_dtype() -> torch.dtype:
    return torch.float32 if torch.get_default_dtype() == torch.float64 else torch.float64


_CONTEXTS = [("nan", lambda: torch.tensor([[NAN, 0.0]]), ValueError),
             ("width", lambda: torch.zeros(1, 3), ValueError),
             ("dtype", lambda: torch.zeros(1, 2, dtype=_other_dtype()), TypeError)]  # fmt: skip
for label, context, error in _CONTEXTS:
    CASES.append(Case(f"maf.condition.forward-context-{label}", lambda c=context: flows.maf(3, num_layers=1, context_dim=2, hidden_dims=(8,)).condition(c())(torch.zeros(1, 3)), error, "context"))  # fmt: skip
    CASES.append(Case(f"iaf.condition.inv-context-{label}", lambda c=context: flows.iaf(3, num_layers=1, context_dim=2, hidden_dims=(8,)).condition(c()).inv(torch.zeros(1, 3)), error, "context"))  # fmt: skip
# the inverse of a conditional flow called without .condition(context)
CASES.append(Case("maf.inv-unconditioned", lambda: flows.maf(3, num_layers=1, context_dim=2, hidden_dims=(8,)).inv(torch.zeros(1, 3)), ValueError, "context"))  # fmt: skip

_IMAGE_LAYERS = {
    "Invertible1x1Conv": lambda: Invertible1x1Conv(2),
    "ImageCoupling": lambda: ImageCoupling(2, ConvNet(2, 4, 4)),
    "ImageActNorm": lambda: ActNorm((2, 4, 4)),
    "MultiScale": lambda: MultiScale(2, [ActNorm((8, 2, 2))]),
}
for key, make in _IMAGE_LAYERS.items():
    add(inputs(key, make, lambda f, x: f(x), "x", (3, 2, 4, 4), skip=("scalar",), wrong=(3, 3, 4, 4)))  # fmt: skip
    add(inputs(f"{key}.inv", make, lambda f, y: f.inv(y), "y", (3, 2, 4, 4), skip=("scalar", "list"), wrong=(3, 3, 4, 4)))  # fmt: skip
# a permutation of entries: any dtype is fine, a wrong size is not
add(inputs("Squeeze", lambda: Squeeze(2, num_channels=2), lambda f, x: f(x), "x", (3, 2, 4, 4), skip=("scalar", "dtype"), wrong=(3, 3, 4, 4)))  # fmt: skip


# -- the image flow distribution ------------------------------------------------------------
def _glow(shape=(1, 4, 4), **kw):
    return flows.glow(shape, num_levels=1, num_steps=1, hidden_channels=4, pixel_levels=17, **kw)


_PIXELS = [
    ("negative", lambda: -torch.ones(2, 1, 4, 4), ValueError),
    ("too-large", lambda: torch.full((2, 1, 4, 4), 17.0), ValueError),
    ("fraction", lambda: torch.full((2, 1, 4, 4), 0.5), ValueError),
    ("nan", lambda: torch.full((2, 1, 4, 4), NAN), ValueError),
    ("shape", lambda: torch.zeros(2, 1, 4, 5), ValueError),
    ("list", lambda: torch.zeros(2, 1, 4, 4).tolist(), (TypeError, ValueError)),
    ("bool", lambda: torch.zeros(2, 1, 4, 4, dtype=torch.bool), TypeError),
]
for label, make, error in _PIXELS:
    CASES.append(Case(f"ImageFlow.log_prob-x-{label}", lambda m=make: _glow().log_prob(m()), error, "images"))  # fmt: skip
add(hyper("ImageFlow.log_prob", lambda v: _glow().log_prob(torch.zeros(1, 1, 4, 4), num_draws=v), "num_draws", COUNT))  # fmt: skip
add(hyper("ImageFlow.distribution", lambda v: _glow().distribution(v), "temperature"))
add(hyper("ImageFlow.sample", lambda v: _glow().sample((2,), temperature=v), "temperature"))
add(hyper("ImageFlow", lambda v: type(_glow())(_glow().transform, (1, 4, 4), alpha=v), "alpha", _ALPHA))  # fmt: skip
add(hyper("ImageFlow", lambda v: type(_glow())(_glow().transform, (1, 4, 4), pixel_levels=v), "pixel_levels", COUNT2))  # fmt: skip
add(hyper("ImageFlow", lambda v: type(_glow())(v, (1, 4, 4)), "transform", [("str", "glow", TypeError), ("none", None, TypeError)]))  # fmt: skip
