"""The compiled log_prob path: the plain function equals the distribution's log_prob (values
and gradients, pyrogen layers and other transforms mixed), dynamo traces a flow's log_prob
as one graph, and a compiled call agrees with the eager one."""

import pyro.distributions as dist
import pyro.distributions.transforms as T
import pytest
import torch

from pyrogen import flows


def perturbed(module):
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return module


def flow_distribution(kind):
    d = 3
    base = dist.Normal(torch.zeros(d), 1.0).to_event(1)
    if kind == "maf":
        parts = [perturbed(flows.maf(d, num_layers=2, hidden_dims=[8]))]
    elif kind == "realnvp":
        parts = [perturbed(flows.realnvp(d, num_layers=2, hidden_dims=[8]))]
    elif kind == "nsf":
        parts = [perturbed(flows.nsf(d, num_layers=1, hidden_dims=[8]))]
    else:  # pyrogen layers between plain torch transforms
        parts = [
            T.AffineTransform(torch.tensor([0.5, -1.0, 2.0]), 1.5, event_dim=1),
            perturbed(flows.maf(d, num_layers=1, hidden_dims=[8])),
            T.Permute(torch.tensor([2, 0, 1])),
        ]
    return dist.TransformedDistribution(base, parts)


KINDS = ["maf", "realnvp", "nsf", "mixed"]


@pytest.mark.parametrize("kind", KINDS)
def test_log_prob_function_equals_log_prob(kind, rtol):
    q = flow_distribution(kind)
    x = torch.randn(4, 2, 3)
    expected = q.log_prob(x.clone())
    got = flows.log_prob_function(q)(x)
    assert got.shape == (4, 2)
    torch.testing.assert_close(got, expected, rtol=rtol, atol=rtol)
    params = [p for t in q.transforms if isinstance(t, torch.nn.Module) for p in t.parameters()]
    g_expected = torch.autograd.grad(q.log_prob(x.clone()).sum(), params)
    g_got = torch.autograd.grad(flows.log_prob_function(q)(x).sum(), params)
    for a, b in zip(g_got, g_expected, strict=True):
        torch.testing.assert_close(a, b, rtol=rtol, atol=rtol)


def test_log_prob_function_rejects_other_distributions():
    with pytest.raises(TypeError, match="distribution"):
        flows.log_prob_function(dist.Normal(0.0, 1.0))


def _dynamo():
    try:
        import torch._dynamo
    except ImportError:  # pragma: no cover - torch built without dynamo
        pytest.skip("torch._dynamo is not available")
    return torch._dynamo


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["maf", "realnvp"])
def test_log_prob_traces_as_one_graph(kind):
    dynamo = _dynamo()
    q = flow_distribution(kind)
    dynamo.reset()
    explanation = dynamo.explain(flows.log_prob_function(q))(torch.randn(5, 3))
    assert explanation.graph_break_count == 0, explanation.break_reasons
    assert explanation.graph_count == 1


@pytest.mark.slow
def test_compiled_log_prob_and_gradients_match_eager(rtol):
    _dynamo().reset()
    q = flow_distribution("maf")
    x = torch.randn(5, 3)
    log_prob = flows.compile(q, backend="aot_eager")  # traced fwd+bwd, no C++ code generation
    params = list(q.transforms[0].parameters())
    got = log_prob(x)
    torch.testing.assert_close(got, q.log_prob(x.clone()), rtol=rtol, atol=rtol)
    g_got = torch.autograd.grad(got.sum(), params)
    g_expected = torch.autograd.grad(q.log_prob(x.clone()).sum(), params)
    for a, b in zip(g_got, g_expected, strict=True):
        torch.testing.assert_close(a, b, rtol=rtol, atol=rtol)
    with torch.no_grad():  # a training step: the compiled function reads the new values
        for p in params:
            p.mul_(0.5)
    torch.testing.assert_close(log_prob(x), q.log_prob(x.clone()), rtol=rtol, atol=rtol)
