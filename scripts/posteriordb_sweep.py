"""Sweeps behind the AutoFlow defaults on the posteriordb posteriors (not run by CI or the tests).

Two measurements, each printing one JSON line per fit:

``python scripts/posteriordb_sweep.py fit POSTERIOR KWARGS SEEDS [OPTIM LR]`` fits
``AutoFlow(model, **KWARGS)`` (a JSON dict, e.g. ``'{"hidden_dims": [64, 64]}'``; ``"activation"``
names a ``torch.nn`` class) on ``POSTERIOR`` (a name of ``examples/posteriordb_accuracy.py``) for
each seed of ``SEEDS`` (comma-separated) with that example's ``fit`` (``OPTIM`` ``clippedadam``,
the recipe, or ``adam``; ``LR`` default 0.01), then prints the max |mean error| (reference sds),
the worst sd error (moments from 200,000 guide draws), PSIS k-hat (4000 draws) and whether the
fit meets the example's target.

``python scripts/posteriordb_sweep.py noise SEED`` fits the default guide under the recipe on the
non-centred eight schools and evaluates it again and again: the max |mean error| and the worst
and ``tau`` sd errors from 4000 draws as the example's evaluation order gives them, from 4000
draws for eight other draw seeds, and from 400,000 draws: the Monte Carlo error of a 4000-draw
sd of the heavy-tailed ``tau``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pyro
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))
import posteriordb_accuracy as P  # noqa: E402

from pyrogen.infer import AutoFlow  # noqa: E402


def sweep(post: str, kwargs: dict, seeds: list[int], optim: str, lr: float) -> None:
    folder, build = P.POSTERIORS[post]
    data, reference = P.load(folder)
    model = build(data)
    if "activation" in kwargs:
        kwargs["activation"] = getattr(torch.nn, kwargs["activation"])
    for seed in seeds:
        pyro.set_rng_seed(seed)
        guide = AutoFlow(model, **kwargs)
        t0 = time.perf_counter()
        try:
            P.fit(model, guide, steps=5000, optim=optim, lr=lr)
            r = P.evaluate(model, guide, reference, draws=4000, moment_draws=200_000)
            res = {
                "mean": round(r["max_abs_mean_error_sd"], 3),
                "sd": round(r["worst_sd_error"], 3),
                "khat": round(r["khat"], 2),
                "met": P.meets_target(post, r),
            }
        except FloatingPointError as error:
            res = {"error": str(error)[:80]}
        seconds = round(time.perf_counter() - t0)
        print(
            json.dumps(
                {
                    "post": post,
                    "kw": kwargs,
                    "seed": seed,
                    "optim": optim,
                    "lr": lr,
                    "s": seconds,
                    **res,
                },
                default=str,
            ),
            flush=True,
        )


def noise(seed: int) -> None:
    folder, build = P.POSTERIORS["eight_schools_noncentered"]
    data, reference = P.load(folder)
    model = build(data)
    pyro.set_rng_seed(seed)
    guide = P.GUIDES["AutoFlow(iaf)"](model)
    P.fit(model, guide, steps=5000)

    def errors(n: int, draw_seed: int | None = None):
        if draw_seed is not None:
            pyro.set_rng_seed(1000 + draw_seed)
        mean, sd = P.moment_errors(model, guide, reference, draws=n)
        worst = max(sd, key=lambda k: abs(sd[k]))
        return (
            round(max(map(abs, mean.values())), 3),
            worst,
            round(sd[worst], 3),
            round(sd["tau"], 3),
        )

    out = {"seed": seed, "as_example": errors(4000)}
    out["4000_other_draw_seeds"] = [errors(4000, s) for s in range(8)]
    out["400000"] = errors(400_000, 99)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float64)
    if sys.argv[1] == "noise":
        noise(int(sys.argv[2]))
    else:
        post, kwargs, seeds = sys.argv[2], json.loads(sys.argv[3]), sys.argv[4]
        optim = sys.argv[5] if len(sys.argv) > 5 else "clippedadam"
        lr = float(sys.argv[6]) if len(sys.argv) > 6 else 0.01
        sweep(post, kwargs, [int(s) for s in seeds.split(",")], optim, lr)
