"""Cost of one SVI step: pyrogen's ``AutoFlow`` (constructor defaults) against Pyro's
``AutoMultivariateNormal`` on Bayesian logistic regressions with ``D`` latents.

Model: ``D - 1`` standard-normal features and a bias, ``N(0, 1)`` priors, 500 simulated
Bernoulli observations. Every guide is built first (AutoFlow's Laplace start is timed on its
own), then the SVI steps (``Trace_ELBO``, one particle, ``Adam`` at lr 1e-3) of all cases are
timed round-robin, one step of every case in turn, and the median of ``--repeats`` is reported
in milliseconds with the ratio ``AutoFlow / AutoMultivariateNormal`` at each ``D``.

Run: ``python benchmarks/bench_autoflow.py [--dims 10 50 200] [--repeats 30] [--threads 1]
[--out docs/results/bench_autoflow.json] [--smoke]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import pyro
import pyro.distributions as dist
import torch
from pyro.infer import SVI, Trace_ELBO
from pyro.infer.autoguide import AutoMultivariateNormal

from pyrogen.analysis.report import set_threads, write_results
from pyrogen.infer import AutoFlow

OUT = Path(__file__).resolve().parents[1] / "docs" / "results" / "bench_autoflow.json"
GUIDES = {"AutoFlow": AutoFlow, "AutoMultivariateNormal": AutoMultivariateNormal}


def logistic_regression(dim: int, num_data: int = 500, seed: int = 0):
    """A Bayesian logistic regression with ``dim`` latents (``dim - 1`` weights and a bias)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(num_data, dim - 1, generator=g)
    w = torch.randn(dim - 1, generator=g) / (dim - 1) ** 0.5
    y = torch.bernoulli(torch.sigmoid(x @ w), generator=g)

    def model():
        weight = pyro.sample("w", dist.Normal(0.0, 1.0).expand([dim - 1]).to_event(1))
        bias = pyro.sample("b", dist.Normal(0.0, 1.0))
        with pyro.plate("data", num_data):
            pyro.sample("y", dist.Bernoulli(logits=x @ weight + bias), obs=y)

    return model


def make_step(guide_name: str, dim: int):
    """``(svi.step, set-up seconds)`` for a guide built on the ``dim``-latent model. Each case
    has its own parameter names (a subclass named after the case), so cases share the store."""
    base = GUIDES[guide_name]
    cls = type(f"{guide_name}_D{dim}", (base,), {})
    model = logistic_regression(dim)
    guide = cls(model, progress=False) if base is AutoFlow else cls(model)
    start = time.perf_counter()
    guide()  # builds the guide (AutoFlow: the Laplace start)
    setup = time.perf_counter() - start
    svi = SVI(model, guide, pyro.optim.Adam({"lr": 1e-3}), Trace_ELBO())
    svi.step()  # warm-up
    return svi.step, setup


def cases(quick: bool = False, device: str = "cpu") -> list[dict]:
    """The registry entry (see :mod:`benchmarks.harness`): per ``D`` in 10, 50, 200 (3 when
    ``quick``), one SVI step of ``pyrogen AutoFlow`` (target: at most 5x the step of Pyro's
    ``AutoMultivariateNormal``, i.e. a speed-up of at least 0.2) and of ``Pyro AutoMVN``; the
    note gives AutoFlow's set-up (Laplace start) in seconds. CPU only (the models are built
    on the CPU)."""
    if device != "cpu":
        return []
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    rows = []
    for dim in [3] if quick else [10, 50, 200]:
        name = f"AutoFlow SVI step D={dim}"
        flow_step, setup = make_step("AutoFlow", dim)
        mvn_step, _ = make_step("AutoMultivariateNormal", dim)
        note = f"AutoFlow set-up (Laplace start) at D={dim}: {setup:.2f} s"
        rows.append(
            {
                "case": name,
                "library": "pyrogen AutoFlow",
                "fn": flow_step,
                "target": 0.2,
                "note": note,
            }
        )
        rows.append({"case": name, "library": "Pyro AutoMultivariateNormal", "fn": mvn_step})
    return rows


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dims", type=int, nargs="+", default=[10, 50, 200])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--smoke", action="store_true", help="D = 3, 2 repeats (test suite)")
    args = parser.parse_args(argv)
    set_threads(args.threads)
    started = time.perf_counter()
    dims, repeats = ([3], 2) if args.smoke else (args.dims, args.repeats)
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    steps, setup = {}, {}
    for dim in dims:
        for name in GUIDES:
            steps[name, dim], setup[name, dim] = make_step(name, dim)
    times = {key: [] for key in steps}
    for _ in range(repeats):
        for key, step in steps.items():
            t0 = time.perf_counter()
            step()
            times[key].append((time.perf_counter() - t0) * 1e3)
    rows = []
    print(f"{'D':>5s} {'guide':24s} {'step ms':>9s} {'set-up s':>9s} {'vs AutoMVN':>10s}")
    for dim in dims:
        reference = statistics.median(times["AutoMultivariateNormal", dim])
        for name in GUIDES:
            ms = statistics.median(times[name, dim])
            row = {"D": dim, "guide": name, "step_ms": ms, "setup_s": setup[name, dim],
                   "ratio_to_AutoMultivariateNormal": ms / reference}  # fmt: skip
            rows.append(row)
            print(f"{dim:5d} {name:24s} {ms:9.2f} {setup[name, dim]:9.2f} {ms / reference:9.1f}x")
    results = {"threads": torch.get_num_threads(), "repeats": repeats, "rows": rows}
    write_results(
        args.out,
        results,
        title="AutoFlow SVI step against AutoMultivariateNormal",
        script=__file__,
        argv=argv,
        description=__doc__.split("\nRun:")[0],
        started=started,
    )
    return results


if __name__ == "__main__":
    main()
