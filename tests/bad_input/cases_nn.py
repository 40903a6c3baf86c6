"""Bad input to the conditioner networks of ``pyrogen.nn``."""

from __future__ import annotations

import torch

from pyrogen.nn import (
    MADE,
    BoundContext,
    ConvNet,
    DenseNN,
    MaskedConv2d,
    PixelCNNNetwork,
    made_degrees,
)
from tests.bad_input.table import COUNT, COUNT0, COUNT2, Case, hyper, inputs, other_dtype

CASES: list[Case] = []
add = CASES.extend

_HIDDEN = [("zero", [0], ValueError), ("negative", [-4], ValueError), ("int", 8, (TypeError, ValueError)),
           ("str", ["a"], (TypeError, ValueError)), ("float", [2.5], (TypeError, ValueError))]  # fmt: skip
_ACTIVATION = [("str", "relu", TypeError), ("instance", torch.nn.ReLU(), TypeError)]

# -- constructors ---------------------------------------------------------------------------
add(hyper("DenseNN", lambda v: DenseNN(v, [4], 2), "input_dim", COUNT))
add(hyper("DenseNN", lambda v: DenseNN(3, v, 2), "hidden_dims", _HIDDEN))
add(hyper("DenseNN", lambda v: DenseNN(3, [4], v), "output_dim", COUNT))
add(hyper("DenseNN", lambda v: DenseNN(3, [4], 2, context_dim=v), "context_dim", COUNT0))
add(hyper("DenseNN", lambda v: DenseNN(3, [4], 2, activation=v), "activation", _ACTIVATION))
add(hyper("MADE", lambda v: MADE(v, [8]), "input_dim", COUNT))
add(hyper("MADE", lambda v: MADE(3, v), "hidden_dims", [*_HIDDEN, ("empty", [], ValueError)]))
add(hyper("MADE", lambda v: MADE(3, [8], num_params=v), "num_params", COUNT))
add(hyper("MADE", lambda v: MADE(3, [8], num_masks=v), "num_masks", COUNT))
add(hyper("MADE", lambda v: MADE(3, [8], context_dim=v), "context_dim", COUNT0))
add(hyper("MADE", lambda v: MADE(3, [8], activation=v), "activation", _ACTIVATION))
add(hyper("MADE", lambda v: MADE(3, [8], degrees=v), "degrees", [("name", "ordered", ValueError)]))
add(hyper("MADE", lambda v: MADE(3, [8], input_categories=v), "input_categories", [("two", 2, ValueError), *COUNT]))  # fmt: skip
_ORDERS = [("name", "sideways", ValueError), ("repeat", [0, 0, 1], ValueError),
           ("short", [0, 1], ValueError), ("float", [0.5, 1, 2], ValueError)]  # fmt: skip
add(hyper("MADE", lambda v: MADE(3, [8], order=v), "order", _ORDERS))
add(hyper("made_degrees", lambda v: made_degrees(3, v), "order", _ORDERS))
add(hyper("made_degrees", lambda v: made_degrees(v, "natural"), "input_dim", COUNT))
for i, name in enumerate(("in_channels", "hidden_channels", "out_channels")):
    add(hyper("ConvNet", lambda v, i=i: ConvNet(*[v if j == i else 2 for j in range(3)]), name, COUNT))  # fmt: skip
add(hyper("MaskedConv2d", lambda v: MaskedConv2d(v, 4, 3, "A"), "in_channels", COUNT))
add(hyper("MaskedConv2d", lambda v: MaskedConv2d(1, v, 3, "A"), "out_channels", COUNT))
add(hyper("MaskedConv2d", lambda v: MaskedConv2d(1, 4, v, "A"), "kernel_size", [*COUNT, ("even", 4, ValueError)]))  # fmt: skip
add(hyper("MaskedConv2d", lambda v: MaskedConv2d(1, 4, 3, v), "mask_type", [("name", "C", ValueError)]))  # fmt: skip
add(hyper("MaskedConv2d", lambda v: MaskedConv2d(2, 4, 3, "A", data_channels=v), "data_channels", [*COUNT, ("indivisible", 3, ValueError)]))  # fmt: skip
add(hyper("MaskedConv2d", lambda v: MaskedConv2d(1, 4, 3, "A", out_repeats=v), "out_repeats", COUNT))  # fmt: skip
add(hyper("MaskedConv2d-groups", lambda v: MaskedConv2d(2, 4, 3, "A", data_channels=2, out_repeats=v), "out_repeats", [("indivisible", 3, ValueError), ("too-many", 4, ValueError), ("above-channels", 8, ValueError)]))  # fmt: skip
_SMALL = {"hidden_channels": 4, "num_layers": 1}
add(hyper("PixelCNNNetwork", lambda v: PixelCNNNetwork(v, **_SMALL), "data_channels", COUNT))
add(hyper("PixelCNNNetwork", lambda v: PixelCNNNetwork(1, v, **_SMALL), "num_categories", COUNT2))
add(hyper("PixelCNNNetwork", lambda v: PixelCNNNetwork(hidden_channels=v), "hidden_channels", COUNT))  # fmt: skip
add(hyper("PixelCNNNetwork", lambda v: PixelCNNNetwork(hidden_channels=4, num_layers=v), "num_layers", COUNT0))  # fmt: skip
add(hyper("PixelCNNNetwork", lambda v: PixelCNNNetwork(kernel_size=v, **_SMALL), "kernel_size", [*COUNT, ("even", 2, ValueError)]))  # fmt: skip
add(hyper("PixelCNNNetwork", lambda v: PixelCNNNetwork(first_kernel_size=v, **_SMALL), "first_kernel_size", [*COUNT, ("even", 2, ValueError)]))  # fmt: skip
add(hyper("PixelCNNNetwork", lambda v: PixelCNNNetwork(context_dim=v, **_SMALL), "context_dim", COUNT0))  # fmt: skip
add(hyper("BoundContext", lambda v: BoundContext(DenseNN(2, [4], 2, context_dim=1), v), "context", [("str", "c", TypeError), ("none", None, TypeError)]))  # fmt: skip

# -- forward x bad inputs -------------------------------------------------------------------
_NETS = {
    "DenseNN": lambda: DenseNN(3, [8], 2),
    "DenseNN-context": lambda: DenseNN(3, [8], 2, context_dim=2),
    "MADE": lambda: MADE(3, [8]),
    "MADE-context": lambda: MADE(3, [8], context_dim=2),
}
for key, make in _NETS.items():
    ctx = (lambda: torch.zeros(4, 2)) if "context" in key else (lambda: None)
    # a network propagates nan like a torch layer (no scan of its input on every call; the
    # transforms and distributions that call it check their own inputs), so no nan/inf cases
    add(inputs(key, make, lambda net, x, ctx=ctx: net(x, ctx()), "x", (4, 3), finite=False))
for key in ("DenseNN-context", "MADE-context"):
    add(inputs(key, _NETS[key], lambda net, c: net(torch.zeros(4, 3), c), "context", (4, 2)))
    CASES.append(Case(f"{key}-context-missing", lambda m=_NETS[key]: m()(torch.zeros(4, 3)), ValueError, "context"))  # fmt: skip
    CASES.append(Case(f"{key}-context-batch", lambda m=_NETS[key]: m()(torch.zeros(4, 3), torch.zeros(5, 2)), ValueError, "context"))  # fmt: skip
for key in ("DenseNN", "MADE"):
    CASES.append(Case(f"{key}-context-unexpected", lambda m=_NETS[key]: m()(torch.zeros(4, 3), torch.zeros(4, 2)), ValueError, "context"))  # fmt: skip
_MASK_INDEX = [("str", "a", TypeError), ("negative", -1, ValueError), ("large", 5, ValueError),
               ("float", 0.5, TypeError), ("bool", True, TypeError),
               ("float-tensor", torch.tensor(1.0), TypeError), ("1d-tensor", torch.tensor([1]), TypeError),
               ("large-tensor", torch.tensor(5), ValueError)]  # fmt: skip
add(hyper("MADE.forward", lambda v: MADE(3, [8], num_masks=2)(torch.zeros(2, 3), mask_index=v), "mask_index", _MASK_INDEX))  # fmt: skip
add(hyper("MADE-categorical", lambda v: MADE(2, [8], input_categories=3)(v), "x", [
    ("out-of-range", torch.tensor([[0, 3]]), ValueError), ("fraction", torch.tensor([[0.5, 1.0]]), ValueError),
    ("width", torch.tensor([[0, 1, 2]]), ValueError)]))  # fmt: skip

_CONVS = {
    "ConvNet": lambda: ConvNet(2, 4, 4),
    "MaskedConv2d": lambda: MaskedConv2d(2, 4, 3, "A", data_channels=2),
}
for key, make in _CONVS.items():
    add(inputs(key, make, lambda net, x: net(x), "x", (3, 2, 5, 5), finite=False, skip=("scalar",), wrong=(3, 3, 5, 5)))  # fmt: skip
    CASES.append(Case(f"{key}-x-2d", lambda m=make: m()(torch.zeros(5, 5)), ValueError, "x"))
_PIXEL_INPUTS = [
    ("channels", lambda: torch.zeros(2, 2, 5, 5), ValueError),
    ("2d", lambda: torch.zeros(5, 5), ValueError),
    ("dtype", lambda: torch.zeros(2, 1, 5, 5, dtype=other_dtype()), TypeError),
    ("bool", lambda: torch.zeros(2, 1, 5, 5, dtype=torch.bool), TypeError),
    ("out-of-range", lambda: torch.full((2, 1, 5, 5), 3.0), ValueError),
    ("nan", lambda: torch.full((2, 1, 5, 5), float("nan")), ValueError),
    ("list", lambda: torch.zeros(2, 1, 5, 5).tolist(), TypeError),
]
for label, make, error in _PIXEL_INPUTS:
    CASES.append(Case(f"PixelCNNNetwork-x-{label}", lambda m=make: PixelCNNNetwork(**_SMALL)(m()), error, "x"))  # fmt: skip
CASES.append(Case("PixelCNNNetwork-context-unexpected", lambda: PixelCNNNetwork(**_SMALL)(torch.zeros(2, 1, 5, 5), torch.zeros(2, 3)), ValueError, "context"))  # fmt: skip
CASES.append(Case("PixelCNNNetwork-context-width", lambda: PixelCNNNetwork(context_dim=3, **_SMALL)(torch.zeros(2, 1, 5, 5), torch.zeros(2, 4)), ValueError, "context"))  # fmt: skip
CASES.append(Case("PixelCNNNetwork-context-batch", lambda: PixelCNNNetwork(context_dim=3, **_SMALL)(torch.zeros(2, 1, 5, 5), torch.zeros(3, 3)), ValueError, "context"))  # fmt: skip
CASES.append(Case("PixelCNNNetwork-context-more-dims", lambda: PixelCNNNetwork(context_dim=3, **_SMALL)(torch.zeros(2, 1, 5, 5), torch.zeros(4, 2, 3)), ValueError, "context"))  # fmt: skip
CASES.append(Case("PixelCNNNetwork-context-missing", lambda: PixelCNNNetwork(context_dim=3, **_SMALL)(torch.zeros(2, 1, 5, 5)), ValueError, "context"))  # fmt: skip
CASES.append(Case("PixelCNNNetwork-context-int", lambda: PixelCNNNetwork(context_dim=3, **_SMALL)(torch.zeros(2, 1, 5, 5), torch.zeros(2, 3, dtype=torch.long)), TypeError, "context"))  # fmt: skip
