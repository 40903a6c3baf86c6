"""Bayesian logistic regression on the breast-cancer data: AutoFlow against AutoMultivariateNormal.

Model: scikit-learn's ``load_breast_cancer`` (569 tumours, 30 features, standardized), weights and
bias with ``N(0, 1)`` priors, Bernoulli likelihood with logits ``X w + b`` (31 latents). Both
guides are fitted with what a Pyro user reaches for: ``Trace_ELBO()``, one particle, plain
``pyro.optim.Adam({"lr": lr})`` for each of ``--lrs`` (default 0.01), ``--steps`` steps
(default 5000). The script prints, per learning rate, seed and guide: the final ELBO (mean of
the last 100 losses, nats), the largest loss after step 500 (a diverging fit shows here), PSIS
k-hat (``pyrogen.analysis.psis_khat``, 4000 draws) and the importance-sampling log-evidence
(nats); then the largest differences of the posterior means and sds of the 31 latents between
the two guides, in units of AutoMultivariateNormal's sd.

Run: ``python examples/logistic_regression.py [--seeds 0 1 2] [--lrs 0.01 0.001] [--steps 5000]
[--float64] [--output-scale sqrt|width|none] [--threads N] [--out outputs]`` (``--seed`` and
``--lr`` name one of each; ``--output-scale`` sets ``AutoFlow(output_scale=...)``, default its
default ``"sqrt"``);
``--smoke`` for a seconds-long check. Writes ``outputs/logistic_regression.json``: the first
run's figures at the top level and every run under ``"runs"``.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import pyro
import pyro.distributions as dist
import torch
from pyro.infer import SVI, Predictive, Trace_ELBO
from pyro.infer.autoguide import AutoMultivariateNormal

from pyrogen.analysis import psis_khat
from pyrogen.analysis.report import set_threads, write_results
from pyrogen.infer import AutoFlow

GUIDES = {"AutoFlow": AutoFlow, "AutoMultivariateNormal": AutoMultivariateNormal}


def load_data(dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Standardized features ``(569, 30)`` and 0/1 labels ``(569,)``."""
    from sklearn.datasets import load_breast_cancer

    x, y = load_breast_cancer(return_X_y=True)
    x = (x - x.mean(0)) / x.std(0)
    return torch.tensor(x, dtype=dtype), torch.tensor(y, dtype=dtype)


def make_model(x: torch.Tensor, y: torch.Tensor):
    zero = x.new_zeros(())

    def model():
        w = pyro.sample("w", dist.Normal(zero, 1.0).expand([x.shape[1]]).to_event(1))
        b = pyro.sample("b", dist.Normal(zero, 1.0))
        with pyro.plate("data", len(y)):
            # vectorized draws reach the model as w (S, 30), or (S, 1, 30) with a slot for
            # this plate (importance sampling): the logits get the plate's dim at -1
            logits = w @ x.T
            if logits.dim() == 3:
                logits = logits.squeeze(-2)
            logits = logits + b.reshape(*logits.shape[:-1], 1)
            pyro.sample("y", dist.Bernoulli(logits=logits), obs=y)

    return model


def fit(model, guide, *, steps: int, lr: float) -> list[float]:
    svi = SVI(model, guide, pyro.optim.Adam({"lr": lr}), Trace_ELBO())
    losses = []
    for step in range(steps):
        losses.append(svi.step())
        if not math.isfinite(losses[-1]):
            raise FloatingPointError(f"non-finite loss {losses[-1]} at step {step}")
    return losses


def moments(model, guide, draws: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior means and sds of the 31 latents (weights, then bias) from guide draws."""
    with torch.no_grad():
        s = Predictive(model, guide=guide, num_samples=draws, return_sites=["w", "b"])()
    flat = torch.cat([s["w"].reshape(draws, -1), s["b"].reshape(draws, 1)], -1)
    return flat.mean(0), flat.std(0)


def run(model, *, seed: int, lr: float, steps: int, draws: int, output_scale: str = "sqrt") -> dict:
    """Fit both guides with plain Adam at ``lr`` from ``seed``; their figures and comparison."""
    results: dict[str, dict] = {}
    moment = {}
    for name, cls in GUIDES.items():
        pyro.clear_param_store()
        pyro.set_rng_seed(seed)
        guide = cls(model, output_scale=output_scale) if cls is AutoFlow else cls(model)
        t0 = time.perf_counter()
        losses = fit(model, guide, steps=steps, lr=lr)
        seconds = time.perf_counter() - t0
        diag = psis_khat(model, guide, num_samples=draws)
        moment[name] = moments(model, guide, draws)
        tail = losses[-100:]
        results[name] = {
            "elbo": -sum(tail) / len(tail),
            "max_loss_after_500_steps": max(losses[500:], default=max(losses)),
            "khat": diag.khat,
            "log_evidence": diag.log_evidence,
            "seconds": seconds,
        }
        r = results[name]
        print(
            f"{lr:7.0e} {seed:4d} {name:24s} {r['elbo']:9.2f} "
            f"{r['max_loss_after_500_steps']:9.2f} {r['khat']:6.2f} {r['log_evidence']:9.2f} "
            f"{seconds:8.1f}",
            flush=True,
        )
    (mean_f, sd_f), (mean_m, sd_m) = moment["AutoFlow"], moment["AutoMultivariateNormal"]
    comparison = {
        "max_abs_mean_difference_in_mvn_sd": float(((mean_f - mean_m) / sd_m).abs().max()),
        "max_abs_sd_ratio_minus_1": float((sd_f / sd_m - 1).abs().max()),
    }
    print(
        f"{lr:7.0e} {seed:4d} AutoFlow vs AutoMultivariateNormal: max |mean difference| "
        f"{comparison['max_abs_mean_difference_in_mvn_sd']:.3f} sd, max |sd ratio - 1| "
        f"{comparison['max_abs_sd_ratio_minus_1']:.3f}",
        flush=True,
    )
    return {"seed": seed, "lr": lr, "guides": results, "comparison": comparison}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="few steps and draws (test suite)")
    parser.add_argument("--steps", type=int, default=None, help="SVI steps (default 5000)")
    parser.add_argument("--lrs", type=float, nargs="+", default=[0.01], help="Adam learning rates")
    parser.add_argument("--lr", type=float, default=None, help="one Adam learning rate")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--seed", type=int, default=None, help="one seed")
    parser.add_argument("--float64", action="store_true", help="fit in float64")
    parser.add_argument(
        "--output-scale",
        choices=["sqrt", "width", "none"],
        default="sqrt",
        help="AutoFlow's output_scale (default sqrt)",
    )
    parser.add_argument(
        "--scaled-output", action="store_true", help="the earlier spelling of --output-scale width"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--out", type=Path, default=Path("outputs"))
    args = parser.parse_args(argv)
    set_threads(args.threads)
    started = time.perf_counter()
    steps = args.steps or (30 if args.smoke else 5000)
    draws = 200 if args.smoke else 4000
    if args.scaled_output:
        args.output_scale = "width"
    lrs = [args.lr] if args.lr is not None else args.lrs
    seeds = [args.seed] if args.seed is not None else args.seeds
    dtype = torch.float64 if args.float64 else torch.float32
    old_dtype = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # the guides' parameters follow it
    x, y = load_data(dtype)
    model = make_model(x, y)
    print(
        f"{'lr':>7s} {'seed':>4s} {'guide':24s} {'ELBO':>9s} {'max loss':>9s} {'k-hat':>6s} "
        f"{'log Z':>9s} {'seconds':>8s}"
    )
    try:
        runs = [
            run(model, seed=seed, lr=lr, steps=steps, draws=draws, output_scale=args.output_scale)
            for lr in lrs
            for seed in seeds
        ]
    finally:
        torch.set_default_dtype(old_dtype)
    record = {
        **runs[0],
        "steps": steps,
        "dtype": str(dtype),
        "output_scale": args.output_scale,
        "runs": runs,
    }
    write_results(
        args.out / "logistic_regression.json",
        record,
        title="Bayesian logistic regression: AutoFlow and AutoMultivariateNormal with plain Adam",
        script=__file__,
        argv=argv,
        description=__doc__.split("\nRun:")[0],
        started=started,
    )
    return record


if __name__ == "__main__":
    main()
