"""The sequential direction of autoregressive flows: pyrogen against Pyro, zuko, nflows and
normflows, side by side in one process.

Cases (every library: 5 MAF layers over MADEs with hidden sizes [256, 256], batch 1024):

- MAF sampling (the sequential forward), d = 16 and 64, under ``torch.no_grad()``, and with
  gradients (``rsample``, as in a guide or a reverse-KL fit) for pyrogen and Pyro.
- IAF scoring of external data (the sequential inverse), d = 64: pyrogen's degree-blocked
  solve against its own ``D``-pass fixed-point iteration (the reference of exactness).

Every library computes its sequential direction with ``D`` full network passes per layer except
pyrogen, which computes each MADE hidden unit once (:func:`pyrogen.nn.sequential.made_sequential`).
Timings are round-robin (one repeat of every case in turn), median of ``--repeats``; ratios
are ``peer / pyrogen`` (> 1: pyrogen is faster). Peers that are not installed are skipped
(``pip install ".[bench]"`` installs them).

Run: ``python benchmarks/bench_sequential.py [--threads 1] [--device cuda] [--quick]
[--out results.json]``; ``--out`` writes the record its results page renders
(``docs/results/bench_sequential.rst``). With every other benchmark: ``python -m
benchmarks.run --only sequential`` (``cases`` is this module's registry entry, see
:mod:`benchmarks.harness`).
"""

from __future__ import annotations

import argparse
import statistics
import time

import pyro.distributions as dist
import pyro.distributions.transforms as T
import torch
from pyro.nn import AutoRegressiveNN

from pyrogen import flows
from pyrogen.analysis.report import run_metadata, write_results

NUM_LAYERS = 5
HIDDEN = [256, 256]


def pyrogen_maf(d):
    base = dist.Normal(torch.zeros(d), 1.0).to_event(1)
    return dist.TransformedDistribution(
        base, flows.maf(d, num_layers=NUM_LAYERS, hidden_dims=HIDDEN)
    )


def pyro_maf(d):
    parts = []
    for i in range(NUM_LAYERS):
        parts.append(T.AffineAutoregressive(AutoRegressiveNN(d, HIDDEN)).inv)
        if i < NUM_LAYERS - 1:
            parts.append(T.Permute(torch.arange(d - 1, -1, -1)))
    return dist.TransformedDistribution(dist.Normal(torch.zeros(d), 1.0).to_event(1), parts)


def zuko_maf(d):
    import zuko

    return zuko.flows.MAF(d, 0, transforms=NUM_LAYERS, hidden_features=HIDDEN)()


def nflows_maf(d):
    from nflows.flows import MaskedAutoregressiveFlow

    # MADE [256, 256]: an input layer and one plain (non-residual) block
    return MaskedAutoregressiveFlow(d, 256, NUM_LAYERS, num_blocks_per_layer=1,
                                    use_residual_blocks=False)  # fmt: skip


def normflows_maf(d):
    import normflows as nf

    # normflows' MaskedAffineAutoregressive samples in its cheap direction (an IAF); Reverse
    # makes it a MAF (cheap log_prob, sequential sampling), as in the other libraries
    layers = []
    for _ in range(NUM_LAYERS):
        made = nf.flows.MaskedAffineAutoregressive(d, 256, num_blocks=1, use_residual_blocks=False)
        layers += [nf.flows.Reverse(made), nf.flows.Permute(d, mode="swap")]
    return nf.NormalizingFlow(nf.distributions.DiagGaussian(d), layers)


def sampler(name, d, n):
    """A zero-argument callable drawing ``n`` samples without gradients, or ``None``."""
    try:
        if name == "pyrogen":
            model = pyrogen_maf(d)
            return lambda: model.sample((n,))
        if name == "Pyro":
            model = pyro_maf(d)
            return lambda: model.sample((n,))
        if name == "zuko":
            model = zuko_maf(d)
            return lambda: model.sample((n,))
        if name == "nflows":
            model = nflows_maf(d)
            return lambda: model.sample(n)
        if name == "normflows":
            model = normflows_maf(d)
            return lambda: model.sample(n)
    except ImportError:
        return None
    raise ValueError(name)


def timed(fn, grad: bool) -> float:
    start = time.perf_counter()
    with torch.set_grad_enabled(grad):
        out = fn()
        if grad:
            out.sum().backward()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return (time.perf_counter() - start) * 1e3


def iaf_inverse_cases(d, n):
    layers = flows.iaf(d, num_layers=NUM_LAYERS, hidden_dims=HIDDEN)
    with torch.no_grad():
        for p in layers.parameters():
            p.add_(0.01 * torch.randn_like(p))
    y = torch.randn(n, d)

    def blocked():
        return layers.inv(y.clone())

    def fixed_point():
        x = y
        for part in reversed(list(layers)):
            if hasattr(part, "_params") and part.cheap == "forward":
                c = part.transform.inverse(x, part._params(torch.zeros_like(x), None))[0]
                for _ in range(d - 1):
                    c = part.transform.inverse(x, part._params(c, None))[0]
                x = c
            else:
                x = part.inv(x)
        return x

    with torch.no_grad():
        err = (blocked() - fixed_point()).abs().max().item()
    return blocked, fixed_point, err


def cases(quick: bool = False, device: str = "cpu") -> list[dict]:
    """The registry entry (:mod:`benchmarks.harness`): MAF sampling at d = 16 (target 4x the
    fastest peer) and d = 64 (10x), sampling with gradients against Pyro, and the IAF inverse
    at d = 64 against the ``D``-pass fixed point (10x)."""
    dims, n = ([4], 16) if quick else ([16, 64], 1024)
    out = []
    with torch.device(device):
        for d in dims:
            torch.manual_seed(0)
            for name in ["pyrogen", "Pyro", "zuko", "nflows", "normflows"]:
                fn = sampler(name, d, n)
                if fn is not None:
                    row = {"case": f"MAF sample d={d}", "library": name, "fn": _no_grad(fn)}
                    if name == "pyrogen":
                        row["target"] = 4.0 if d <= 16 else 10.0
                    out.append(row)
            for name, build in [("pyrogen", pyrogen_maf), ("Pyro", pyro_maf)]:
                model = build(d)

                def fn(model=model):
                    model.rsample((n,)).sum().backward()
                    _clear_caches(model)  # untimed bookkeeping: frees the last call's tensors

                out.append({"case": f"MAF rsample+backward d={d}", "library": name, "fn": fn})
        blocked, fixed_point, _ = iaf_inverse_cases(dims[-1], n)
        name = f"IAF inverse d={dims[-1]}"
        out.append({"case": name, "library": "pyrogen", "fn": _no_grad(blocked), "target": 10.0})
        out.append({"case": name, "library": "D-pass fixed point", "fn": _no_grad(fixed_point)})
    return out


def _clear_caches(model) -> None:
    """Drop what a distribution's transforms keep from the last call. Pyro's
    ``AffineAutoregressive`` holds the last ``(x, y)`` and its log-scale, with the activations
    of all ``D`` network passes behind them (about 1 GB per flow at d=64), until the next call;
    pyrogen's layers drop theirs when backward runs."""
    for t in model.transforms:
        for part in (t, getattr(t, "_inv", None)):
            if part is None:
                continue
            if hasattr(part, "_cached_x_y"):
                part._cached_x_y = None, None
            if getattr(part, "_cached_log_scale", None) is not None:
                part._cached_log_scale = None


def _no_grad(fn):
    def call():
        with torch.no_grad():
            return fn()

    return call


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description="sequential-direction timings vs peers")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"torch threads: {torch.get_num_threads()}", flush=True)
    torch.manual_seed(0)
    dims = [4] if args.quick else [16, 64]
    n = 16 if args.quick else 1024
    repeats = 1 if args.quick else args.repeats
    peers = ["pyrogen", "Pyro", "zuko", "nflows", "normflows"]
    cases = {}
    for d in dims:
        for name in peers:
            fn = sampler(name, d, n)
            if fn is not None:
                cases[f"MAF sample d={d}|{name}"] = (fn, False)
        for name in ["pyrogen", "Pyro"]:
            model = pyrogen_maf(d) if name == "pyrogen" else pyro_maf(d)
            cases[f"MAF rsample+backward d={d}|{name}"] = (
                lambda model=model: model.rsample((n,)),
                True,
            )
    d_iaf = dims[-1]
    blocked, fixed_point, err = iaf_inverse_cases(d_iaf, n)
    cases[f"IAF inverse d={d_iaf}|pyrogen"] = (blocked, False)
    cases[f"IAF inverse d={d_iaf}|D-pass fixed point"] = (fixed_point, False)
    times: dict[str, list[float]] = {k: [] for k in cases}
    for fn, grad in cases.values():  # warm-up
        timed(fn, grad)
    for _ in range(repeats):
        for key, (fn, grad) in cases.items():
            times[key].append(timed(fn, grad))
    medians = {k: statistics.median(v) for k, v in times.items()}
    print(f"{'case':36s} {'library':>20s} {'ms':>10s} {'vs pyrogen':>11s}")
    rows = []
    for key, ms in medians.items():
        case, lib = key.split("|")
        ours = medians[f"{case}|pyrogen"]
        rows.append({"case": case, "library": lib, "ms": ms, "ratio": ms / ours})
        print(f"{case:36s} {lib:>20s} {ms:10.2f} {ms / ours:10.2f}x", flush=True)
    for d in dims:
        peer = [r for r in rows if r["case"] == f"MAF sample d={d}" and r["library"] != "pyrogen"]
        fastest = min(peer, key=lambda r: r["ms"])
        print(
            f"MAF sampling d={d}: {fastest['ratio']:.1f}x faster than the fastest peer "
            f"({fastest['library']})"
        )
    print(f"IAF inverse d={d_iaf}: max |blocked - fixed point| = {err:.2e}")
    results = {
        "meta": run_metadata(__file__, argv),
        "threads": args.threads,
        "repeats": repeats,
        "batch": n,
        "rows": rows,
        "iaf_inverse_max_abs_error": err,
    }
    if args.out:
        write_results(
            args.out,
            {k: v for k, v in results.items() if k != "meta"},
            title="The sequential direction of autoregressive flows against peer libraries",
            script=__file__,
            argv=argv,
            description=__doc__.split("\nRun:")[0],
            reduced="--quick: d = 4, batch 16, 1 repeat" if args.quick else "",
        )
    return results


if __name__ == "__main__":
    main()
