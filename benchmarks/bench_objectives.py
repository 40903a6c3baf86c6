"""Time pyrogen's objectives against Pyro's, side by side in one process.

Case: one ``loss_and_grads`` call (forward and backward, gradients zeroed between calls) of a
Bernoulli VAE with the MNIST example's sizes (784-200-200-20 MLP encoder, 20-200-200-784 MLP
decoder) on a batch of 100 random binary images.

- K particles: pyrogen ``IWAE(K, "iwae")`` and ``IWAE(K, "dreg")`` vs Pyro
  ``RenyiELBO(alpha=0, num_particles=K, vectorize_particles=True)`` (the same bound when every
  site is in the data plate) for K = 5 and 50;
- one particle: pyrogen ``AnnealedELBO(1.0)`` (closed-form Gaussian KL) vs Pyro ``Trace_ELBO``.

Prints the median time (``torch.utils.benchmark``, ``blocked_autorange``) and the ratio
``pyro / pyrogen`` (> 1: pyrogen is faster). ``--device cuda`` runs on a GPU.

Run: ``python benchmarks/bench_objectives.py [--device cuda] [--quick]``.
"""

from __future__ import annotations

import argparse

import pyro
import pyro.distributions as dist
import torch
from pyro.infer import RenyiELBO, Trace_ELBO
from torch import nn
from torch.utils import benchmark

from pyrogen.infer import IWAE, AnnealedELBO

X_DIM, Z_DIM, HIDDEN = 784, 20, 200


class VAE(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Linear(X_DIM, HIDDEN),
            nn.Tanh(),
            nn.Linear(HIDDEN, HIDDEN),
            nn.Tanh(),
            nn.Linear(HIDDEN, 2 * Z_DIM),
        )
        self.decoder = nn.Sequential(
            nn.Linear(Z_DIM, HIDDEN),
            nn.Tanh(),
            nn.Linear(HIDDEN, HIDDEN),
            nn.Tanh(),
            nn.Linear(HIDDEN, X_DIM),
        )

    def model(self, x):
        pyro.module("vae", self)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(Z_DIM), 1.0).to_event(1))
            pyro.sample("x", dist.Bernoulli(logits=self.decoder(z)).to_event(1), obs=x)

    def guide(self, x):
        pyro.module("vae", self)
        loc, raw = self.encoder(x).chunk(2, -1)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(loc, nn.functional.softplus(raw) + 1e-4).to_event(1))


def timed(loss, vae: VAE, x: torch.Tensor, min_run_time: float) -> float:
    def step():
        vae.zero_grad()
        loss.loss_and_grads(vae.model, vae.guide, x)

    step()  # warm-up (and plate-nesting guess)
    t = benchmark.Timer("step()", globals={"step": step})
    return t.blocked_autorange(min_run_time=min_run_time).median * 1e3


def main(argv: list[str] | None = None) -> list[tuple[str, float, float]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true", help="short timings (test suite)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    min_run_time = 0.05 if args.quick else 2.0
    pyro.set_rng_seed(0)
    vae = VAE().to(device)
    x = torch.bernoulli(torch.full((100, X_DIM), 0.3, device=device))
    pyro.clear_param_store()

    cases = []
    for K in (5, 50):
        renyi = RenyiELBO(alpha=0.0, num_particles=K, vectorize_particles=True)
        t_pyro = timed(renyi, vae, x, min_run_time)
        for estimator in ("iwae", "dreg"):
            name = f"IWAE({K}, {estimator!r}) vs RenyiELBO(0, {K})"
            cases.append((name, timed(IWAE(K, estimator), vae, x, min_run_time), t_pyro))
    cases.append(
        (
            "AnnealedELBO(1.0) vs Trace_ELBO",
            timed(AnnealedELBO(1.0), vae, x, min_run_time),
            timed(Trace_ELBO(), vae, x, min_run_time),
        )
    )
    print(
        f"{'case (' + str(device) + ')':48s} {'pyrogen ms':>10s} {'Pyro ms':>9s} {'Pyro/ours':>9s}"
    )
    for name, ours, theirs in cases:
        print(f"{name:48s} {ours:10.2f} {theirs:9.2f} {theirs / ours:8.2f}x")
    return cases


if __name__ == "__main__":
    main()
