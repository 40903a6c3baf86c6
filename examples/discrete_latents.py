"""Discrete latents: gradient variance of Pyro's TraceGraph_ELBO vs Trace_ELBO, next to pyrogen.

A two-layer sigmoid belief net (Neal 1992) on binarized 8x8 digits (scikit-learn
``load_digits``, pixel >= 8, 1437/360 stratified split, seed 0):
``h2 ~ Bernoulli(0.5)^10``, ``h1 | h2 ~ Bernoulli(sigmoid(W2 h2 + b2))^20``,
``x | h1 ~ Bernoulli(sigmoid(W1 h1 + b1))^64``; the guide is ``q(h1 | x) q(h2 | h1)`` with
linear-sigmoid layers. All latents are discrete, so every gradient of the guide is a
score-function (REINFORCE) estimate.

``Trace_ELBO`` rewards each guide site with every term of its data point, including
``log p(x | h1)``. ``TraceGraph_ELBO`` uses the dependency graph: ``h2`` is sampled after ``h1``
in the guide and ``x`` depends only on ``h1`` in the model, so the 64-pixel term is left out
of ``h2``'s reward, and a decaying-average baseline can be subtracted. The script measures, at
the parameters reached by training, the variance of the guide-gradient estimate over 200 draws
on one fixed batch of 100 images, per guide layer, for:

- Pyro ``Trace_ELBO``; Pyro ``TraceGraph_ELBO`` without and with a decaying-average baseline;
- pyrogen ``IWAE(1, "iwae")`` (one particle: the ELBO with a plain score term) and
  ``AnnealedELBO(1.0)`` (closed-form Bernoulli KLs, score term for the reconstruction).

It then trains the same model with ``TraceGraph_ELBO`` (with baseline), ``Trace_ELBO`` and
pyrogen's ``IWAE(5, "iwae")`` for the same number of epochs and scores each on the test set
with ``pyrogen.infer.log_likelihood`` (K = 1000 importance draws, nats per image): pyrogen's
objectives and estimators run on the same model and guide as Pyro's.

Run: ``python examples/discrete_latents.py --threads 1 --seeds 0 1 2`` (the spread over seeds;
one seed, 0, by default; wall time on its results page), ``--smoke`` for a seconds-long check.
Writes ``outputs/discrete_latents.json`` (the record its results page renders).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pyro
import pyro.distributions as dist
import torch
from pyro.infer import SVI, Trace_ELBO, TraceGraph_ELBO
from pyro.optim import Adam
from torch import nn

from pyrogen.analysis.report import seed_spread, set_threads, write_results
from pyrogen.datasets import load_digits
from pyrogen.infer import IWAE, AnnealedELBO, log_likelihood

X_DIM, H1, H2 = 64, 20, 10


class SigmoidBeliefNet(nn.Module):
    """Two-layer sigmoid belief net with a guide q(h1|x) q(h2|h1)."""

    def __init__(self, *, baseline: bool = False) -> None:
        super().__init__()
        self.top = nn.Linear(H2, H1)
        self.bottom = nn.Linear(H1, X_DIM)
        self.q1 = nn.Linear(X_DIM, H1)
        self.q2 = nn.Linear(H1, H2)
        self.baseline = baseline

    def model(self, x: torch.Tensor) -> None:
        pyro.module("sbn", self)
        with pyro.plate("data", x.shape[0]):
            h2 = pyro.sample("h2", dist.Bernoulli(x.new_full((H2,), 0.5)).to_event(1))
            h1 = pyro.sample("h1", dist.Bernoulli(logits=self.top(h2)).to_event(1))
            pyro.sample("x", dist.Bernoulli(logits=self.bottom(h1)).to_event(1), obs=x)

    def guide(self, x: torch.Tensor) -> None:
        pyro.module("sbn", self)
        infer = {"baseline": {"use_decaying_avg_baseline": True}} if self.baseline else {}
        with pyro.plate("data", x.shape[0]):
            h1 = pyro.sample("h1", dist.Bernoulli(logits=self.q1(x)).to_event(1), infer=infer)
            pyro.sample("h2", dist.Bernoulli(logits=self.q2(h1)).to_event(1), infer=infer)


def gradient_variance(net: SigmoidBeliefNet, loss, x: torch.Tensor, draws: int) -> dict:
    """Total variance (sum over parameters) of each guide layer's gradient estimate."""
    layers = {"q(h1|x)": list(net.q1.parameters()), "q(h2|h1)": list(net.q2.parameters())}
    samples = {k: [] for k in layers}
    for _ in range(draws):
        net.zero_grad()
        loss.loss_and_grads(net.model, net.guide, x)
        for k, params in layers.items():
            samples[k].append(torch.cat([p.grad.reshape(-1) for p in params]))
    return {k: float(torch.stack(v).var(0).sum()) for k, v in samples.items()}


def train(net: SigmoidBeliefNet, loss, x: torch.Tensor, *, epochs: int) -> float:
    pyro.clear_param_store()
    svi = SVI(net.model, net.guide, Adam({"lr": 3e-3}), loss)
    start = time.perf_counter()
    for epoch in range(epochs):
        perm = torch.randperm(x.shape[0])
        # full batches only: the decaying-average baselines keep one value per batch element
        for i in range(0, x.shape[0] - 99, 100):
            value = svi.step(x[perm[i : i + 100]])
            if not torch.isfinite(torch.tensor(value)):
                raise FloatingPointError(f"non-finite loss {value} in epoch {epoch}")
    return time.perf_counter() - start


def run_seed(seed: int, x_train, x_test, *, epochs: int, draws: int, eval_samples: int) -> dict:
    """Gradient variances at parameters trained with ``seed``, and the model trained with each
    objective and scored: the seed's figures."""
    pyro.set_rng_seed(seed)
    # 1. gradient variance at trained parameters (trained with TraceGraph_ELBO + baseline)
    net = SigmoidBeliefNet(baseline=True).to(torch.float32)
    train(net, TraceGraph_ELBO(), x_train, epochs=epochs)
    batch = x_train[:100]
    estimators = {
        "Pyro Trace_ELBO": (False, Trace_ELBO()),
        "Pyro TraceGraph_ELBO": (False, TraceGraph_ELBO()),
        "Pyro TraceGraph_ELBO + baseline": (True, TraceGraph_ELBO()),
        "pyrogen IWAE(1, 'iwae')": (False, IWAE(1, "iwae")),
        "pyrogen AnnealedELBO(1.0)": (False, AnnealedELBO(1.0)),
    }
    variances = {}
    print(f"{'guide-gradient variance (sum over params)':42s} {'q(h1|x)':>12s} {'q(h2|h1)':>12s}")
    for name, (baseline, loss) in estimators.items():
        net.baseline = baseline
        variances[name] = gradient_variance(net, loss, batch, draws)
        v = variances[name]
        print(f"{name:42s} {v['q(h1|x)']:12.4g} {v['q(h2|h1)']:12.4g}", flush=True)
    ref = variances["Pyro Trace_ELBO"]
    ratios = {
        name: {k: ref[k] / v[k] for k in v}
        for name, v in variances.items()
        if name != "Pyro Trace_ELBO"
    }
    tg = ratios["Pyro TraceGraph_ELBO + baseline"]
    print(
        f"variance reduction of TraceGraph_ELBO + baseline over Trace_ELBO: "
        f"q(h1|x) {tg['q(h1|x)']:.1f}x, q(h2|h1) {tg['q(h2|h1)']:.1f}x",
        flush=True,
    )

    # 2. the same model trained with Pyro's and pyrogen's objectives, scored by pyrogen
    trained = {}
    objectives = {
        "Pyro TraceGraph_ELBO + baseline": (True, TraceGraph_ELBO),
        "Pyro Trace_ELBO": (False, Trace_ELBO),
        "pyrogen IWAE(5, 'iwae')": (False, lambda: IWAE(5, "iwae")),
    }
    print(f"{'trained with':42s} {'test log p(x)':>14s} {'seconds':>8s}")
    for name, (baseline, make) in objectives.items():
        pyro.set_rng_seed(seed)
        net = SigmoidBeliefNet(baseline=baseline).to(torch.float32)
        seconds = train(net, make(), x_train, epochs=epochs)
        with torch.no_grad():
            r = log_likelihood(net.model, net.guide, x_test, num_samples=eval_samples)
        trained[name] = {
            "test_log_likelihood": float(r.log_likelihood.mean()),
            "max_stderr": float(r.stderr.max()),
            "seconds": seconds,
        }
        print(f"{name:42s} {trained[name]['test_log_likelihood']:14.2f} {seconds:8.1f}")

    out = {
        "gradient_variance": variances,
        "variance_ratio_vs_trace_elbo": ratios,
        "trained": trained,
        "epochs": epochs,
    }
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny budget, for the test suite")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (100)")
    parser.add_argument("--out", type=Path, default=Path("outputs"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="one run per seed")
    parser.add_argument("--seed", type=int, default=None, help="one seed (as --seeds N)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args(argv)
    set_threads(args.threads)
    started = time.perf_counter()
    epochs = args.epochs or (2 if args.smoke else 100)
    draws = 10 if args.smoke else 200
    eval_samples = 20 if args.smoke else 1000

    x_train, x_test, _, _ = load_digits(dtype=torch.float32)
    x_train, x_test = (x_train >= 8).float(), (x_test >= 8).float()
    if args.smoke:
        x_train, x_test = x_train[:200], x_test[:50]

    seeds = [args.seed] if args.seed is not None else args.seeds
    per_seed = {}
    for seed in seeds:
        per_seed[seed] = run_seed(
            seed, x_train, x_test, epochs=epochs, draws=draws, eval_samples=eval_samples
        )
    out = per_seed[seeds[0]]
    spread = seed_spread(per_seed, ["q(h1|x)", "q(h2|h1)", "test_log_likelihood"])
    if args.smoke:
        reduced = "--smoke: 200 training and 50 test images, 2 epochs, 10 gradient draws, K = 20"
    else:
        reduced = f"--epochs {epochs} (full mode: 100)" if epochs != 100 else ""
    args.out.mkdir(parents=True, exist_ok=True)
    write_results(
        args.out / "discrete_latents.json",
        {"spread_over_seeds": spread, "per_seed": {str(s): r for s, r in per_seed.items()}},
        title="Discrete latents: gradient variance of guide estimators",
        script=__file__,
        argv=argv,
        description=__doc__.split("\nRun:")[0],
        started=started,
        reduced=reduced,
    )
    return out


if __name__ == "__main__":
    main()
