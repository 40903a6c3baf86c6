"""Fitting a flow in both directions: forward KL (to samples) and reverse KL (to a density).

On each target density of ``pyrogen.datasets`` (banana, ring, Neal's funnel, a mixture of
well-separated Gaussians, the two-moons energy), every flow of ``--flows`` (MAF and IAF from
``pyrogen.flows``; add a builder to ``FLOWS`` to compare another) is fitted twice on the same
budget (``--steps`` Adam steps of ``--batch`` points each):

- forward KL: the flow is the likelihood of exact samples of the target
  (``pyrogen.infer.samples_model``; ``--num-data`` draws, minibatches of ``--batch``);
- reverse KL: the target's *unnormalized* log density is a latent site and the flow the guide
  (``pyrogen.infer.density_model`` + ``flow_guide``; ``--batch`` particles per step).

Each fit is judged with ``pyrogen.analysis.kl_diagnostics`` on fresh draws: forward KL
``KL(p || q)`` (on exact samples of p), reverse KL ``KL(q || p)`` (with the exact ``log Z``),
the Kish ESS fraction and PSIS k-hat of the weights ``p~ / q``, the error of ``log Z`` estimated
by importance sampling, and seconds per training step. On the mixture it also counts the
components that receive at least a quarter of their share of the flow's draws: reverse KL is
mode-seeking (it drops components), forward KL mass-covering. Seconds per step show the
sequential direction: MAF samples in ``D`` network passes per layer (slow for reverse KL), IAF
scores data in ``D`` passes (slow for forward KL); the funnel has ``--funnel-dim`` dimensions
(default 10) so that the cost is visible.

Run: ``python examples/two_directions.py --threads 1`` (one seed; ``--seeds 0 1 2`` for the
spread over seeds; the wall time is on its results page, ``docs/results/two_directions.rst``);
``--smoke`` runs in seconds. Writes ``two_directions.png`` (target and draws of every fit, first
seed) and ``two_directions.json`` (the record its results page renders: command line, date,
machine, versions, every number) into ``--out``.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import pyro
import torch
from pyro.infer import SVI, Trace_ELBO
from torch import nn

from pyrogen import datasets, flows
from pyrogen.analysis import kl_diagnostics
from pyrogen.analysis.report import reduced_from_defaults, seed_spread, set_threads, write_results
from pyrogen.infer import (
    density_model,
    empty_guide,
    flow_distribution,
    flow_guide,
    samples_model,
)

FLOWS = {
    "MAF": lambda d: flows.maf(d, num_layers=5, hidden_dims=[64, 64], activation=nn.Tanh),
    "IAF": lambda d: flows.iaf(d, num_layers=5, hidden_dims=[64, 64], activation=nn.Tanh),
}
DIRECTIONS = ("forward", "reverse")


def targets(funnel_dim: int) -> dict[str, datasets.Target]:
    return {
        "banana": datasets.Banana(),
        "ring": datasets.Ring(),
        "funnel": datasets.NealsFunnel(funnel_dim),
        "mixture": datasets.GaussianMixture(4, 3.0, 0.5),
        "two moons": datasets.TwoMoonsEnergy(),
    }


def fit(target, make_flow, direction: str, *, steps: int, batch: int, num_data: int, lr: float):
    """Train one flow; return it, seconds per step and whether the loss stayed finite."""
    pyro.clear_param_store()
    d = target.event_shape[0]
    flow = make_flow(d)
    if direction == "forward":
        model = samples_model(flow, target.sample((num_data,)), batch_size=batch)
        guide, loss = empty_guide, Trace_ELBO()
    else:
        model = density_model(target.unnormalized_log_prob, (d,))
        guide = flow_guide(flow, d)
        loss = Trace_ELBO(num_particles=batch, vectorize_particles=True)
    svi = SVI(model, guide, pyro.optim.ClippedAdam({"lr": lr, "lrd": 0.1 ** (1 / steps)}), loss)
    start, finite = time.perf_counter(), True
    for _ in range(steps):
        if not math.isfinite(svi.step()):
            finite = False
            break
    return flow, (time.perf_counter() - start) / steps, finite


def modes_covered(target, x: torch.Tensor) -> int | None:
    if not isinstance(target, datasets.GaussianMixture):
        return None
    near = torch.cdist(x, target.locs(x)) < 3 * target.scale  # within 3 sd of a component
    return int((near.sum(0) >= x.shape[0] / (4 * target.num_components)).sum())


def evaluate(target, flow, *, num_samples: int) -> tuple[dict, torch.Tensor]:
    d = target.event_shape[0]
    q = flow_distribution(flow, d)
    with torch.no_grad():
        diag = kl_diagnostics(
            q,
            target.unnormalized_log_prob,
            num_samples=num_samples,
            log_partition=target.log_partition,
            samples=target.sample((num_samples,)),
        )
        draws = q.sample((1000,))
    row = {
        "forward_kl": diag.forward_kl,
        "forward_kl_stderr": diag.forward_kl_stderr,
        "reverse_kl": diag.reverse_kl,
        "reverse_kl_stderr": diag.reverse_kl_stderr,
        "ess_fraction": diag.ess_fraction,
        "khat": diag.khat,
        "log_partition_error": diag.log_partition_estimate - target.log_partition,
        "log_partition_stderr": diag.log_partition_stderr,
        "modes_covered": modes_covered(target, draws),
    }
    return row, draws


def figure(results, draws, target_map, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(target_map)
    fits = [k for k in next(iter(draws.values()))]
    fig, axes = plt.subplots(
        len(names), 1 + len(fits), figsize=(3 * (1 + len(fits)), 3 * len(names)), squeeze=False
    )
    for row, name in zip(axes, names, strict=True):
        target = target_map[name]
        (x0, x1), (y0, y1) = target.plot_limits
        xs, ys = torch.linspace(x0, x1, 200), torch.linspace(y0, y1, 200)
        gx, gy = torch.meshgrid(xs, ys, indexing="ij")
        pts = torch.zeros(200, 200, target.event_shape[0])
        pts[..., 0], pts[..., 1] = gx, gy
        # the marginal of the first two coordinates: the 2-D funnel for Neal's funnel
        shown = datasets.NealsFunnel(2) if name == "funnel" else target
        dens = shown.log_prob(pts[..., :2]).exp().numpy()
        levels = dens.max() * np.array([0.02, 0.1, 0.3, 0.6, 0.9])
        labels = ("v", "x1") if name == "funnel" else ("x1", "x2")
        for k, ax in enumerate(row):
            ax.contour(gx.numpy(), gy.numpy(), dens, levels=levels, colors="k", linewidths=0.6)
            if k == 0:
                ax.imshow(dens.T, origin="lower", extent=(x0, x1, y0, y1), aspect="auto",
                          cmap="Greys")  # fmt: skip
                ax.set_title(f"{name}: target density")
            else:
                flow_name, direction = fits[k - 1]
                x = draws[name][(flow_name, direction)].numpy()
                color = "tab:blue" if direction == "forward" else "tab:red"
                ax.scatter(x[:, 0], x[:, 1], s=1, alpha=0.3, color=color, label="flow draws")
                r = results[name][f"{flow_name}/{direction}"]
                ax.set_title(
                    f"{flow_name}, {direction} KL\nKL(p||q)={r['forward_kl']:.2f} "
                    f"KL(q||p)={r['reverse_kl']:.2f}",
                    fontsize=9,
                )
            ax.set_xlim(x0, x1)
            ax.set_ylim(y0, y1)
            ax.set_xlabel(labels[0])
            ax.set_ylabel(labels[1])
    handles = [
        plt.Line2D([], [], color="k", lw=0.6, label="target density contours"),
        plt.Line2D([], [], ls="", marker="o", color="tab:blue", label="draws, forward KL fit"),
        plt.Line2D([], [], ls="", marker="o", color="tab:red", label="draws, reverse KL fit"),
    ]
    fig.legend(
        handles=handles, loc="upper center", ncol=3, frameon=False, bbox_to_anchor=(0.5, 0.975)
    )
    fig.suptitle(
        "Flows fitted by forward KL (to samples) and reverse KL (to the density): draws over the "
        "target, with both KLs (nats)"
    )
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    fig.savefig(path, dpi=80)
    plt.close(fig)


def fmt(value, spec: str) -> str:
    return (
        "-"
        if value is None or (isinstance(value, float) and math.isnan(value))
        else format(value, spec)
    )


def run_seed(args, seed: int, target_map: dict) -> tuple[dict, dict]:
    """Every flow fitted in both directions to every target with ``seed``: (target -> fit ->
    figures, target -> fit -> 1000 draws of the fitted flow)."""
    results: dict[str, dict] = {}
    draws: dict[str, dict] = {}
    for name, target in target_map.items():
        results[name], draws[name] = {}, {}
        for flow_name in args.flows:
            for direction in DIRECTIONS:
                pyro.set_rng_seed(seed)
                flow, seconds, finite = fit(
                    target, FLOWS[flow_name], direction, steps=args.steps, batch=args.batch,
                    num_data=args.num_data, lr=args.lr,
                )  # fmt: skip
                row, x = evaluate(target, flow, num_samples=args.num_eval)
                row.update(seconds_per_step=seconds, finite_loss=finite)
                results[name][f"{flow_name}/{direction}"] = row
                draws[name][(flow_name, direction)] = x
                print(
                    f"{name:10s} {flow_name:5s} {direction:9s} {seed:4d} "
                    f"{fmt(row['forward_kl'], '9.3f')} "
                    f"{fmt(row['reverse_kl'], '9.3f')} {fmt(row['ess_fraction'], '8.3f')} "
                    f"{fmt(row['khat'], '6.2f')} {fmt(row['log_partition_error'], '+9.3f')} "
                    f"{1000 * seconds:8.1f} {fmt(row['modes_covered'], '5d')}"
                    + ("" if finite else "  (non-finite loss: stopped)"),
                    flush=True,
                )
    return results, draws


DEFAULTS = {"steps": 1000, "batch": 256, "num_data": 5000, "num_eval": 5000, "funnel_dim": 10}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="seconds-long check")
    parser.add_argument("--steps", type=int, default=DEFAULTS["steps"])
    parser.add_argument("--batch", type=int, default=DEFAULTS["batch"])
    parser.add_argument("--num-data", type=int, default=DEFAULTS["num_data"])
    parser.add_argument("--num-eval", type=int, default=DEFAULTS["num_eval"])
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--funnel-dim", type=int, default=DEFAULTS["funnel_dim"])
    parser.add_argument("--flows", nargs="+", default=list(FLOWS), choices=list(FLOWS))
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="one run per seed")
    parser.add_argument("--seed", type=int, default=None, help="one seed (as --seeds N)")
    parser.add_argument("--out", type=Path, default=Path("outputs"))
    args = parser.parse_args(argv)
    if args.smoke:
        args.steps, args.batch, args.num_data, args.num_eval = 5, 32, 200, 200
        args.funnel_dim = min(args.funnel_dim, 3)
    set_threads(args.threads)
    started = time.perf_counter()
    torch.set_default_dtype(torch.float32)
    seeds = [args.seed] if args.seed is not None else args.seeds
    target_map = targets(args.funnel_dim)

    print(
        f"{'target':10s} {'flow':5s} {'direction':9s} {'seed':>4s} {'KL(p||q)':>9s} "
        f"{'KL(q||p)':>9s} {'ESS frac':>8s} {'k-hat':>6s} {'logZ err':>9s} {'ms/step':>8s} "
        f"{'modes':>5s}",
        flush=True,
    )
    per_seed, draws = {}, None
    for seed in seeds:
        per_seed[seed], seed_draws = run_seed(args, seed, target_map)
        draws = draws or seed_draws
    args.out.mkdir(parents=True, exist_ok=True)
    figure(per_seed[seeds[0]], draws, target_map, args.out / "two_directions.png")
    # the seconds per step are timings, not results of the seed: their spread is left out
    quantities = [
        "forward_kl", "reverse_kl", "ess_fraction", "khat", "log_partition_error",
        "modes_covered",
    ]  # fmt: skip
    settings = {k: getattr(args, k) for k in ("steps", "batch", "num_data", "num_eval", "lr",
                                               "funnel_dim", "flows")}  # fmt: skip
    record = {
        "settings": settings,
        "log_partition": {n: t.log_partition for n, t in target_map.items()},
        "spread_over_seeds": seed_spread(per_seed, quantities),
        "per_seed": {str(seed): r for seed, r in per_seed.items()},
    }
    if args.smoke:
        reduced = "--smoke: 5 steps of 32 points, 200 data and evaluation draws, 3-D funnel"
    else:
        reduced = reduced_from_defaults(args, DEFAULTS)
    return write_results(
        args.out / "two_directions.json",
        record,
        title="Flows fitted in both KL directions",
        script=__file__,
        argv=argv,
        description=__doc__.split("\nRun:")[0],
        started=started,
        reduced=reduced,
    )


if __name__ == "__main__":
    main()
