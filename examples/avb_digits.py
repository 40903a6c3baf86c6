"""Adversarial Variational Bayes on binarized 8x8 digits: an implicit (noise-fed) guide trained
against a discriminator (``pyrogen.infer.AVB``), next to a Gaussian-guide VAE of the same size.

Data: scikit-learn's 8x8 digits binarized at pixel >= 8, 1437 train / 360 test (stratified,
seed 0). Model for both: ``z ~ N(0, I_8)``, ``x | z ~ Bernoulli(logits = MLP(z))`` with an
MLP 8-128-128-64 (ELU). Guides, both with MLPs of width 128 (ELU, ``pyrogen.nn.DenseNN``):

- VAE: ``q(z | x) = N(mu(x), diag sigma(x)^2)``, ``Trace_ELBO``;
- AVB: ``z = g(x, eps)``, ``eps ~ N(0, I_16)`` fed to the network with ``x`` (no density);
  discriminator ``T(z, x)``: MLP 72-256-256-1 (ELU); one discriminator step per ELBO step;
  with and without adaptive contrast (16 guide draws for the moments).

All runs: Adam lr 1e-3, batch 100, ``--epochs`` epochs (default 300), seed 0.

Held-out figures, nats per image, on the 360 test digits:

- test ELBO: exact-in-expectation for the VAE (100 draws per image); for AVB the estimate
  that trusts its discriminator, :math:`\\log p(x|z) - T`, averaged over 20 draws;
- test log p(x) by importance sampling with K=5000 (``pyrogen.infer.log_likelihood``), which
  does not trust the discriminator: the VAE uses its encoder as proposal; AVB uses a Student-t
  (5 degrees of freedom) proposal with the mean and sd of 512 guide draws per test image. The
  same moment-matched proposal is also applied to the VAE as a check on the estimator.

Run: ``python examples/avb_digits.py --threads 1 --seeds 0 1 2`` (the spread over seeds; one
seed, 0, by default; wall time on its results page), ``--smoke`` for a short check. Writes
``outputs/avb_digits.json`` (the record its results page renders).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pyro
import pyro.distributions as dist
import torch
from pyro.infer import SVI, Trace_ELBO
from pyro.optim import Adam
from torch import nn

from pyrogen.analysis.report import reduced_from_defaults, seed_spread, set_threads, write_results
from pyrogen.datasets import load_digits
from pyrogen.infer import AVB, log_likelihood
from pyrogen.nn import DenseNN

Z, NOISE, H = 8, 16, 128


class Decoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = DenseNN(Z, [H, H], 64, activation=nn.ELU)

    def model(self, x: torch.Tensor) -> None:
        pyro.module("decoder", self)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(Z), 1.0).to_event(1))
            pyro.sample("x", dist.Bernoulli(logits=self.net(z)).to_event(1), obs=x)


class GaussianEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = DenseNN(64, [H, H], 2 * Z, activation=nn.ELU)

    def guide(self, x: torch.Tensor) -> None:
        pyro.module("encoder", self)
        loc, log_scale = self.net(x).chunk(2, -1)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(loc, log_scale.exp()).to_event(1))


class ImplicitEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = DenseNN(64, [H, H], Z, context_dim=NOISE, activation=nn.ELU)

    def guide(self, x: torch.Tensor) -> None:
        pyro.module("encoder", self)
        eps = torch.randn(x.shape[0], NOISE, dtype=x.dtype, device=x.device)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Delta(self.net(x, eps), event_dim=1))


class Discriminator(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = DenseNN(Z, [256, 256], 1, context_dim=64, activation=nn.ELU)

    def forward(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.net(z, x)


def moment_proposal(guide, x: torch.Tensor, num: int = 512):
    """A Student-t guide with the mean and sd of ``num`` draws of ``guide`` per image."""
    with torch.no_grad():
        draws = torch.stack(
            [pyro.poutine.trace(guide).get_trace(x).nodes["z"]["value"] for _ in range(num)]
        )
    loc, scale = draws.mean(0), draws.std(0)

    def guide(x: torch.Tensor) -> None:
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.StudentT(5.0, loc, scale).to_event(1))

    return guide


def train(loss, decoder, guide, x_train, epochs, seed) -> float:
    svi = SVI(decoder.model, guide, Adam({"lr": 1e-3}), loss=loss)
    gen = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    for _ in range(epochs):
        for idx in torch.randperm(x_train.shape[0], generator=gen).split(100):
            svi.step(x_train[idx])
    return time.perf_counter() - start


def run_seed(args, seed: int, x_train, x_test) -> dict:
    """The three models trained with ``seed`` and scored: name -> figures."""
    n_test = x_test.shape[0]
    results = {}

    def log_lik(model, guide) -> tuple[float, float]:
        ll = log_likelihood(model, guide, x_test, num_samples=args.num_samples, batch_size=500)
        return float(ll.log_likelihood.mean()), float(ll.stderr.max())

    # the Gaussian-guide VAE
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    decoder, encoder = Decoder(), GaussianEncoder()
    seconds = train(Trace_ELBO(), decoder, encoder.guide, x_train, args.epochs, seed)
    with torch.no_grad():
        elbo = -Trace_ELBO(num_particles=100, vectorize_particles=True, max_plate_nesting=1).loss(
            decoder.model, encoder.guide, x_test
        )
    ll, se = log_lik(decoder.model, encoder.guide)
    ll_mm, se_mm = log_lik(decoder.model, moment_proposal(encoder.guide, x_test))
    results["VAE (Gaussian guide)"] = {
        "test_elbo": elbo / n_test, "test_log_likelihood": ll, "max_stderr": se,
        "test_log_likelihood_moment_proposal": ll_mm, "max_stderr_moment_proposal": se_mm,
        "seconds": seconds,
    }  # fmt: skip

    for name, contrast in (("AVB", False), ("AVB + adaptive contrast", True)):
        pyro.clear_param_store()
        pyro.set_rng_seed(seed)
        decoder, encoder = Decoder(), ImplicitEncoder()
        avb = AVB(Discriminator(), Adam({"lr": 1e-3}), adaptive_contrast=contrast)
        seconds = train(avb, decoder, encoder.guide, x_train, args.epochs, seed)
        elbo = -sum(avb.loss(decoder.model, encoder.guide, x_test) for _ in range(20)) / 20
        ll, se = log_lik(decoder.model, moment_proposal(encoder.guide, x_test))
        results[name] = {
            "test_elbo": elbo / n_test, "test_log_likelihood_moment_proposal": ll,
            "max_stderr_moment_proposal": se, "seconds": seconds,
        }  # fmt: skip

    return results


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--num-samples", type=int, default=5000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="one run per seed")
    parser.add_argument("--seed", type=int, default=None, help="one seed (as --seeds N)")
    parser.add_argument("--out", default="outputs")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args(argv)
    set_threads(args.threads)
    started = time.perf_counter()
    if args.smoke:
        args.epochs, args.num_samples = 2, 20
    torch.set_default_dtype(torch.float32)
    seeds = [args.seed] if args.seed is not None else args.seeds
    x_train, x_test, _, _ = load_digits(dtype=torch.float32)
    x_train, x_test = (x_train >= 8).float(), (x_test >= 8).float()
    per_seed = {seed: run_seed(args, seed, x_train, x_test) for seed in seeds}
    results = per_seed[seeds[0]]

    print(
        f"{'guide':<26} {'seed':>4} {'test ELBO':>10} {'log p(x), own':>14} "
        f"{'log p(x), moments':>18} {'seconds':>8}"
    )
    for seed, seed_results in per_seed.items():
        for name, r in seed_results.items():
            own = r.get("test_log_likelihood")
            own = f"{own:14.2f}" if own is not None else f"{'-':>14}"
            print(
                f"{name:<26} {seed:4d} {r['test_elbo']:>10.2f} {own} "
                f"{r['test_log_likelihood_moment_proposal']:>18.2f} {r['seconds']:>8.1f}"
            )
    print("(nats per test image; AVB's test ELBO trusts its discriminator, log p(x) does not)")
    quantities = ["test_elbo", "test_log_likelihood", "test_log_likelihood_moment_proposal"]
    spread = seed_spread(per_seed, quantities)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    reduced = "--smoke: 2 epochs, K = 20" if args.smoke else ""
    if not args.smoke:
        reduced = reduced_from_defaults(args, {"epochs": 300, "num_samples": 5000})
    write_results(
        out / "avb_digits.json",
        {"spread_over_seeds": spread, "per_seed": {str(s): r for s, r in per_seed.items()}},
        title="Adversarial Variational Bayes on binarized digits",
        script=__file__,
        argv=argv,
        description=__doc__.split("\nRun:")[0],
        started=started,
        reduced=reduced,
    )
    return results


if __name__ == "__main__":
    main()
