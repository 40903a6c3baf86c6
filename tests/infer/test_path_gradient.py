"""The path-derivative score of a flow guide's own draws: exact against autograd through the
inverse, for every kind of layer, without running a sequential inverse."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import Trace_ELBO

from pyrogen import flows
from pyrogen.infer import AutoFlow
from pyrogen.infer.path_gradient import score_gradient
from tests.same_draws import in_float64


def _perturbed(flow):
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return flow


@pytest.mark.parametrize(
    ("build", "spline"),
    [
        (lambda d: flows.iaf(d, num_layers=2, activation=torch.nn.Tanh), False),
        (lambda d: flows.maf(d, num_layers=2), False),  # random orders
        (lambda d: flows.nsf(d, num_layers=2, cheap="forward", num_bins=4), True),
        (lambda d: flows.realnvp(d, num_layers=2), False),
        (lambda d: flows.planar(d, num_layers=2), False),
    ],
    ids=["iaf", "maf", "nsf-forward", "realnvp", "planar"],
)
def test_score_gradient_is_the_gradient_of_log_q(build, spline, rtol):
    """d/dz log q(z) from the sampling pass equals autograd through the inverse and log-det."""
    d = 4
    # built, perturbed and its noise drawn in float64, then cast: every dtype checks the same
    # flow at the same draws
    with in_float64():
        flow = _perturbed(build(d))
        eps = torch.randn(3, d)
    dtype = torch.get_default_dtype()
    flow, eps = flow.to(dtype), eps.to(dtype)
    base = dist.Normal(torch.zeros(d), 1.0).to_event(1)
    xs = [eps]
    with torch.no_grad():
        for part in flow:
            xs.append(part.forward_and_ladj(xs[-1])[0])
    z = xs[-1].clone().requires_grad_(True)
    log_q = dist.TransformedDistribution(base, [flow]).log_prob(z)
    (expected,) = torch.autograd.grad(log_q.sum(), z)
    tol = {}  # float64: assert_close's defaults
    if dtype != torch.float64:
        # the reference inverts the flow at z rounded to float32, and the steep gradients (up
        # to 5e3 in the spline's bins, 60 for realnvp) amplify that rounding; the score from
        # the sampling pass needs no inverse (it agrees with float64 to 3e-6)
        t = 30 * rtol if spline else rtol
        tol = {"rtol": t, "atol": t}
    torch.testing.assert_close(score_gradient(list(flow), xs), expected, **tol)


def _model():
    z = pyro.sample("z", dist.Normal(torch.zeros(5), 1.0).to_event(1))
    pyro.sample("y", dist.Normal(z.sum(), 0.5), obs=torch.tensor(1.0))


def test_guide_path_gradient_equals_the_inverse_based_one_without_any_inverse():
    """The default guide's (IAF) ELBO gradient under path_gradient=True equals the one obtained
    by scoring a copy of the draw through the flow's inverse, and the default step never
    runs the sequential inverse."""
    pyro.set_rng_seed(0)
    guide = AutoFlow(_model, num_layers=2)
    guide()
    _perturbed(guide.flow)
    calls = []
    for part in [p for p in guide.flow if getattr(p, "cheap", None) == "forward"]:
        original = part.inverse_and_ladj
        part.inverse_and_ladj = lambda v, original=original: calls.append(1) or original(v)
    params = [p for p in guide.parameters() if p.requires_grad]
    pyro.set_rng_seed(1)
    fast = torch.autograd.grad(
        Trace_ELBO().differentiable_loss(_model, guide), params, allow_unused=True
    )
    iaf_calls = len(calls)
    posterior_cls = type(guide.get_posterior())
    # the reference: the same draw scored through the inverse (a fresh tensor is not "own")
    original_log_prob = posterior_cls.log_prob
    posterior_cls.log_prob = lambda self, v: self.fallback(v.clone())
    try:
        pyro.set_rng_seed(1)
        slow = torch.autograd.grad(
            Trace_ELBO().differentiable_loss(_model, guide), params, allow_unused=True
        )
    finally:
        posterior_cls.log_prob = original_log_prob
    assert iaf_calls == 0 and len(calls) > 0
    # the whitening map (center, whiten) is fixed at the Laplace start: no gradient either way
    assert sum(a is not None for a in fast) >= len(params) - 2
    for a, b in zip(fast, slow, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b)
