"""MADE is autoregressive for every ordering; DenseNN broadcasts its context."""

import pytest
import torch

from pyrogen.nn import MADE, DenseNN, made_degrees

ORDERS = ["natural", "reversed", "random", [3, 1, 4, 0, 2]]


@pytest.mark.parametrize("order", ORDERS, ids=str)
@pytest.mark.parametrize("context_dim", [0, 3])
def test_made_is_autoregressive(order, context_dim):
    # tanh: no inactive units, so a zero Jacobian entry can only come from the masks
    made = MADE(
        5, [12, 12], num_params=2, order=order, context_dim=context_dim, activation=torch.nn.Tanh
    )
    with torch.no_grad():
        for p in made.parameters():
            p.add_(torch.randn_like(p))
    x = torch.randn(5)
    context = torch.randn(3) if context_dim else None
    jac = torch.autograd.functional.jacobian(lambda v: made(v, context), x)  # (P, D, D)
    deg = made.degrees
    allowed = deg[:, None] > deg[None, :]  # output i may depend on input j iff deg_j < deg_i
    assert (jac[~allowed.unsqueeze(0).expand_as(jac)] == 0).all(), "output depends on a successor"
    # Connectivity: every allowed dependency is realised by some output parameter.
    reached = jac.abs().sum(0) > 0
    assert (reached == allowed).all()


def test_made_degrees_of_an_order():
    assert made_degrees(3, [2, 0, 1]).tolist() == [2, 3, 1]
    assert made_degrees(3, "reversed").tolist() == [3, 2, 1]


def test_dense_context_broadcasts():
    net = DenseNN(2, [8], 3, context_dim=4)
    out = net(torch.randn(5, 2), torch.randn(4))
    assert out.shape == (5, 3)
    out = net(torch.randn(2), torch.randn(6, 4))
    assert out.shape == (6, 3)
    with pytest.raises(ValueError, match="context"):
        net(torch.randn(5, 2))


def test_zero_initialised_last_layer():
    assert MADE(4, [8])(torch.randn(3, 4)).abs().max() == 0
    assert DenseNN(4, [8], 2)(torch.randn(3, 4)).abs().max() == 0


@pytest.mark.parametrize("degrees", ["cyclic", "random"])
def test_every_mask_set_is_autoregressive_in_its_own_order(degrees):
    made = MADE(5, [16, 16], num_params=3, degrees=degrees, num_masks=3, seed=1)
    made.activation = torch.nn.Tanh()
    with torch.no_grad():
        for p in made.parameters():
            p.add_(torch.randn_like(p))
    x = torch.randn(5)
    orders = []
    for m in range(3):
        jac = torch.autograd.functional.jacobian(lambda v, m=m: made(v, mask_index=m), x)
        deg = torch.argsort(made.orders[m]) + 1
        allowed = deg[:, None] > deg[None, :]
        assert (jac[:, ~allowed] == 0).all()
        assert (jac.abs().sum(0)[allowed] > 0).any()
        orders.append(made.orders[m].tolist())
    assert orders[0] == [0, 1, 2, 3, 4] and len({tuple(o) for o in orders}) > 1
    with pytest.raises(ValueError, match="mask_index"):
        made(x, mask_index=3)


def test_categorical_inputs_are_one_hot_encoded():
    made = MADE(3, [8], num_params=4, input_categories=4)
    with torch.no_grad():
        made.output.weight.normal_()
    x = torch.tensor([[0.0, 3.0, 1.0]])
    onehot = torch.nn.functional.one_hot(x.long(), 4).flatten(-2).float()
    torch.testing.assert_close(made(x), made.forward_features(onehot.to(x.dtype)))
    assert made(x).shape == (1, 4, 3)


@pytest.mark.parametrize("network", ["MADE", "DenseNN"])
def test_hidden_dims_of_numpy_ints_or_a_generator(network):
    """``hidden_dims`` may hold NumPy integers (as every count argument may) or be a generator
    (read once): the same layers as a tuple of ints."""
    import numpy as np

    make = (lambda h: MADE(3, h)) if network == "MADE" else (lambda h: DenseNN(3, h, 4))
    ref = {k: v.shape for k, v in make((8, 5)).state_dict().items()}
    for hidden in ((np.int64(8), np.int32(5)), (h for h in (8, 5))):
        net = make(hidden)
        assert {k: v.shape for k, v in net.state_dict().items()} == ref
    with pytest.raises(ValueError, match="hidden_dims"):
        make((np.bool_(True),))


@pytest.mark.parametrize(
    "mask_index",
    [lambda: 1, lambda: __import__("numpy").int64(1), lambda: torch.tensor(1)],
    ids=["int", "numpy", "tensor"],
)
def test_made_mask_index_of_any_integer_type(mask_index):
    """``mask_index`` may be a NumPy integer or a 0-d integer tensor, as
    ``torch.randint(num_masks, ())`` gives: the same output as the ``int``."""
    made = MADE(3, [8], num_masks=2)
    with torch.no_grad():
        for p in made.parameters():
            p.add_(torch.randn_like(p))
    x = torch.randn(4, 3)
    torch.testing.assert_close(made(x, mask_index=mask_index()), made(x, mask_index=1))


@pytest.mark.parametrize(
    ("mask_index", "error"),
    [
        (True, TypeError),
        (1.0, TypeError),
        ("1", TypeError),
        (torch.tensor(1.0), TypeError),
        (torch.tensor([1]), TypeError),
        (torch.tensor(True), TypeError),
        (torch.tensor(2), ValueError),
        (-1, ValueError),
    ],
    ids=["bool", "float", "str", "float-tensor", "1d-tensor", "bool-tensor", "large", "negative"],
)
def test_made_mask_index_errors(mask_index, error):
    with pytest.raises(error, match="mask_index"):
        MADE(3, [8], num_masks=2)(torch.zeros(4, 3), mask_index=mask_index)


@pytest.mark.parametrize("network", ["MADE", "DenseNN"])
def test_a_context_that_does_not_broadcast_against_x_is_a_value_error(network):
    net = MADE(3, [8], context_dim=2) if network == "MADE" else DenseNN(3, [8], 4, context_dim=2)
    assert net(torch.zeros(4, 3), torch.zeros(5, 1, 2)).shape[:2] == (5, 4)  # broadcasts
    with pytest.raises(ValueError, match=r"context must have shape \(\*batch, 2\).*\(4,\)"):
        net(torch.zeros(4, 3), torch.zeros(5, 2))
