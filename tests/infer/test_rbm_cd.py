"""The closed-form contrastive-divergence step for a Bernoulli RBM against the traced one:
the same update to rounding (CD-k, PCD, SGD, Adam, ClippedAdam), evaluate_loss, persistent
chains in the state, and the models it must not take."""

import pyro
import pytest
import torch
from pyro.infer import SVI
from pyro.optim import SGD, Adam, ClippedAdam

from pyrogen.distributions import BernoulliRBM
from pyrogen.infer import ContrastiveDivergence
from pyrogen.infer.rbm_cd import rbm_free_energy_gap

V, H = 7, 4


def model(v):
    # callable initial values: the body draws no random numbers once the parameters exist, so
    # the traced and the closed-form paths see the same random stream
    w = pyro.param("w", lambda: 0.5 * torch.randn(V, H))
    b = pyro.param("b", lambda: 0.2 * torch.randn(V))
    c = pyro.param("c", lambda: 0.2 * torch.randn(H))
    with pyro.plate("data", 50, subsample=torch.arange(len(v))):
        pyro.sample("v", BernoulliRBM(w, b, c), obs=v)


def train(make_loss, fast: bool, optim, steps: int = 4):
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    data = torch.bernoulli(torch.full((12, V), 0.4))
    model(data)
    start = {k: v.detach().clone() for k, v in pyro.get_param_store().items()}
    loss = make_loss(fast)
    svi = SVI(model, lambda v: None, optim(), loss)
    values = [svi.step(data[: 8 if i % 2 else 12]) for i in range(steps)]
    values.append(svi.evaluate_loss(data))
    params = {k: v.detach().clone() for k, v in pyro.get_param_store().items()}
    assert all(not torch.equal(params[k], start[k]) for k in start)  # the steps moved them
    return values, params, loss


LOSSES = {
    "cd-1": lambda fast: ContrastiveDivergence(1, fast=fast),
    "cd-3": lambda fast: ContrastiveDivergence(3, fast=fast),
    "pcd-2": lambda fast: ContrastiveDivergence(2, persistent=True, num_chains=5, fast=fast),
}
OPTIMS = {
    "sgd": lambda: SGD({"lr": 0.1}),
    "adam": lambda: Adam({"lr": 0.05}),
    "clipped-adam": lambda: ClippedAdam({"lr": 0.05, "clip_norm": 0.5}),
}


@pytest.mark.parametrize("optim", list(OPTIMS))
@pytest.mark.parametrize("loss", list(LOSSES))
def test_closed_form_step_equals_the_traced_step(loss, optim, rtol):
    fast_values, fast_params, fast_loss = train(LOSSES[loss], True, OPTIMS[optim])
    slow_values, slow_params, slow_loss = train(LOSSES[loss], False, OPTIMS[optim])
    assert fast_loss._sites and all(s is not None for s in fast_loss._sites.values())
    assert not slow_loss._sites
    torch.testing.assert_close(fast_values, slow_values, rtol=rtol, atol=rtol)
    for name in slow_params:
        torch.testing.assert_close(fast_params[name], slow_params[name], rtol=rtol, atol=rtol)
    assert fast_loss.num_steps == slow_loss.num_steps == 4
    for name in slow_loss.chains:  # the persistent chains drew the same random numbers
        assert torch.equal(fast_loss.chains[name], slow_loss.chains[name])
    state = fast_loss.state_dict()
    assert set(state["chains"]) == set(slow_loss.chains)


def test_parameters_move_and_the_gradient_matches_autograd(rtol):
    pyro.set_rng_seed(1)
    w, b, c = 0.5 * torch.randn(V, H), torch.randn(V), torch.randn(H)
    data = torch.bernoulli(torch.full((6, V), 0.5))
    negatives = torch.bernoulli(torch.full((9, V), 0.5))
    value, grads = rbm_free_energy_gap(data, negatives, w, b, c, 2.5)
    leaves = [t.clone().requires_grad_() for t in (w, b, c)]
    rbm = BernoulliRBM(*leaves)
    reference = 2.5 * (rbm.free_energy(data).sum() - 6 * rbm.free_energy(negatives).mean())
    expected = torch.autograd.grad(reference, leaves)
    torch.testing.assert_close(value, reference.detach(), rtol=rtol, atol=rtol)
    for g, e in zip(grads, expected, strict=True):
        assert float(e.abs().max()) > 1e-3
        torch.testing.assert_close(g, e, rtol=rtol, atol=rtol)


def indexed_model(v):
    w = pyro.param("w", lambda: 0.5 * torch.randn(V, H))
    b, c = pyro.param("b", torch.zeros(V)), pyro.param("c", torch.zeros(H))
    with pyro.plate("data", len(v), subsample_size=4) as idx:
        pyro.sample("v", BernoulliRBM(w, b, c), obs=v[idx])


def scaled_model(v):
    w = pyro.param("w", lambda: 0.5 * torch.randn(V, H))
    b, c = pyro.param("b", torch.zeros(V)), pyro.param("c", torch.zeros(H))
    with pyro.plate("data", len(v)):
        pyro.sample("v", BernoulliRBM(2 * w, b, c), obs=v)


@pytest.mark.parametrize("fn", [indexed_model, scaled_model])
def test_models_outside_the_closed_form_are_traced(fn):
    loss = ContrastiveDivergence(1)
    svi = SVI(fn, lambda v: None, SGD({"lr": 0.1}), loss)
    svi.step(torch.bernoulli(torch.full((10, V), 0.5)))
    assert list(loss._sites.values()) == [None]
    assert loss.num_steps == 1


def test_a_cleared_param_store_is_traced_again():
    data = torch.bernoulli(torch.full((10, V), 0.5))
    loss = ContrastiveDivergence(1)
    svi = SVI(model, lambda v: None, SGD({"lr": 0.1}), loss)
    svi.step(data)
    pyro.clear_param_store()
    svi.step(data)  # the model re-creates its parameters
    assert set(pyro.get_param_store().keys()) == {"w", "b", "c"}
