"""Short reprs, seeded and recorded RBM fits, GAN.sample, and quiet progress bars."""

import pyro
import pyro.distributions as dist
import torch
from pyro.infer import Predictive
from pyro.optim import Adam
from torch import nn

from pyrogen.analysis import psis_khat, to_inference_data
from pyrogen.distributions import BernoulliRBM
from pyrogen.distributions.annealing import annealed_importance_sampling
from pyrogen.infer import GAN, fit_rbm, log_likelihood


def _rbm():
    torch.manual_seed(0)
    return BernoulliRBM(0.3 * torch.randn(6, 4), 0.2 * torch.randn(6), 0.2 * torch.randn(4))


def test_ais_estimate_repr_is_short_and_has_the_estimate():
    est = annealed_importance_sampling(_rbm(), num_chains=100, num_betas=30, progress=False)
    text = repr(est)
    assert len(text) < 200
    assert f"{est.log_partition.item():.4f}" in text and "num_chains=100" in text
    assert "(100,)" in text


def _normal_model(x):
    z = pyro.sample("z", dist.Normal(0.0, 1.0))
    with pyro.plate("data", len(x)):
        pyro.sample("x", dist.Normal(z, 1.0), obs=x)


def _normal_guide(x):
    pyro.sample("z", dist.Normal(0.3, 0.8))


def test_psis_diagnostic_repr_is_short():
    pyro.set_rng_seed(0)
    diag = psis_khat(_normal_model, _normal_guide, torch.tensor([0.5, 1.0]), num_samples=500)
    text = repr(diag)
    assert len(text) < 200
    assert f"{diag.khat:.3f}" in text and "num_samples=500" in text and "(500,)" in text


def _binary_data():
    torch.manual_seed(1)
    return torch.bernoulli(torch.full((40, 6), 0.3))


def test_fit_rbm_same_seed_same_fit_and_history():
    data = _binary_data()
    a = fit_rbm(data, 3, epochs=4, batch_size=10, lr=0.05, seed=7, progress=False)
    torch.manual_seed(123)  # a different global state must not matter
    b = fit_rbm(data, 3, epochs=4, batch_size=10, lr=0.05, seed=7, progress=False)
    c = fit_rbm(data, 3, epochs=4, batch_size=10, lr=0.05, seed=8, progress=False)
    assert torch.equal(a.weight, b.weight) and torch.equal(a.visible_bias, b.visible_bias)
    assert torch.equal(a.hidden_bias, b.hidden_bias)
    assert not torch.equal(a.weight, c.weight)
    assert len(a.loss_history) == 4 and a.loss_history == b.loss_history
    assert all(isinstance(v, float) for v in a.loss_history)


def _generator(num, shift=1.0):
    with pyro.plate("samples", num):
        z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
    return z + shift


def test_gan_sample_shapes_and_matches_predictive():
    critic = nn.Sequential(nn.Linear(2, 1))
    gan = GAN(_generator, critic, Adam({"lr": 0.01}), Adam({"lr": 0.01}))
    draws = gan.sample(7)
    assert draws.shape == (7, 2) and not draws.requires_grad
    pyro.set_rng_seed(3)
    many = gan.sample(4000, shift=-2.0)  # kwargs reach the generator
    assert many.shape == (4000, 2)
    assert torch.allclose(many.mean(0), torch.full((2,), -2.0), atol=0.1)
    pred = Predictive(_generator, num_samples=1, return_sites=["_RETURN"])
    assert pred(5)["_RETURN"][0].shape == gan.sample(5).shape


def test_progress_false_is_silent(capsys):
    data = _binary_data()
    fit_rbm(data, 3, epochs=2, batch_size=20, progress=False)
    annealed_importance_sampling(_rbm(), num_chains=10, num_betas=20, progress=False)
    log_likelihood(
        _normal_model,
        _normal_guide,
        torch.tensor([0.5]),
        num_samples=20,
        batch_size=5,
        progress=False,
    )
    to_inference_data(
        _normal_model, _normal_guide, torch.tensor([0.5]), num_samples=5, progress=False
    )
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""


def test_progress_true_draws_a_bar(capsys):
    annealed_importance_sampling(_rbm(), num_chains=10, num_betas=20, progress=True)
    assert "AIS" in capsys.readouterr().err
