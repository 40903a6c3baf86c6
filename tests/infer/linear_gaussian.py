"""A linear-Gaussian latent-variable model with closed-form evidence and posterior.

z_n ~ N(0, 1), x_n | z_n ~ N(w z_n, 1): p(x_n) = N(0, w^2 + 1) and
q*(z_n | x_n) = N(w x_n / (w^2 + 1), 1 / (w^2 + 1)). ``w`` is a model parameter (theta), the
guide N(a x_n, s) has parameters a, s (phi).
"""

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions import constraints

W = 1.5


def model(x, subsample=None):
    w = pyro.param("w", torch.tensor(W))
    with pyro.plate("data", len(x), subsample=subsample) as idx:
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        pyro.sample("x", dist.Normal(w * z, 1.0), obs=x[idx])


def exact_params(w=W):
    return w / (w**2 + 1), (1 / (w**2 + 1)) ** 0.5


def guide(x, subsample=None, a=None, s=None):
    a0, s0 = exact_params()
    a = pyro.param("a", torch.tensor(a0 if a is None else a))
    s = pyro.param("s", torch.tensor(s0 if s is None else s), constraint=constraints.positive)
    with pyro.plate("data", len(x), subsample=subsample) as idx:
        pyro.sample("z", dist.Normal(a * x[idx], s))


def poor_guide(x, subsample=None):
    return guide(x, subsample, a=0.2, s=0.4)


def log_evidence(x, w=W):
    return dist.Normal(0.0, (w**2 + 1) ** 0.5).log_prob(x)


def params(*names):
    return [pyro.param(n).unconstrained() for n in names]


class GivenDraws(dist.Normal):
    """``N(loc, scale)`` whose reparameterized draws are read from ``source["draws"]``, shape
    ``(S, N)``, the next ``K`` rows at each call with batch shape ``(K, N)``: importance
    estimates on known, non-constant weights can then be recomputed by hand."""

    def __init__(self, loc, scale, source: dict, validate_args=None):
        super().__init__(loc, scale, validate_args=validate_args)
        self.source = source

    def expand(self, batch_shape, _instance=None):
        shape = torch.Size(batch_shape)
        return GivenDraws(self.loc.expand(shape), self.scale.expand(shape), self.source)

    def rsample(self, sample_shape=()):
        assert not sample_shape and self.batch_shape[-1] == self.source["draws"].shape[-1]
        k = self.batch_shape[0] if len(self.batch_shape) == 2 else 1
        start = self.source["used"]
        self.source["used"] = start + k
        rows = self.source["draws"][start : start + k]
        assert rows.shape[0] == k, "not enough given draws"
        return rows.reshape(self.batch_shape).to(self.loc.dtype)


def given_draws_guide(source: dict, a: float = 0.2, s: float = 0.4):
    """The guide N(a x_n, s) (not the posterior) drawing the given values."""

    def fixed_guide(x, subsample=None):
        with pyro.plate("data", len(x)):
            pyro.sample("z", GivenDraws(a * x, torch.tensor(s, dtype=x.dtype), source))

    return fixed_guide


def log_weights_by_hand(x, z, a: float = 0.2, s: float = 0.4, w: float = W):
    """log p(x_n, z_kn) - log q(z_kn | x_n) for draws ``z`` of shape ``(S, N)`` (numpy)."""
    import numpy as np
    from scipy.stats import norm

    x, z = np.asarray(x, dtype=float), np.asarray(z, dtype=float)
    return norm.logpdf(z) + norm.logpdf(x, w * z, 1.0) - norm.logpdf(z, a * x, s)
