"""Importance-weighted log-likelihood: exactness, error bars, memory batching, errors."""

import math

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import scipy.special
import torch

from pyrogen.infer import log_likelihood
from tests.infer.linear_gaussian import (
    given_draws_guide,
    guide,
    log_evidence,
    log_weights_by_hand,
    model,
    poor_guide,
)


def test_exact_guide_gives_exact_log_likelihood_per_point(rtol):
    x = torch.linspace(-2, 2, 7)
    r = log_likelihood(model, guide, x, num_samples=50, batch_size=20)
    assert r.log_likelihood.shape == (7,)
    assert r.data_plates == ("data",)
    assert torch.allclose(r.log_likelihood, log_evidence(x))
    assert (r.stderr < 1e4 * rtol).all()


def test_poor_guide_within_standard_error_and_batching_is_consistent():
    x = torch.linspace(-2, 2, 5)
    r = log_likelihood(model, poor_guide, x, num_samples=20000, batch_size=3000)
    z = (r.log_likelihood - log_evidence(x)) / r.stderr
    assert (z.abs() < 4).all(), z
    assert (r.stderr > 0).all() and (r.stderr < 0.05).all()
    # a small-sample estimate is biased low (Jensen) and has a larger error bar
    small = torch.stack(
        [log_likelihood(model, poor_guide, x, num_samples=2).log_likelihood for _ in range(300)]
    )
    assert (small.mean(0) < log_evidence(x) - 0.01).all()


def test_two_plates_give_a_matrix_and_joint_latents_a_scalar():
    def model2(x):
        with pyro.plate("rows", x.shape[0], dim=-2), pyro.plate("cols", x.shape[1], dim=-1):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            pyro.sample("x", dist.Normal(z, 1.0), obs=x)

    def guide2(x):
        with pyro.plate("rows", x.shape[0], dim=-2), pyro.plate("cols", x.shape[1], dim=-1):
            pyro.sample("z", dist.Normal(x / 2, 0.5**0.5))

    x = torch.randn(3, 4)
    r = log_likelihood(model2, guide2, x, num_samples=4)
    assert r.log_likelihood.shape == (3, 4) and r.data_plates == ("rows", "cols")
    assert torch.allclose(r.log_likelihood, dist.Normal(0.0, 2**0.5).log_prob(x))

    def model3(x):
        mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        with pyro.plate("data", len(x)):
            pyro.sample("x", dist.Normal(mu, 1.0), obs=x)

    def guide3(x):
        n = len(x)
        pyro.sample("mu", dist.Normal(x.sum() / (n + 1), (1 / (n + 1)) ** 0.5))

    x = torch.randn(6)
    r = log_likelihood(model3, guide3, x, num_samples=8)
    exact = dist.MultivariateNormal(torch.zeros(6), torch.eye(6) + 1).log_prob(x)
    assert r.log_likelihood.shape == () and r.data_plates == ()
    assert torch.allclose(r.log_likelihood, exact)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_samples": 0}, "num_samples"),
        ({"batch_size": 0}, "batch_size"),
        ({"num_samples": 2.5}, "num_samples"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        log_likelihood(model, guide, torch.zeros(3), **kwargs)


@pytest.mark.parametrize("batch_size", [2, 3, 500])
def test_estimate_and_stderr_on_given_draws(batch_size, rtol):
    """Non-exact guide, non-constant weights, combined over batches of draws: the estimate
    log (1/S) sum_k w_k and the delta-method error sqrt((mean w^2 / mean(w)^2 - 1) / S),
    recomputed from the known draws."""
    x = torch.linspace(-2, 2, 4)
    num = 7
    draws = torch.randn(num, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    source = {"draws": draws, "used": 0}
    r = log_likelihood(
        model, given_draws_guide(source), x, num_samples=num, batch_size=batch_size,
        max_plate_nesting=1,
    )  # fmt: skip
    assert source["used"] == num
    lw = log_weights_by_hand(x, draws)
    w = np.exp(lw - lw.max(0))
    expected = scipy.special.logsumexp(lw, 0) - math.log(num)
    stderr = np.sqrt((np.mean(w**2, 0) / np.mean(w, 0) ** 2 - 1) / num)
    assert stderr.min() > 0.05
    np.testing.assert_allclose(r.log_likelihood.numpy(), expected, rtol=rtol)
    # the error subtracts 1 from a ratio of moments: 1e-8 in float64, the rounding in float32
    np.testing.assert_allclose(r.stderr.numpy(), stderr, rtol=max(1e-8, rtol))
