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
