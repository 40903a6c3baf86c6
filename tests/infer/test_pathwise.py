"""The path derivative of flow guides without the sequential inverse: the gradient of log q at
its own draw, and the STL/DReG gradients of IWAE, against the reference that differentiates
log q at the detached draw (the sequential inverse)."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.distributions.util import scale_and_mask
from torch import nn

from pyrogen import flows
from pyrogen.infer import IWAE
from pyrogen.infer.importance import (
    importance_log_weights,
    replay_model_detached,
    trace_particles,
)
from pyrogen.infer.pathwise import log_prob_grad, path_log_prob
from pyrogen.transforms.base import Conditional

D, C = 4, 3


def perturb(module: nn.Module, std: float = 0.3) -> None:
    """Move every parameter off its initialization (identity flows would hide bugs)."""
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn_like(p) * std)


def flow_case(name: str):
    if name == "iaf":
        return flows.iaf(D, num_layers=2, hidden_dims=[9])
    if name == "iaf-context-tanh":
        return flows.iaf(D, num_layers=2, hidden_dims=[9], context_dim=C, activation=nn.Tanh)
    if name == "iaf-two-hidden":
        return flows.iaf(D, num_layers=3, hidden_dims=[11, 7], context_dim=C)
    if name == "spline-iaf":
        return flows.nsf(D, num_layers=2, hidden_dims=[10], num_bins=4, bound=2.0, cheap="forward")
    raise KeyError(name)


CASES = ["iaf", "iaf-context-tanh", "iaf-two-hidden", "spline-iaf"]


def reference_tolerance(case: str, rtol: float) -> float:
    """The reference's parameter gradient runs through the layers' inverse; a spline's inverse
    is a quadratic root, whose rounding costs about one and a half digits."""
    return rtol * 30 if case == "spline-iaf" else rtol


def flow_distribution(flow, batch: tuple[int, ...]):
    loc = torch.randn(*batch, D)
    base = dist.Normal(loc, torch.rand(*batch, D) + 0.5).to_event(1)
    if isinstance(flow, Conditional):
        return dist.TransformedDistribution(base, [flow.condition(torch.randn(*batch, C))])
    return dist.TransformedDistribution(base, [flow])


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize(("sample_shape", "batch"), [((), ()), ((5,), (3,)), ((2, 3), (4,))])
def test_log_prob_grad_equals_gradient_through_the_inverse(case, sample_shape, batch, rtol):
    flow = flow_case(case)
    perturb(flow)
    q = flow_distribution(flow, batch)
    z = q.rsample(sample_shape)
    score = log_prob_grad(q, z)
    leaf = z.detach().clone().requires_grad_()  # a fresh tensor: the inverse is computed
    (expected,) = torch.autograd.grad(q.log_prob(leaf).sum(), leaf)
    assert score.shape == z.shape
    # float32: the reference's inverse of a spline loses the digits reference_tolerance allows
    # for (float64 keeps them within rtol)
    tol = rtol if z.dtype == torch.float64 else reference_tolerance(case, rtol)
    torch.testing.assert_close(score, expected, rtol=tol, atol=tol)


def test_log_prob_grad_is_none_without_a_cheap_forward_autoregressive_layer():
    normal = dist.Normal(torch.zeros(D), 1.0).to_event(1)
    assert log_prob_grad(normal, normal.sample()) is None
    maf = dist.TransformedDistribution(normal, [flows.maf(D, num_layers=2)])
    assert log_prob_grad(maf, maf.sample()) is None


@pytest.mark.parametrize("case", ["iaf-context-tanh", "spline-iaf"])
def test_path_log_prob_value_and_gradient(case, rtol):
    flow = flow_case(case)
    perturb(flow)
    q = flow_distribution(flow, (3,))
    params = list(flow.parameters())
    z = q.rsample((2,))
    fast = path_log_prob(q, z)
    stopped = q.log_prob(z.detach())  # the reference: parameters' own gradient taken out
    reference = q.log_prob(z) - (stopped - stopped.detach())
    torch.testing.assert_close(fast, reference.detach(), rtol=rtol, atol=rtol)
    got = torch.autograd.grad(
        fast.sum(), params, retain_graph=True, allow_unused=True, materialize_grads=True
    )
    want = torch.autograd.grad(reference.sum(), params, allow_unused=True, materialize_grads=True)
    tol = reference_tolerance(case, rtol)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=tol, atol=tol)


class FlowVAE(nn.Module):
    """A small VAE with an IAF encoder, a point-estimated global offset and a subsampled plate:
    every part of the DReG surrogate is exercised."""

    def __init__(self, case: str) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(6, 8), nn.Tanh())
        self.head = nn.Linear(8, 2 * D)
        self.decoder = nn.Sequential(nn.Linear(D, 8), nn.Tanh(), nn.Linear(8, 6))
        context = case != "spline-iaf"
        self.flow = (
            flows.iaf(D, num_layers=2, hidden_dims=[9], context_dim=8, activation=nn.Tanh)
            if context
            else flow_case(case)
        )
        self.context = context
        perturb(self)

    def model(self, x, idx):
        pyro.module("vae", self)
        g = pyro.sample("g", dist.Normal(0.0, 1.0))
        with pyro.plate("data", 12, subsample=idx):
            z = pyro.sample("z", dist.Normal(torch.zeros(D), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(self.decoder(z) + g, 1.0).to_event(1), obs=x[idx])

    def guide(self, x, idx):
        pyro.module("vae", self)
        pyro.sample("g", dist.Delta(pyro.param("g_loc", torch.tensor(0.3))))
        h = self.encoder(x[idx])
        loc, raw = self.head(h).chunk(2, -1)
        base = dist.Normal(loc, nn.functional.softplus(raw) + 0.1).to_event(1)
        flow = self.flow.condition(h) if self.context else self.flow
        with pyro.plate("data", 12, subsample=idx):
            pyro.sample("z", dist.TransformedDistribution(base, [flow]))


def reference_surrogate(vae, estimator, K, args):
    """The estimator's surrogate computed the slow way: ``log q`` at the detached draw (the
    sequential inverse) and, for DReG, a second model pass with the draws detached."""
    model_trace, guide_trace = trace_particles(
        vae.model, vae.guide, args, {}, num_particles=K, max_plate_nesting=1
    )
    for site in guide_trace.nodes.values():
        if site["type"] == "sample" and not site["is_observed"]:
            stopped = site["fn"].log_prob(site["value"].detach())
            stopped = scale_and_mask(stopped, site["scale"], site["mask"])
            site["log_prob"] = site["log_prob"] - (stopped - stopped.detach())
    lw = importance_log_weights(model_trace, guide_trace, particle_dim=-2)
    w = torch.softmax(lw.log_weights.detach(), 0)
    if estimator == "stl":
        surrogate = (w * lw.log_weights).sum()
    else:
        detached = replay_model_detached(
            vae.model, guide_trace, args, {}, num_particles=K, max_plate_nesting=1,
            keep=lw.global_sites,
        )  # fmt: skip
        log_p = importance_log_weights(detached, guide_trace, particle_dim=-2).log_joint
        surrogate = (w**2 * lw.log_weights).sum() + ((w - w**2) * log_p).sum()
    return -(surrogate * lw.scale + lw.global_log_weight)


@pytest.mark.parametrize("estimator", ["dreg", "stl"])
@pytest.mark.parametrize("case", ["iaf-context-tanh", "spline-iaf"])
def test_iwae_gradients_equal_the_slow_reference(estimator, case, rtol):
    vae = FlowVAE(case)
    x, idx = torch.randn(12, 6), torch.tensor([0, 3, 4, 7, 10])
    K = 5
    pyro.set_rng_seed(1)
    loss = IWAE(K, estimator, max_plate_nesting=1).differentiable_loss(vae.model, vae.guide, x, idx)
    params = [p.unconstrained() for p in pyro.get_param_store().values()]
    got = torch.autograd.grad(loss, params)
    pyro.set_rng_seed(1)
    want = torch.autograd.grad(reference_surrogate(vae, estimator, K, (x, idx)), params)
    assert any(float(g.abs().max()) > 1e-3 for g in want)
    tol = reference_tolerance(case, rtol)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=tol, atol=tol)
