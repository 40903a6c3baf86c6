r"""Time pyrogen's objectives against Pyro's, side by side in one process.

Case: one ``loss_and_grads`` call (forward and backward, gradients zeroed between calls) of a
Bernoulli VAE with the MNIST example's sizes (784-200-200-20 MLP encoder, 20-200-200-784 MLP
decoder) on a batch of 100 random binary images.

- K particles: pyrogen ``IWAE(K, "iwae")`` and ``IWAE(K, "dreg")`` vs Pyro
  ``RenyiELBO(alpha=0, num_particles=K, vectorize_particles=True)`` (the same bound when every
  site is in the data plate) for K = 5 and 50;
- one particle: pyrogen ``AnnealedELBO(1.0)`` (closed-form Gaussian KL) vs Pyro ``Trace_ELBO``;
- IAF guide (the example's ``IAF encoder``: two conditional IAF layers after the Gaussian):
  ``IWAE(50, "dreg")`` against ``IWAE(50, "iwae")``, timed round robin (one step of each in
  turn, median of ``--repeats``), as the ratio ``dreg / iwae``. DReG's guide gradient needs
  :math:`\partial \log q / \partial z` at the draw, which pyrogen takes from the base noise
  (:func:`pyrogen.infer.pathwise.log_prob_grad`), not from the IAF's sequential inverse.

Prints the median time (``torch.utils.benchmark``, ``blocked_autorange``) and the ratio
``pyro / pyrogen`` (> 1: pyrogen is faster). ``--device cuda`` runs on a GPU.

Run: ``python benchmarks/bench_objectives.py [--device cuda] [--quick] [--repeats 9]
[--iaf-only]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import pyro
import pyro.distributions as dist
import torch
from pyro.infer import RenyiELBO, Trace_ELBO
from torch import nn
from torch.utils import benchmark

from pyrogen import flows
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


class IAFVAE(VAE):
    """The MNIST example's ``IAF encoder`` variant: the Gaussian encoder followed by two
    conditional IAF layers (MADE [200]) taking the encoder's last hidden layer as context."""

    def __init__(self) -> None:
        super().__init__()
        self.iaf = flows.iaf(Z_DIM, num_layers=2, hidden_dims=[HIDDEN], context_dim=HIDDEN)
        with torch.no_grad():  # off the identity, as after training
            for p in self.iaf.parameters():
                p.add_(0.01 * torch.randn_like(p))

    def guide(self, x):
        pyro.module("vae", self)
        h = self.encoder[:-1](x)
        loc, raw = self.encoder[-1](h).chunk(2, -1)
        base = dist.Normal(loc, nn.functional.softplus(raw) + 1e-4).to_event(1)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.TransformedDistribution(base, [self.iaf.condition(h)]))


def step_fn(loss, vae: VAE, x: torch.Tensor):
    """One ``loss_and_grads`` call with the gradients zeroed first."""

    def step():
        vae.zero_grad()
        loss.loss_and_grads(vae.model, vae.guide, x)

    return step


def iaf_case(device: str = "cpu", K: int = 50) -> list[dict]:
    """The IAF-guide case, ``{"name", "fn_pyrogen", "fn_peer", "peer"}`` with
    ``fn_pyrogen`` one ``IWAE(K, "dreg")`` step and ``fn_peer`` one ``IWAE(K, "iwae")`` step
    (the reference is pyrogen's own standard-gradient step; the target is a ratio <= 1.5)."""
    pyro.set_rng_seed(0)
    vae = IAFVAE().to(device)
    x = torch.bernoulli(torch.full((100, X_DIM), 0.3, device=device))
    return [
        {
            "name": f"IAF guide: IWAE({K}, 'dreg') vs IWAE({K}, 'iwae')",
            "fn_pyrogen": step_fn(IWAE(K, "dreg"), vae, x),
            "fn_peer": step_fn(IWAE(K, "iwae"), vae, x),
            "peer": "pyrogen IWAE 'iwae'",
        }
    ]


def cases(quick: bool = False, device: str = "cpu") -> list[dict]:
    """The registry entry (see :mod:`benchmarks.harness`): one step of ``IWAE(K, "dreg")``
    with the IAF guide (target: at most 1.5x the time of ``IWAE(K, "iwae")``, the reference
    row); ``quick`` uses K = 2."""
    (iaf,) = iaf_case(device, K=2 if quick else 50)
    return [
        {
            "case": iaf["name"],
            "library": "pyrogen dreg",
            "fn": iaf["fn_pyrogen"],
            "target": 1 / 1.5,
        },
        {"case": iaf["name"], "library": "pyrogen iwae", "fn": iaf["fn_peer"], "ours": False},
    ]


def round_robin(fns: dict, repeats: int) -> dict[str, float]:
    """Median milliseconds of each callable, timed one call of each in turn per repeat."""
    for fn in fns.values():
        fn()  # warm-up (and plate-nesting guess)
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - start)
    return {k: statistics.median(v) * 1e3 for k, v in times.items()}


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
    parser.add_argument("--repeats", type=int, default=9, help="IAF case: round-robin repeats")
    parser.add_argument("--iaf-only", action="store_true", help="only the IAF-guide case")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats = 1
    device = torch.device(args.device)
    min_run_time = 0.05 if args.quick else 2.0
    pyro.set_rng_seed(0)
    vae = VAE().to(device)
    x = torch.bernoulli(torch.full((100, X_DIM), 0.3, device=device))
    pyro.clear_param_store()

    cases = []
    for K in () if args.iaf_only else (5, 50):
        renyi = RenyiELBO(alpha=0.0, num_particles=K, vectorize_particles=True)
        t_pyro = timed(renyi, vae, x, min_run_time)
        for estimator in ("iwae", "dreg"):
            name = f"IWAE({K}, {estimator!r}) vs RenyiELBO(0, {K})"
            cases.append((name, timed(IWAE(K, estimator), vae, x, min_run_time), t_pyro))
    if not args.iaf_only:
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
    (iaf,) = iaf_case(str(device))
    ms = round_robin({"dreg": iaf["fn_pyrogen"], "iwae": iaf["fn_peer"]}, args.repeats)
    print(
        f"{iaf['name']} (round robin, median of {args.repeats}): dreg {ms['dreg']:.1f} ms, "
        f"iwae {ms['iwae']:.1f} ms, ratio dreg/iwae {ms['dreg'] / ms['iwae']:.2f}x"
    )
    return [*cases, (iaf["name"], ms["dreg"], ms["iwae"])]


if __name__ == "__main__":
    main()
