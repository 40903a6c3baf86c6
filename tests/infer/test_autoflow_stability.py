"""AutoFlow's set-up and training stay quiet, fast and stable: the Laplace start's progress bar
and vectorized Hessian."""

import pyro
import pyro.distributions as dist
import torch

from pyrogen.infer import AutoFlow


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
