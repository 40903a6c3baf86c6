"""AutoFlow's set-up and training stay quiet, fast and stable: the Laplace start's progress bar
and vectorized Hessian; the Laplace start's whitening; plain Adam's steps move the flow by the
readout scale times the unscaled move."""

import math
import warnings

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO

from pyrogen.infer import AutoFlow
from pyrogen.transforms import Autoregressive
from tests.same_draws import in_float64


def logistic_regression():
    """Bayesian logistic regression with 6 latents (5 weights, a bias) on simulated data."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(80, 5, generator=g).to(torch.get_default_dtype())
    y = torch.bernoulli(torch.sigmoid(x @ torch.linspace(-1.0, 1.0, 5).to(x)), generator=g)

    def model():
        w = pyro.sample("w", dist.Normal(x.new_zeros(5), 1.0).to_event(1))
        b = pyro.sample("b", dist.Normal(x.new_zeros(()), 1.0))
        with pyro.plate("data", 80):
            pyro.sample("y", dist.Bernoulli(logits=x @ w + b), obs=y)

    return model


def test_laplace_start_progress_bar_is_optional_and_changes_nothing(capfd):
    """progress=False prints nothing; progress=True shows the stages on stderr; both start at
    the same Laplace approximation, and its Hessian is the log joint's (autograd, row by row)."""
    model = logistic_regression()
    starts = {}
    for progress in (False, True):
        pyro.clear_param_store()
        pyro.set_rng_seed(0)  # init_to_median draws from the prior
        guide = AutoFlow(model, progress=progress)
        guide()
        out, err = capfd.readouterr()
        starts[progress] = guide.center.detach(), guide.whiten.detach()
        if progress:
            assert "AutoFlow Laplace start" in err
        else:
            assert (out, err) == ("", "")
    torch.testing.assert_close(starts[False], starts[True], rtol=0, atol=0)
    center, whiten = starts[False]
    assert not torch.equal(whiten, torch.eye(6, dtype=whiten.dtype))  # the Laplace start won
    grad, hessian = guide._grad_and_hessian(center, (), {})
    v = center.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(guide._log_joint(v, (), {}), v, create_graph=True)
    rows = torch.stack([torch.autograd.grad(g[i], v, retain_graph=True)[0] for i in range(6)])
    torch.testing.assert_close(grad, g.detach())
    torch.testing.assert_close(hessian, rows)
    # at the (Newton-polished) mode the Cholesky factor is that of the inverse negative Hessian
    torch.testing.assert_close(whiten @ whiten.T, torch.linalg.inv(-hessian), rtol=1e-4, atol=1e-6)


def _elementwise_maps(guide, eps):
    """Per autoregressive layer, its elementwise map's ``(shift, log_scale)`` when the flow is
    fed ``eps`` (the MADE sees the layer's input for an IAF, its output for a MAF): ``(N, D)``."""
    out, x = [], eps
    for layer in guide.flow:
        y = layer(x)
        if isinstance(layer, Autoregressive):
            params = layer.conditioner(x if layer.cheap == "forward" else y).movedim(-2, -1)
            y_map, log_scale = layer.transform.forward(x, params)
            torch.testing.assert_close(y_map, y)
            out.append((y - x * log_scale.exp(), log_scale))
        x = y
    return out


@pytest.mark.parametrize("flow", ["iaf", "maf"])
def test_one_plain_adam_step_moves_the_flow_by_the_readout_scale_times_the_unscaled_move(flow):
    """Adam's first update moves every parameter by exactly ``lr`` (its gradient-normalized
    step), the same raw step whatever the readout scale ``c`` (a positive factor does not
    change the gradient's sign). A shift or log-scale that sums ``H`` hidden units through a
    zero-initialized layer then moves by up to ``lr * H / 2`` nats unscaled, and by ``c`` times
    that scaled: ``1 / sqrt(H)`` for the default, ``1 / H`` for ``output_scale="width"``,
    which keeps the maps within about ``lr``, the move of the affine part's location."""
    model = logistic_regression()
    moves = {}
    for scale in ("none", "sqrt", "width"):
        pyro.clear_param_store()
        pyro.set_rng_seed(0)
        moves[scale], width = _first_step_moves(model, flow, scale)
    lr = 1e-2
    assert max(moves["width"]) <= 1.5 * lr and min(moves["width"]) > 0  # the step reached it
    assert max(moves["none"]) > 3 * lr  # unscaled: the sum over H units moves several lr
    for scale, power in (("sqrt", 0.5), ("width", 1.0)):
        ratio = torch.tensor(moves[scale]) / torch.tensor(moves["none"])
        expected = torch.full_like(ratio, width**-power)
        # the first layer sees the same input before and after: only the log-scale's soft
        # bound bends its move (by under 1%); a later layer also sees its input move, through
        # the (scaled) weights of the step, a second-order change of a few percent
        torch.testing.assert_close(ratio[:2], expected[:2], rtol=0.01, atol=0)
        torch.testing.assert_close(ratio, expected, rtol=0.1, atol=0)


def test_output_scale_default_and_the_scaled_output_spelling():
    """The default scales each MADE's readout by ``1 / sqrt(H)``; ``scaled_output=True`` and
    ``False`` are ``output_scale="width"`` and ``"none"``; contradictions and unknown values
    are errors naming the argument."""
    model = logistic_regression()
    scales = {}
    for kwargs in (
        {},
        {"output_scale": "width"},
        {"scaled_output": True},
        {"scaled_output": False},
    ):
        pyro.clear_param_store()
        guide = AutoFlow(model, progress=False, init_laplace=False, **kwargs)
        guide()
        layer = guide.flow[0]
        scales[tuple(kwargs.items())] = getattr(layer.transform, "scale", 1.0)
        width = layer.conditioner.output.weight.shape[-1]
    assert scales[()] == pytest.approx(width**-0.5)
    assert scales[(("output_scale", "width"),)] == scales[(("scaled_output", True),)]
    assert scales[(("scaled_output", True),)] == pytest.approx(1.0 / width)
    assert scales[(("scaled_output", False),)] == 1.0
    with pytest.raises(ValueError, match="output_scale"):
        AutoFlow(model, output_scale="half")
    with pytest.raises(ValueError, match="contradicts output_scale"):
        AutoFlow(model, output_scale="sqrt", scaled_output=True)
    with pytest.raises(TypeError, match="scaled_output"):
        AutoFlow(model, scaled_output="yes")


def eight_schools(centered: bool = False):
    """The eight schools (Rubin 1981). Non-centred: a finite mode far out in ``tau`` (near 29,
    against a posterior mean near 3.6), so the Laplace Gaussian is a poor fit there. Centred:
    a funnel."""
    y = torch.tensor([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
    sigma = torch.tensor([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])

    def model():
        mu = pyro.sample("mu", dist.Normal(0.0, 5.0))
        tau = pyro.sample("tau", dist.HalfCauchy(5.0))
        with pyro.plate("school", 8):
            if centered:
                theta = pyro.sample("theta", dist.Normal(mu, tau))
            else:
                theta = mu + tau * pyro.sample("theta_trans", dist.Normal(0.0, 1.0))
            pyro.sample("y", dist.Normal(theta, sigma), obs=y)

    return model


def test_laplace_start_whitens_even_where_a_narrow_gaussian_has_the_higher_elbo():
    """From seed 0's initial location the narrow ``N(init, 0.1^2 I)`` has a higher ELBO than the
    Laplace Gaussian at the eight schools' mode, but the guide still starts at the Laplace
    approximation and learns in its whitened coordinates: ``whiten whiten^T = (-H)^{-1}`` at a
    point where the log joint's gradient vanishes. The case is the float64 one under every
    ``--dtype`` (float32 draws start elsewhere, where the narrow Gaussian is not ahead)."""
    with in_float64():
        model = eight_schools()
        pyro.clear_param_store()
        pyro.set_rng_seed(0)
        guide = AutoFlow(model, progress=False)
        guide()
        center, whiten = guide.center.detach(), guide.whiten.detach()
        eye = torch.eye(10, dtype=center.dtype)
        initial = guide._gaussian_elbo(guide._init_loc(), 0.1 * eye, (), {})
        laplace = guide._gaussian_elbo(center, whiten, (), {})
        grad, hessian = guide._grad_and_hessian(center, (), {})
    assert initial > laplace  # the case the start must not fall back on
    assert grad.abs().max() < 1e-3
    torch.testing.assert_close(whiten @ whiten.T, torch.linalg.inv(-hessian), rtol=1e-4, atol=1e-6)
    assert float(center[1].exp()) > 10  # the mode's tau: far from the posterior bulk
    torch.testing.assert_close(guide.loc.detach(), torch.zeros_like(center))


def _first_step_moves(model, flow, output_scale):
    """The largest change of each layer's shift and log-scale over one Adam step at lr 0.01,
    and the MADEs' last hidden width."""
    guide = AutoFlow(model, flow=flow, progress=False, output_scale=output_scale)
    guide()
    lr = 1e-2
    svi = SVI(model, guide, pyro.optim.Adam({"lr": lr}), Trace_ELBO())
    eps = torch.randn(500, 6)
    with torch.no_grad():
        before = _elementwise_maps(guide, eps)
        loc = guide.loc.detach().clone()
    svi.step()
    with torch.no_grad():
        after = _elementwise_maps(guide, eps)
        assert (guide.loc - loc).abs().max() <= lr * (1 + 1e-3)
    width = guide.flow[0].conditioner.output.weight.shape[-1]
    assert width >= 32  # wide enough that lr * width / 2 exceeds 3 lr
    moves = []
    for (shift0, log_scale0), (shift1, log_scale1) in zip(before, after, strict=True):
        moves += [
            float((log_scale1 - log_scale0).abs().max()),
            float((shift1 - shift0).abs().max()),
        ]
    return moves, width


def test_a_failed_cholesky_means_no_laplace_start(monkeypatch):
    """Where the Laplace covariance does not factor (float32 rounding of an ill-conditioned
    (-H)^{-1}), the guide starts unwhitened instead of raising."""
    model = eight_schools()  # has a finite mode: a start would whiten
    calls = []

    def failing(a, *args, **kwargs):
        calls.append(a.shape)
        return torch.zeros_like(a), torch.tensor(1, dtype=torch.int32)

    monkeypatch.setattr(torch.linalg, "cholesky_ex", failing)
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    guide = AutoFlow(model, progress=False)
    guide()
    assert calls == [(10, 10)]
    torch.testing.assert_close(guide.whiten.detach(), torch.eye(10, dtype=guide.loc.dtype))


def test_the_laplace_search_does_not_warn_about_the_points_it_tries():
    """Centred eight schools in float32, seed 76: the L-BFGS search reaches points where the
    log joint is NaN and gives up (no start); Pyro's NaN warnings from those points do not
    reach the user, and the first step's loss is finite."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    try:
        model = eight_schools(centered=True)
        pyro.clear_param_store()
        pyro.set_rng_seed(76)
        guide = AutoFlow(model, progress=False)
        svi = SVI(model, guide, pyro.optim.Adam({"lr": 0.01}), Trace_ELBO())
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            guide()  # the set-up, with the Laplace search
            # the search gave up: the guide starts unwhitened
            torch.testing.assert_close(guide.whiten.detach(), torch.eye(10))
            loss = svi.step()
    finally:
        torch.set_default_dtype(old)
    assert math.isfinite(loss)
