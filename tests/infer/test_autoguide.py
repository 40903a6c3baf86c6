"""AutoFlow: initialization, accuracy on a conjugate model, Pyro interfaces, persistence."""

import functools
import io

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import SVI, Predictive, Trace_ELBO
from pyro.infer.autoguide import init_to_value
from pyro.optim import ClippedAdam

from pyrogen import flows
from pyrogen.infer import AutoFlow

# Linear-Gaussian model: z ~ N(0, I_2), y_i ~ N(A z, 0.5^2 I_3), i = 1..4; posterior is Gaussian.
A = torch.tensor([[1.0, 0.5], [0.0, 1.0], [1.0, -1.0]])
Y = torch.tensor([[1.0, 0.2, 0.5], [0.8, 0.1, 0.9], [1.2, 0.4, 0.3], [0.9, 0.0, 0.7]])


def model(y):
    z = pyro.sample("z", dist.Normal(torch.zeros(2, dtype=y.dtype), 1.0).to_event(1))
    with pyro.plate("data", y.shape[0]):
        pyro.sample("y", dist.Normal(z @ A.T.to(y), 0.5).to_event(1), obs=y)


def exact_posterior(y):
    a = A.to(y)
    precision = torch.eye(2, dtype=y.dtype) + y.shape[0] * a.T @ a / 0.25
    cov = torch.linalg.inv(precision)
    mean = cov @ (a.T @ y.sum(0) / 0.25)
    return mean, cov


def train(guide, y, steps, lr=0.02, loss=None):
    """Adam with the learning rate decayed 10x over the run (the last iterate must converge)."""
    optim = ClippedAdam({"lr": lr, "lrd": 0.1 ** (1 / steps)})
    svi = SVI(model, guide, optim, loss or Trace_ELBO())
    for _ in range(steps):
        svi.step(y)


@pytest.mark.slow
@pytest.mark.parametrize("flow", ["iaf", "realnvp"])
def test_recovers_exact_posterior(flow):
    """The guide family contains the exact (Gaussian) posterior, so a low-noise fit (16
    vectorized particles, decaying learning rate) must land within 0.1 posterior sd of its mean
    and 10% of its sds. (With one particle the last iterate itself jitters by ~0.1-0.2 sd.)"""
    y = Y.to(torch.get_default_dtype())
    guide = AutoFlow(model, flow=flow)
    loss = Trace_ELBO(num_particles=16, vectorize_particles=True, max_plate_nesting=1)
    train(guide, y, 1500, loss=loss)
    mean, cov = exact_posterior(y)
    sd = cov.diagonal().sqrt()
    with torch.no_grad():
        draws = guide.get_posterior().sample((20000,))
    assert ((draws.mean(0) - mean).abs() / sd).max() < 0.1
    assert ((draws.std(0) / sd) - 1).abs().max() < 0.1
    corr = torch.corrcoef(draws.T)[0, 1]
    assert abs(corr - cov[0, 1] / (sd[0] * sd[1])) < 0.1


def test_guide_scores_its_own_sample_without_inverting_the_flow():
    """Trace_ELBO samples then scores: without the path gradient (which inverts by design), an
    IAF must not run its sequential inverse."""
    y = Y.to(torch.get_default_dtype())
    guide = AutoFlow(model, flow="iaf", path_gradient=False)
    guide(y)
    calls = []
    for layer in guide.flow:
        if hasattr(layer, "inverse_and_ladj"):
            original = layer.inverse_and_ladj
            layer.inverse_and_ladj = lambda v, original=original: calls.append(1) or original(v)
    train(guide, y, 3)
    assert calls == []


def test_initialization_honours_init_loc_fn_and_init_scale():
    y = Y.to(torch.get_default_dtype())
    init = torch.tensor([3.0, -2.0])
    guide = AutoFlow(
        model, init_loc_fn=init_to_value(values={"z": init}), init_scale=1e-3, init_laplace=False
    )
    guide(y)
    torch.testing.assert_close(guide.loc.detach(), init.to(y))
    q = guide.quantiles([0.5, 0.8413], y)["z"]  # median and +1 sd of a Gaussian
    torch.testing.assert_close(q[0], init.to(y), atol=1e-4, rtol=0)
    torch.testing.assert_close(q[1] - q[0], torch.full((2,), 1e-3, dtype=y.dtype), rtol=0.1, atol=0)
    torch.testing.assert_close(guide.median(y)["z"], init.to(y), atol=1e-4, rtol=0)


def test_laplace_start_is_the_exact_posterior_of_a_badly_scaled_regression(float64_only):
    """Posterior sd ~1e-3 under a prior sd of 10, correlation near -1: for a Gaussian posterior
    the Laplace start is exact, so the untrained guide already matches it."""
    x = torch.linspace(3950.0, 4010.0, 60)  # uncentred covariate, as in kilpisjarvi
    y = 0.5 + 0.01 * x + 0.05 * torch.randn(60, generator=torch.Generator().manual_seed(0))

    def regression():
        a = pyro.sample("a", dist.Normal(0.0, 10.0))
        b = pyro.sample("b", dist.Normal(0.0, 10.0))
        with pyro.plate("n", 60):
            pyro.sample("y", dist.Normal(a + b * x, 0.05), obs=y)

    design = torch.stack([torch.ones(60), x], -1)
    precision = torch.eye(2) / 100 + design.T @ design / 0.05**2
    cov = torch.linalg.inv(precision)
    mean = cov @ (design.T @ y / 0.05**2)
    guide = AutoFlow(regression)
    guide()
    with torch.no_grad():
        draws = guide.get_posterior().sample((20000,))
    sd = cov.diagonal().sqrt()
    assert ((draws.mean(0) - mean).abs() / sd).max() < 0.05
    assert ((draws.std(0) / sd) - 1).abs().max() < 0.05
    corr = torch.corrcoef(draws.T)[0, 1]
    assert abs(corr - cov[0, 1] / (sd[0] * sd[1])) < 1e-3
    # Without the Laplace start the guide begins at N(prior median, 0.1^2 I), far away. (A
    # guide of the same name takes its entries from the param store, as Pyro's do: clear it.)
    pyro.clear_param_store()
    plain = AutoFlow(regression, init_laplace=False)
    plain()
    assert ((plain.loc.detach() - mean).abs() / sd).max() > 100


@pytest.mark.parametrize("flow", ["maf", "iaf"])
def test_path_gradient_keeps_the_loss_and_vanishes_at_the_exact_posterior(flow):
    """With path_gradient=True the ELBO's value is unchanged and, at the exact posterior (the
    Laplace start is exact for this Gaussian model), the guide's gradient is exactly zero while
    the standard estimator's is not (Roeder, Wu, Duvenaud 2017)."""
    y = Y.to(torch.get_default_dtype())
    results = {}
    for path_gradient in (False, True):
        pyro.clear_param_store()
        pyro.set_rng_seed(0)
        guide = AutoFlow(model, flow=flow, path_gradient=path_gradient)
        guide(y)
        params = [p for p in guide.parameters() if p.requires_grad]
        pyro.set_rng_seed(1)
        loss = Trace_ELBO().differentiable_loss(model, guide, y)
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        largest = max(float(g.abs().max()) for g in grads if g is not None)
        results[path_gradient] = (loss.item(), largest)
    assert results[True][0] == pytest.approx(results[False][0], rel=1e-6)
    assert results[False][1] > 1e-2
    assert results[True][1] < 1e-4


@pytest.mark.parametrize("path_gradient", [True, False])
def test_vectorized_particles_and_predictive(path_gradient):
    y = Y.to(torch.get_default_dtype())
    guide = AutoFlow(model, path_gradient=path_gradient)
    loss = Trace_ELBO(num_particles=8, vectorize_particles=True, max_plate_nesting=1)
    train(guide, y, 5, loss=loss)
    samples = Predictive(model, guide=guide, num_samples=7)(y)
    # Predictive keeps a size-1 slot for the model's plate: (7, 1, 2), as for Pyro's autoguides.
    assert samples["z"].reshape(7, 2).shape == (7, 2) and samples["y"].shape[-3:] == (7, 4, 3)
    assert guide.sample_latent(y).shape == (2,)


def test_callable_flow_and_parameters_are_trained():
    y = Y.to(torch.get_default_dtype())
    guide = AutoFlow(model, flow=lambda dim: flows.realnvp(dim, num_layers=1))
    guide(y)
    before = [p.detach().clone() for p in guide.flow.parameters()]
    train(guide, y, 3)
    after = list(guide.flow.parameters())
    assert any(not torch.equal(b, a) for b, a in zip(before, after, strict=True))


def test_save_and_load_state_dict():
    y = Y.to(torch.get_default_dtype())
    guide = AutoFlow(model)
    train(guide, y, 20)
    buffer = io.BytesIO()
    torch.save(guide.state_dict(), buffer)
    buffer.seek(0)
    pyro.clear_param_store()
    other = AutoFlow(model)
    other(y)  # set up the prototype, then load
    other.load_state_dict(torch.load(buffer, weights_only=True))
    z = torch.randn(5, 2, dtype=y.dtype)
    torch.testing.assert_close(other.get_posterior().log_prob(z), guide.get_posterior().log_prob(z))


def test_discrete_latents_are_rejected():
    def discrete_model():
        pyro.sample("k", dist.Bernoulli(0.3))

    with pytest.raises(ValueError, match="discrete"):
        AutoFlow(discrete_model)()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"flow": "glow"}, "flow"),
        ({"init_scale": 0.0}, "init_scale"),
        ({"num_layers": 0}, "num_layers"),
        ({"log_scale_bound": 0.0}, "log_scale_bound"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AutoFlow(model, **kwargs)


def test_activation_must_be_a_module_class():
    with pytest.raises(TypeError, match="activation"):
        AutoFlow(model, activation=torch.tanh)
    for builder in (flows.maf, flows.iaf, flows.realnvp):
        with pytest.raises(TypeError, match="activation"):
            builder(3, activation="tanh")


@pytest.mark.parametrize("flow", ["maf", "iaf", "realnvp"])
def test_default_flow_has_tanh_units_and_bounded_log_scales(flow):
    """The defaults build tanh networks whose every layer's log-scale stays within 2 nats, even
    with large random weights and base draws far out in the tails (ReLU units with the
    builders' bound of 5 do not)."""
    y = Y.to(torch.get_default_dtype())
    model5 = _model_of_dim(5)
    torch.manual_seed(0)
    for kwargs, bound in [({}, 2.0), ({"activation": torch.nn.ReLU, "log_scale_bound": 5.0}, 5.0)]:
        guide = AutoFlow(model5, flow=flow, **kwargs)
        guide(y)
        activations = {type(m) for m in guide.flow.modules()}
        assert (torch.nn.Tanh in activations) == (bound == 2.0)
        with torch.no_grad():
            for p in guide.flow.parameters():
                p.normal_(0.0, 3.0)
            eps = 20 * torch.randn(2000, 5, dtype=y.dtype)
            largest = 0.0
            for layer in guide.flow:
                out = layer(eps)
                # per-coordinate log-scale: the layer's log-det over the coordinates it scales
                largest = max(largest, float(layer.log_abs_det_jacobian(eps, out).abs().max()))
                eps = out
        assert largest <= 5 * bound + 1e-9
        if bound == 5.0:
            assert largest > 5 * 2.0  # the looser setting does exceed the default's bound


def _model_of_dim(dim):
    def model_d(y):
        pyro.sample("z", dist.Normal(torch.zeros(dim, dtype=y.dtype), 1.0).to_event(1))

    return model_d


@pytest.mark.gpu
def test_runs_on_cuda(device):
    y = Y.to(device=device, dtype=torch.get_default_dtype())
    global A
    a_cpu, A = A, A.to(device)
    try:
        guide = AutoFlow(model)
        train(guide, y, 3)
        assert guide.loc.device.type == "cuda"
        assert all(p.device.type == "cuda" for p in guide.flow.parameters())
    finally:
        A = a_cpu


@pytest.mark.parametrize(
    "flow",
    [
        "nsf",
        "spline_coupling",
        "planar",
        functools.partial(flows.nsf, num_layers=2, num_bins=4),
        functools.partial(flows.spline_coupling, num_layers=1, hidden_dims=[8]),
    ],
    ids=str,
)
def test_any_builder_of_the_contract_trains(flow):
    y = Y.to(torch.get_default_dtype())
    guide = AutoFlow(model, flow=flow)
    guide(y)
    before = [p.detach().clone() for p in guide.flow.parameters()]
    train(guide, y, 3)
    assert any(not torch.equal(b, a) for b, a in zip(before, guide.flow.parameters(), strict=True))


def test_coupling_builder_on_one_latent_dimension_names_the_flow():
    with pytest.raises(ValueError, match="flow='realnvp' with 1 latent"):
        AutoFlow(_model_of_dim(1), flow="realnvp")(Y.to(torch.get_default_dtype()))


def test_param_store_round_trip_restores_every_entry_and_log_prob(tmp_path):
    """Pyro's way to restore a guide: ParamStore.save, then load into an empty store and call
    a freshly built guide. Every stored entry (flow included) comes back, and log_prob is equal."""
    y = Y.to(torch.get_default_dtype())
    guide = AutoFlow(model)
    train(guide, y, 20)
    store = pyro.get_param_store()
    saved = {k: v.detach().clone() for k, v in store.items()}
    path = tmp_path / "store.pt"
    store.save(path)
    z = torch.randn(5, 2, dtype=y.dtype)
    with torch.no_grad():
        expected = guide.get_posterior().log_prob(z)
    pyro.clear_param_store()
    store.load(path)
    other = AutoFlow(model)
    other(y)
    assert set(store.keys()) == set(saved) and len(saved) > 10
    for name, value in saved.items():
        assert torch.equal(store[name].detach(), value), name
    with torch.no_grad():
        torch.testing.assert_close(other.get_posterior().log_prob(z), expected, rtol=0, atol=0)
    # and training continues on the restored parameters (the flow included)
    train(other, y, 2)
    changed = [n for n in saved if "flow" in n and not torch.equal(store[n].detach(), saved[n])]
    assert changed
