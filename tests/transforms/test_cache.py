"""The round-trip cache can never change a result; the fused sample-and-score needs no cache.

Each test reproduces a way ordinary Pyro/PyTorch code changes parameters or inputs behind a
transform's back (``ClippedAdam``'s ``p.data`` writes, ``load_state_dict(assign=True)``,
``pyro.module(update_module_params=True)``, ``torch.func.functional_call``, a refilled input
buffer, ``evaluate_loss`` under ``no_grad``) or traces it with ``torch.func``.
"""

from __future__ import annotations

import copy

import pyro
import pyro.distributions as dist
import pyro.distributions.transforms as T
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO
from pyro.optim import ClippedAdam

from pyrogen import flows
from pyrogen.distributions import FlowDistribution
from pyrogen.transforms import Bijector, Compose


def perturb(module: torch.nn.Module, scale: float = 0.3, seed: int = 0) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return module


def density(flow, d: int) -> dist.TransformedDistribution:
    return dist.TransformedDistribution(dist.Normal(torch.zeros(d), 1.0).to_event(1), [flow])


def count_calls(flow, method: str) -> list:
    """Record every call of ``method`` on the pyrogen layers of ``flow`` (not compositions)."""
    calls = []
    for layer in flow.modules():
        if isinstance(layer, Bijector) and not isinstance(layer, Compose):
            orig = getattr(layer, method)
            setattr(layer, method, lambda v, orig=orig: calls.append(1) or orig(v))
    return calls


def train(evaluate: bool, num_steps: int = 12) -> dict:
    pyro.clear_param_store()
    torch.manual_seed(0)
    flow = flows.maf(3, num_layers=2, hidden_dims=[8])
    x = torch.randn(32, 3) * torch.tensor([1.0, 2.0, 0.5]) + 1.0

    def model(x):
        pyro.module("flow", flow)
        with pyro.plate("data", len(x)):
            pyro.sample("x", density(flow, 3), obs=x)

    svi = SVI(model, lambda x: None, ClippedAdam({"lr": 0.05}), Trace_ELBO())
    for _ in range(num_steps):
        svi.step(x)
        if evaluate:
            svi.evaluate_loss(x)
    return {k: v.detach().clone() for k, v in flow.state_dict().items()}


def test_evaluate_loss_between_steps_changes_nothing():
    """ClippedAdam writes p.data (no _version bump); evaluate_loss scores under no_grad."""
    plain, interleaved = train(False), train(True)
    assert plain.keys() == interleaved.keys()
    for k in plain:
        assert torch.equal(plain[k], interleaved[k]), k


def _write_data(flow, scorer, new):
    for p, q in zip(flow.parameters(), new.parameters(), strict=True):
        p.data.copy_(q.data)


def _assign(flow, scorer, new):
    flow.load_state_dict(copy.deepcopy(new.state_dict()), assign=True)


def _pyro_module(flow, scorer, new):
    pyro.clear_param_store()
    pyro.module("flow", copy.deepcopy(new))  # the param store now holds new's values
    pyro.module("flow", flow, update_module_params=True)


ROUTES = {"p.data": _write_data, "assign": _assign, "pyro.module": _pyro_module}


class Scorer(torch.nn.Module):
    def __init__(self, flow, d):
        super().__init__()
        self.flow, self.d = flow, d

    def forward(self, y):
        return density(self.flow, self.d).log_prob(y)


@pytest.mark.parametrize("route", list(ROUTES))
@pytest.mark.parametrize("builder", ["maf", "iaf", "realnvp"])
def test_new_parameters_are_seen_on_the_same_tensor(route, builder):
    torch.manual_seed(0)
    flow = perturb(getattr(flows, builder)(4, num_layers=2, hidden_dims=[8]))
    new = perturb(copy.deepcopy(flow), seed=1)
    scorer = Scorer(flow, 4)
    y = torch.randn(5, 4)
    old = scorer(y)
    ROUTES[route](flow, scorer, new)
    expected = Scorer(new, 4)(y.clone())
    assert not torch.allclose(old, expected)
    torch.testing.assert_close(scorer(y), expected)


@pytest.mark.parametrize("route", list(ROUTES))
@pytest.mark.parametrize("builder", ["maf", "iaf", "realnvp"])
def test_new_parameters_are_seen_on_a_sample(route, builder):
    """The round trip of a sample is served only while the parameters are those that made it."""
    torch.manual_seed(0)
    flow = perturb(getattr(flows, builder)(4, num_layers=2, hidden_dims=[8]))
    new = perturb(copy.deepcopy(flow), seed=1)
    scorer = Scorer(flow, 4)
    z = flow(torch.randn(5, 4))
    old = scorer(z)
    ROUTES[route](flow, scorer, new)
    expected = Scorer(new, 4)(z.clone())
    assert not torch.allclose(old, expected)
    torch.testing.assert_close(scorer(z), expected)


def test_functional_call_uses_the_given_parameters():
    torch.manual_seed(0)
    flow = perturb(flows.maf(4, num_layers=2, hidden_dims=[8]))
    new = perturb(copy.deepcopy(flow), seed=1)
    scorer = Scorer(flow, 4)
    y = torch.randn(5, 4)
    before = scorer(y)
    params = {f"flow.{k}": v for k, v in new.named_parameters()}
    got = torch.func.functional_call(scorer, params, (y,))
    torch.testing.assert_close(got, Scorer(new, 4)(y.clone()))
    torch.testing.assert_close(scorer(y), before)  # and the module's own parameters after


@pytest.mark.parametrize("builder", ["maf", "iaf"])
def test_refilled_input_buffer_is_rescored(builder):
    torch.manual_seed(0)
    flow = perturb(getattr(flows, builder)(3, num_layers=2, hidden_dims=[8]))
    q = density(flow, 3)
    batches = torch.randn(2, 6, 3)
    buf = batches[0].clone()
    q.log_prob(buf)
    buf.copy_(batches[1])
    torch.testing.assert_close(q.log_prob(buf), q.log_prob(batches[1].clone()))
    # a sample modified in place is no longer the tensor the flow produced
    s = q.rsample((4,)).detach()
    s.add_(1.0)
    torch.testing.assert_close(q.log_prob(s), q.log_prob(s.clone()))


@pytest.mark.parametrize("builder", ["maf", "iaf", "realnvp", "planar"])
def test_torch_func_under_pyro_validation(builder):
    torch.manual_seed(0)
    flow = perturb(getattr(flows, builder)(3, num_layers=2), scale=0.1)
    x = torch.randn(4, 3)
    with pyro.validation_enabled(True):
        jac = torch.func.jacrev(flow)(x[0])
        ladj_vmapped = torch.func.vmap(lambda v: flow.log_abs_det_jacobian(v, flow(v)))(x)
        y = torch.func.vmap(flow)(x)
        back = torch.func.vmap(flow.inv)(y.clone())
    expected = torch.autograd.functional.jacobian(lambda v: flow(v), x[0].clone())
    torch.testing.assert_close(jac, expected)
    torch.testing.assert_close(ladj_vmapped, torch.linalg.slogdet(
        torch.stack([torch.autograd.functional.jacobian(lambda v: flow(v), xi) for xi in x])
    )[1])  # fmt: skip
    torch.testing.assert_close(back, x)


def test_sample_then_score_is_one_pass():
    """A guide's pattern: the round trip of its own sample is served, not recomputed."""
    torch.manual_seed(0)
    flow = perturb(flows.iaf(3, num_layers=2, hidden_dims=[8]))
    q = density(flow, 3)
    calls = count_calls(flow, "inverse_and_ladj")
    z = q.rsample((4,))
    q.log_prob(z)
    assert calls == []
    q.log_prob(z.clone())  # a copy is not the produced tensor: computed
    assert len(calls) == 3  # two IAF layers and the reversal between them


def test_score_then_log_det_is_one_pass():
    torch.manual_seed(0)
    layer = perturb(flows.maf(3, num_layers=1, hidden_dims=[8]))[0]
    inverse = count_calls(layer, "inverse_and_ladj")
    forward = count_calls(layer, "forward_and_ladj")
    y = torch.randn(5, 3)
    x = layer.inv(y)
    layer.log_abs_det_jacobian(x, y)
    assert layer(x) is y
    assert (len(inverse), len(forward)) == (1, 0)


def test_same_direction_calls_are_never_served():
    torch.manual_seed(0)
    layer = perturb(flows.maf(3, num_layers=1, hidden_dims=[8]))[0]
    inverse = count_calls(layer, "inverse_and_ladj")
    y = torch.randn(5, 3)
    layer.inv(y)
    layer.inv(y)
    assert len(inverse) == 2


def test_round_trip_after_a_data_write_is_recomputed():
    """The produced tensor is served only while the parameters hold the values it came from."""
    torch.manual_seed(0)
    flow = perturb(flows.iaf(3, num_layers=1, hidden_dims=[8]))
    q = density(flow, 3)
    z = flow(torch.randn(4, 3))
    for p in flow.parameters():
        p.data.mul_(1.5)
    torch.testing.assert_close(q.log_prob(z), q.log_prob(z.clone()))


def test_round_trip_across_grad_modes_is_recomputed():
    torch.manual_seed(0)
    flow = perturb(flows.iaf(3, num_layers=1, hidden_dims=[8]))
    x = torch.randn(4, 3)
    with torch.no_grad():
        y = flow(x)
    back = flow.inv(y)
    assert back.requires_grad  # computed afresh with a graph, not the no_grad input


# -- FlowDistribution --------------------------------------------------------------------------


@pytest.mark.parametrize("builder", ["iaf", "maf", "realnvp"])
@pytest.mark.parametrize("sample_shape", [(), (5,), (2, 3)], ids=str)
def test_rsample_and_log_prob_agrees_with_log_prob(builder, sample_shape):
    torch.manual_seed(0)
    flow = perturb(getattr(flows, builder)(3, num_layers=2, hidden_dims=[8]))
    q = FlowDistribution(dist.Normal(torch.zeros(3), 1.0).to_event(1), [flow, T.ExpTransform()])
    torch.manual_seed(1)
    x, log_prob = q.rsample_and_log_prob(sample_shape)
    assert x.shape == (*sample_shape, 3) and log_prob.shape == sample_shape
    torch.testing.assert_close(log_prob, q.log_prob(x.detach().clone()))
    torch.manual_seed(1)
    torch.testing.assert_close(x, q.rsample(sample_shape))
    log_prob.sum().backward()  # differentiable
    assert all(p.grad is not None for p in flow.parameters())
    with torch.no_grad():
        s, lp = q.sample_and_log_prob(sample_shape)
    assert not s.requires_grad
    torch.testing.assert_close(lp, q.log_prob(s.clone()))


def test_rsample_and_log_prob_is_one_forward_pass():
    torch.manual_seed(0)
    flow = perturb(flows.iaf(8, num_layers=3, hidden_dims=[16]))
    q = FlowDistribution(dist.Normal(torch.zeros(8), 1.0).to_event(1), flow)
    forward, inverse = count_calls(flow, "forward_and_ladj"), count_calls(flow, "inverse_and_ladj")
    x, _ = q.rsample_and_log_prob((4,))
    x.clone().detach()[:2]  # what users do with a draw no longer matters
    assert (len(forward), len(inverse)) == (5, 0)  # 3 IAF layers and 2 reversals


def test_rsample_and_log_prob_with_pyro_transforms():
    torch.manual_seed(0)
    pyro_iaf = T.affine_autoregressive(3, hidden_dims=[8])
    perturb(pyro_iaf)
    q = FlowDistribution(dist.Normal(torch.zeros(3), 1.0).to_event(1), [pyro_iaf])
    x, log_prob = q.rsample_and_log_prob((6,))
    torch.testing.assert_close(log_prob, q.log_prob(x.detach().clone()), atol=1e-5, rtol=1e-5)


def test_flow_distribution_expands_and_scores_under_a_plate():
    flow = perturb(flows.iaf(2, num_layers=1, hidden_dims=[8]))
    q = FlowDistribution(dist.Normal(torch.zeros(2), 1.0).to_event(1), [flow])
    big = q.expand((4,))
    assert isinstance(big, FlowDistribution) and big.batch_shape == (4,)
    x, log_prob = big.rsample_and_log_prob((3,))
    assert x.shape == (3, 4, 2) and log_prob.shape == (3, 4)
    torch.testing.assert_close(log_prob, q.log_prob(x.detach().clone()))

    def model():
        with pyro.plate("data", 4):
            pyro.sample("z", q)

    trace = pyro.poutine.trace(model).get_trace()
    assert trace.nodes["z"]["value"].shape == (4, 2)
