"""Time pyrogen's flows against Pyro's own transforms, side by side in one process.

Cases (identical sizes for both libraries, 5 layers with reversals between them, MADE/MLP
hidden sizes [256, 256]):

- MAF log_prob forward+backward, batch 1024, d = 16 and 64. Pyro's ``AffineAutoregressive`` is
  an IAF; its MAF is ``AffineAutoregressive(...).inv`` (one pass to score, D to sample).
- MAF sampling, 1024 draws (D sequential passes per layer in both libraries).
- RealNVP log_prob forward+backward and sampling: pyrogen ``AffineCoupling`` vs Pyro's
  ``AffineCoupling`` with ``DenseNN``.
- Invertible 1x1 convolution at C = 48, 32x32, batch 64: pyrogen ``Invertible1x1Conv`` vs Pyro's
  ``GeneralizedChannelPermute`` (forward with log-det, inverse, and a log-likelihood
  forward+backward through the inverse).

Prints the median time of each (``torch.utils.benchmark``, ``blocked_autorange``) and the ratio
``pyro / pyrogen`` (> 1: pyrogen is faster). Runs on CPU by default; ``--device cuda`` on a GPU.
Pyro validation stays at its default (on) for both libraries, so pyrogen's input checks are
included in its times.

Run: ``python benchmarks/bench_flows.py [--device cuda] [--quick]``.
"""

from __future__ import annotations

import argparse

import pyro.distributions as dist
import pyro.distributions.transforms as T
import torch
from pyro.nn import AutoRegressiveNN
from pyro.nn import DenseNN as PyroDenseNN
from torch.utils import benchmark

from pyrogen import flows
from pyrogen.transforms import Invertible1x1Conv

NUM_LAYERS = 5
HIDDEN = [256, 256]


def pyro_maf(d: int) -> tuple[list, list]:
    parts, modules = [], []
    for i in range(NUM_LAYERS):
        layer = T.AffineAutoregressive(AutoRegressiveNN(d, HIDDEN))
        modules.append(layer)
        parts.append(layer.inv)
        if i < NUM_LAYERS - 1:
            parts.append(T.Permute(torch.arange(d - 1, -1, -1)))
    return parts, modules


def pyro_realnvp(d: int) -> tuple[list, list]:
    parts, modules = [], []
    split = d // 2
    for i in range(NUM_LAYERS):
        net = PyroDenseNN(split, HIDDEN, [d - split, d - split])
        layer = T.AffineCoupling(split, net)
        modules.append(layer)
        parts.append(layer)
        if i < NUM_LAYERS - 1:
            parts.append(T.Permute(torch.arange(d - 1, -1, -1)))
    return parts, modules


def to(parts, modules, device):
    for m in modules:
        m.to(device)
    for p in parts:
        if isinstance(p, T.Permute):
            p.permutation = p.permutation.to(device)
    return parts


def median_ms(stmt, globs, min_run_time: float) -> float:
    timer = benchmark.Timer(stmt=stmt, globals=globs, num_threads=torch.get_num_threads())
    return timer.blocked_autorange(min_run_time=min_run_time).median * 1e3


def log_prob_step(d, x):
    # A fresh tensor each step: Pyro's identity-keyed caches would otherwise return a graph
    # that the previous backward() has freed.
    d.log_prob(x.clone()).mean().neg().backward()


def main(argv=None) -> list[tuple[str, float, float]]:
    parser = argparse.ArgumentParser(description="pyrogen vs Pyro flow timings")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--quick", action="store_true", help="short timings and small sizes (smoke test)"
    )
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    min_run = 0.05 if args.quick else 1.0
    torch.manual_seed(0)
    rows: list[tuple[str, float, float]] = []
    print(f"device: {device}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(f"{'case':52s} {'pyrogen ms':>11s} {'pyro ms':>9s} {'pyro/pyrogen':>13s}", flush=True)

    def record(label: str, t_ours: float, t_pyro: float) -> None:
        rows.append((label, t_ours, t_pyro))
        print(f"{label:52s} {t_ours:11.3f} {t_pyro:9.3f} {t_pyro / t_ours:13.2f}x", flush=True)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    dims = [4] if args.quick else [16, 64]
    batch = 64 if args.quick else 1024
    for d in dims:
        base = dist.Normal(torch.zeros(d, device=device), 1.0).to_event(1)
        x = torch.randn(batch, d, device=device)
        ours = {
            "MAF": flows.maf(d, num_layers=NUM_LAYERS, hidden_dims=HIDDEN).to(device),
            "RealNVP": flows.realnvp(d, num_layers=NUM_LAYERS, hidden_dims=HIDDEN).to(device),
        }
        theirs = {"MAF": to(*pyro_maf(d), device), "RealNVP": to(*pyro_realnvp(d), device)}
        for name in ["MAF", "RealNVP"]:
            ours_d = dist.TransformedDistribution(base, [ours[name]])
            theirs_d = dist.TransformedDistribution(base, theirs[name])
            for label, stmt in [
                (f"{name} log_prob fwd+bwd d={d} batch={batch}", "step(dd, x); sync()"),
                (f"{name} sample d={d} n={batch}", "with torch.no_grad(): dd.sample((n,))\nsync()"),
            ]:
                t_ours = median_ms(
                    stmt,
                    dict(step=log_prob_step, dd=ours_d, x=x, n=batch, torch=torch, sync=sync),
                    min_run,
                )
                t_pyro = median_ms(
                    stmt,
                    dict(step=log_prob_step, dd=theirs_d, x=x, n=batch, torch=torch, sync=sync),
                    min_run,
                )
                record(label, t_ours, t_pyro)

    c, hw, b = (8, 8, 4) if args.quick else (48, 32, 64)
    ours_conv = Invertible1x1Conv(c).to(device)
    pyro_conv = T.GeneralizedChannelPermute(c).to(device)
    img = torch.randn(b, c, hw, hw, device=device)
    base = dist.Normal(torch.zeros(c, hw, hw, device=device), 1.0).to_event(3)

    def conv_forward(f, v):
        v = v.clone()  # a fresh tensor: both libraries would otherwise serve their cache
        y = f(v)
        return f.log_abs_det_jacobian(v, y)

    def conv_inverse(f, v):
        return f.inv(v.clone())

    for label, stmt in [
        (f"1x1 conv forward+ladj C={c} {hw}x{hw} batch={b}", "fn(f, v); sync()"),
        (f"1x1 conv inverse C={c} {hw}x{hw} batch={b}", "inv(f, v); sync()"),
        (
            f"1x1 conv log_prob fwd+bwd C={c} {hw}x{hw} batch={b}",
            "step(dist.TransformedDistribution(base, [f]), v); sync()",
        ),
    ]:
        globs = dict(
            fn=conv_forward,
            inv=conv_inverse,
            step=log_prob_step,
            dist=dist,
            base=base,
            v=img,
            sync=sync,
        )
        t_ours = median_ms(stmt, dict(globs, f=ours_conv), min_run)
        t_pyro = median_ms(stmt, dict(globs, f=pyro_conv), min_run)
        record(label, t_ours, t_pyro)
    return rows


if __name__ == "__main__":
    main()
