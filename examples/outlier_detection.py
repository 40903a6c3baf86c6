"""Outlier detection with density models on MNIST-5k: raw likelihood, likelihood ratio and
typicality, scored by AUROC.

Data: MNIST-5k (``pyrogen.datasets.load_mnist5k``: 4000 train / 1000 test); 10% of the
training images are held out as the reference set of the typicality test. Out-of-distribution
(OOD) sets, all made offline, 1000 images each (fewer with ``--smoke``):

- ``uniform noise``: pixels ``U[0, 1]``;
- ``Bernoulli noise``: pixels Bernoulli with the mean training intensity (about 0.13);
- ``inverted``: the test digits, ``1 - x``;
- ``rotated 90``: the test digits rotated by 90 degrees;
- ``sklearn digits``: scikit-learn's 8x8 digits scaled to ``[0, 1]``, upsampled bilinearly to
  20x20 and padded to 28x28 like MNIST (a near-distribution shift).

Models (each also trained, as a *background model*, on training images in which every pixel
is replaced by noise with probability ``--mutation-rate`` = 0.2, Ren et al. 2019):

- ``MAF``: ``pyrogen.flows.maf(784)`` (5 layers, MADE 512) with the logit preprocessing of
  ``pyrogen.datasets.logit_transform(256)``, on uniformly dequantized 8-bit pixels; log p(x) in
  nats on the pixel scale ``[0, 256)^784``; ``--flow-epochs`` (default 10) of ``ClippedAdam``
  (lr 5e-4, ``clip_norm`` 5). Images far from the data get extreme log-densities under this
  MAF (medians near ``-1e23`` nats for inverted digits, and a few test digits below ``-1e5``),
  so the table prints the *median* log-likelihood per set and the figure a signed log scale;
  AUROC, a ranking, is not affected.
- ``PixelCNN``: ``pyrogen.distributions.PixelCNN`` (mask-A 7x7, 2 gated blocks of 32
  channels, the ``PixelCNNModel`` of ``examples/autoregressive_mnist.py``) on binarized images
  (dynamically while training, once with a fixed seed for scoring); exact log p(x);
  ``--pixelcnn-epochs`` (default 3).
- ``VAE``: the Bernoulli VAE of ``examples/vae_mnist.py`` (Trace_ELBO), log p(x) by importance
  sampling with ``--num-samples`` particles (default 100; ``pyrogen.infer.log_likelihood``);
  ``--vae-epochs`` (default 20).

Scores (``pyrogen.analysis.ood_scores``; AUROC by ``pyrogen.analysis.ood_auroc``, 1 = perfect,
0.5 = chance, below 0.5 = the score ranks the outliers as *more* typical than the test digits):
raw negative log-likelihood; minus the log-likelihood ratio against the background model;
and the typicality test of Nalisnick et al. (2019) on single images (``M = 1``) and on batches
of ``M = 10``.

Run: ``python examples/outlier_detection.py --threads 1`` (one seed; ``--seeds 0 1 2`` for
the spread of every AUROC over seeds; the wall time is on its results page,
``docs/results/outlier_detection.rst``); ``--smoke`` runs in seconds. Writes
``outlier_detection.json`` (the record its results page renders: settings, every AUROC and
median log-likelihood, run times) and ``outlier_detection.png`` (score histograms per set,
first seed) to ``--out``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro.infer import SVI, Trace_ELBO
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from autoregressive_mnist import SHAPE, PixelCNNModel
from vae_mnist import VAE
from vae_mnist import train as train_vae

from pyrogen import flows
from pyrogen.analysis import ood_auroc, ood_scores
from pyrogen.analysis.report import reduced_from_defaults, seed_spread, set_threads, write_results
from pyrogen.datasets import dequantize, load_digits, load_mnist5k, logit_transform
from pyrogen.infer import empty_guide, log_likelihood

SCORES = ("log_likelihood", "likelihood_ratio", "typicality", "typicality_M10")


def ood_sets(x_test: torch.Tensor, mean_intensity: float, n: int, gen: torch.Generator) -> dict:
    """Intensities in ``[0, 1]``, shape ``(n, 784)``, of the in-distribution test set and the
    out-of-distribution sets."""
    digits = torch.cat(load_digits(dtype=torch.float32)[:2])[:n] / 16
    upsampled = F.interpolate(digits.reshape(-1, 1, 8, 8), size=(20, 20), mode="bilinear")
    upsampled = F.pad(upsampled, (4, 4, 4, 4)).reshape(-1, 784).clamp(0, 1)
    test = x_test[:n]
    return {
        "MNIST test": test,
        "uniform noise": torch.rand(n, 784, generator=gen),
        "Bernoulli noise": torch.bernoulli(torch.full((n, 784), mean_intensity), generator=gen),
        "inverted": 1 - test,
        "rotated 90": torch.rot90(test.reshape(-1, 28, 28), 1, (1, 2)).reshape(-1, 784),
        "sklearn digits": upsampled,
    }


def mutate(x: torch.Tensor, rate: float, *, binary: bool) -> torch.Tensor:
    """Replace each pixel by noise with probability ``rate`` (the background model's data)."""
    noise = torch.bernoulli(torch.full_like(x, 0.5)) if binary else torch.rand_like(x)
    return torch.where(torch.rand_like(x) < rate, noise, x)


class FlowModel(nn.Module):
    """MAF on logit-preprocessed, dequantized 8-bit pixels (a density on ``[0, 256)^784``)."""

    def __init__(self) -> None:
        super().__init__()
        self.flow = flows.maf(784, num_layers=5, hidden_dims=[512])

    def distribution(self) -> dist.TransformedDistribution:
        base = dist.Normal(torch.zeros(784), 1.0).to_event(1)
        return dist.TransformedDistribution(base, [self.flow, logit_transform(256)])

    def model(self, v: torch.Tensor) -> None:
        pyro.module("maf", self)
        with pyro.plate("data", v.shape[0]):
            pyro.sample("x", self.distribution(), obs=v)


def pixels(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """8-bit pixel values, uniformly dequantized: ``round(255 x) + u`` in ``[0, 256)``."""
    return dequantize(torch.round(255 * x), generator=gen)


def batched(fn, x: torch.Tensor, size: int) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([fn(x[i : i + size]) for i in range(0, x.shape[0], size)])


def train_flow(x: torch.Tensor, epochs: int, mutation: float | None, seed: int) -> FlowModel:
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    m = FlowModel()
    # gradient clipping: with plain Adam at lr 1e-3 the held-out likelihood of this MAF blows up
    # for a few epochs partway through training
    optim = pyro.optim.ClippedAdam({"lr": 5e-4, "clip_norm": 5.0})
    svi = SVI(m.model, empty_guide, optim, Trace_ELBO())
    for _ in range(epochs):
        data = x if mutation is None else mutate(x, mutation, binary=False)
        for idx in torch.randperm(x.shape[0]).split(100):
            svi.step(dequantize(torch.round(255 * data[idx])))
    return m


def train_pixelcnn(x: torch.Tensor, epochs: int, mutation: float | None, seed: int):
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    m = PixelCNNModel(num_layers=2)
    svi = SVI(m.model, empty_guide, pyro.optim.Adam({"lr": 1e-3}), Trace_ELBO())
    for _ in range(epochs):
        for idx in torch.randperm(x.shape[0]).split(100):
            batch = torch.bernoulli(x[idx])
            svi.step(batch if mutation is None else mutate(batch, mutation, binary=True))
    return m


def train_vae_model(x: torch.Tensor, epochs: int, mutation: float | None, seed: int) -> VAE:
    pyro.set_rng_seed(seed)
    vae = VAE()
    data = x if mutation is None else mutate(torch.bernoulli(x), mutation, binary=True)
    train_vae(vae, Trace_ELBO(), data, torch.zeros(x.shape[0], dtype=torch.long), epochs=epochs,
              batch=100)  # fmt: skip
    return vae


def log_likelihoods(name: str, model, inputs: dict, num_samples: int) -> dict:
    """Per-example log-likelihood (nats) of every set (prepared inputs of that model family)."""
    pyro.clear_param_store()  # each model registers its own parameters (same names in both)
    if name == "MAF":
        fn, size = model.distribution().log_prob, 250
    elif name == "PixelCNN":

        def fn(b):
            return model.distribution().log_prob(b.reshape(-1, *SHAPE))

        size = 100
    else:

        def fn(b):
            r = log_likelihood(model.model, model.guide, b, num_samples=num_samples,
                               batch_size=100)  # fmt: skip
            return r.log_likelihood

        size = 100
    return {s: batched(fn, x, size) for s, x in inputs.items()}


TRAINERS = {"MAF": train_flow, "PixelCNN": train_pixelcnn, "VAE": train_vae_model}


def figure(all_scores: dict, path: Path, aurocs: dict | None = None) -> None:
    """Histograms of each score per image set, labelled with the set's AUROC against the
    MNIST test digits."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    models = list(all_scores)
    kinds = ("log_likelihood", "likelihood_ratio", "typicality")
    titles = {
        "log_likelihood": "-log p(x) (nats)",
        "likelihood_ratio": "-[log p(x) - log p_background(x)]",
        "typicality": "typicality |-log p(x) - H|",
    }
    fig, axes = plt.subplots(len(models), 3, figsize=(15, 3.6 * len(models)), squeeze=False)
    for row, model in zip(axes, models, strict=True):
        for ax, kind in zip(row, kinds, strict=True):
            # signed log scale: MAF scores of uniform noise or inverted digits reach 1e23 nats
            per_set = {
                s: np.sign(v[kind].numpy()) * np.log10(1 + np.abs(v[kind].numpy()))
                for s, v in all_scores[model].items()
            }
            values = np.concatenate(list(per_set.values()))
            lo, hi = np.percentile(values, [0.5, 99.5])
            bins = np.linspace(lo, hi, 60)
            for s, v in per_set.items():
                label = s
                if aurocs is not None and s in aurocs.get(model, {}):
                    label = f"{s} (AUROC {aurocs[model][s][kind]:.3f})"
                ax.hist(np.clip(v, lo, hi), bins=bins, histtype="step", density=True, label=label,
                        lw=2 if s == "MNIST test" else 1)  # fmt: skip
            ax.set_title(f"{model}: {titles[kind]}", fontsize=10)
            ax.set_xlabel("sign(s) log10(1 + |s|) of the score s (higher = more unusual)")
            ax.set_ylabel("density")
            ax.legend(fontsize=7)
    fig.suptitle(
        "Outlier scores of MNIST-5k test digits (thick) and of each outlier set; AUROC of the "
        "set against the test digits (1 = perfectly separated, 0.5 = chance)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=70)
    plt.close(fig)


def run_seed(args, seed: int, x_fit, x_ref, sets: dict) -> tuple[dict, dict]:
    """Every model (and its background model) trained with ``seed`` and scored on every set:
    (the seed's figures, model -> set -> scores)."""
    aurocs: dict[str, dict] = {}
    all_scores: dict[str, dict] = {}
    median_ll: dict[str, dict] = {}
    seconds: dict[str, float] = {}
    pyro.set_rng_seed(seed)
    # every model family scores the same fixed inputs: dequantized once (MAF) or binarized
    # once (PixelCNN, VAE), with fixed seeds
    sets = {**sets, "reference": x_ref}
    inputs = {
        "MAF": {s: pixels(x, torch.Generator().manual_seed(7)) for s, x in sets.items()},
        "binary": {
            s: torch.bernoulli(x, generator=torch.Generator().manual_seed(7))
            for s, x in sets.items()
        },
    }
    epochs = {"MAF": args.flow_epochs, "PixelCNN": args.pixelcnn_epochs, "VAE": args.vae_epochs}
    for name in args.models:
        t0 = time.perf_counter()
        model = TRAINERS[name](x_fit, epochs[name], None, seed)
        background = TRAINERS[name](x_fit, epochs[name], args.mutation_rate, seed + 1)
        family = inputs["MAF" if name == "MAF" else "binary"]
        lls = log_likelihoods(name, model, family, args.num_samples)
        bgs = log_likelihoods(name, background, family, args.num_samples)
        ref = lls.pop("reference")
        per_set = {}
        for s, ll in lls.items():
            per_set[s] = ood_scores(
                ll, background_log_likelihood=bgs[s], reference_log_likelihood=ref
            )
            per_set[s]["typicality_M10"] = ood_scores(
                ll, reference_log_likelihood=ref, batch_size=10
            )["typicality"]
        all_scores[name] = per_set
        median_ll[name] = {s: float(ll.median()) for s, ll in lls.items()}
        aurocs[name] = {
            s: {k: ood_auroc(per_set["MNIST test"][k], v[k]) for k in SCORES}
            for s, v in per_set.items()
            if s != "MNIST test"
        }
        seconds[name] = time.perf_counter() - t0
        print(f"{name} (seed {seed}): trained and scored in {seconds[name]:.0f} s", flush=True)
    figures = {"auroc": aurocs, "median_log_likelihood_nats": median_ll, "seconds": seconds}
    return figures, all_scores


def print_table(seed: int, figures: dict, n_sets: int) -> None:
    """The AUROC table of one seed."""
    aurocs, median_ll = figures["auroc"], figures["median_log_likelihood_nats"]
    print(f"\nAUROC (MNIST-5k test digits vs each OOD set; {n_sets} images per set; seed {seed})")
    print(f"{'model':9s} {'OOD set':16s} {'median log p':>12s} {'raw LL':>7s} {'LL ratio':>8s} "
          f"{'typ M=1':>7s} {'typ M=10':>8s}")  # fmt: skip
    for name in aurocs:
        print(f"{name:9s} {'MNIST test':16s} {median_ll[name]['MNIST test']:12.1f}")
        for s, r in aurocs[name].items():
            flag = "  <- raw likelihood prefers the outliers" if r["log_likelihood"] < 0.5 else ""
            print(
                f"{name:9s} {s:16s} {median_ll[name][s]:12.1f} {r['log_likelihood']:7.3f} "
                f"{r['likelihood_ratio']:8.3f} {r['typicality']:7.3f} {r['typicality_M10']:8.3f}"
                + flag
            )


DEFAULTS = {"flow_epochs": 10, "pixelcnn_epochs": 3, "vae_epochs": 20, "num_samples": 100}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="seconds-long check")
    parser.add_argument("--flow-epochs", type=int, default=DEFAULTS["flow_epochs"])
    parser.add_argument("--pixelcnn-epochs", type=int, default=DEFAULTS["pixelcnn_epochs"])
    parser.add_argument("--vae-epochs", type=int, default=DEFAULTS["vae_epochs"])
    parser.add_argument(
        "--num-samples", type=int, default=DEFAULTS["num_samples"], help="K of the VAE's log p(x)"
    )
    parser.add_argument("--mutation-rate", type=float, default=0.2)
    parser.add_argument("--models", nargs="+", default=list(TRAINERS), choices=list(TRAINERS))
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="one run per seed")
    parser.add_argument("--seed", type=int, default=None, help="one seed (as --seeds N)")
    parser.add_argument("--out", type=Path, default=Path("outputs"))
    args = parser.parse_args(argv)
    n_sets = 1000
    if args.smoke:
        args.flow_epochs = args.pixelcnn_epochs = args.vae_epochs = 1
        args.num_samples, n_sets = 4, 40
    set_threads(args.threads)
    torch.set_default_dtype(torch.float32)
    start = time.perf_counter()
    seeds = [args.seed] if args.seed is not None else args.seeds
    x_train, x_test, _, _ = load_mnist5k(dtype=torch.float32)
    if args.smoke:
        x_train = x_train[:300]
    n_ref = x_train.shape[0] // 10
    x_ref, x_fit = x_train[:n_ref], x_train[n_ref:]
    sets = ood_sets(x_test, float(x_fit.mean()), n_sets, torch.Generator().manual_seed(1234))

    per_seed, first_scores = {}, None
    for seed in seeds:
        per_seed[seed], scores = run_seed(args, seed, x_fit, x_ref, sets)
        first_scores = first_scores or scores
        print_table(seed, per_seed[seed], n_sets)
    spread = seed_spread({seed: r["auroc"] for seed, r in per_seed.items()})
    if len(seeds) > 1:
        print(f"\nAUROC over seeds {' '.join(map(str, seeds))}: mean (sample sd)")
        for name, rows in spread.items():
            for s, r in rows.items():
                cells = " ".join(f"{r[k + ' mean']:.3f} ({r[k + ' sd']:.3f})" for k in SCORES)
                print(f"{name:9s} {s:16s} {cells}")
    print(f"total run time: {time.perf_counter() - start:.0f} s", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    figure(first_scores, args.out / "outlier_detection.png", per_seed[seeds[0]]["auroc"])
    settings = {k: getattr(args, k) for k in (*DEFAULTS, "mutation_rate", "models")}
    record = {
        "settings": {**settings, "images_per_set": n_sets},
        "auroc_spread_over_seeds": spread,
        "per_seed": {str(seed): r for seed, r in per_seed.items()},
    }
    if args.smoke:
        reduced = "--smoke: 300 training images, 40 per set, 1 epoch per model, K = 4"
    else:
        reduced = reduced_from_defaults(args, DEFAULTS)
    return write_results(
        args.out / "outlier_detection.json",
        record,
        title="Outlier detection with density models on MNIST-5k",
        script=__file__,
        argv=argv,
        description=__doc__.split("\nRun:")[0],
        started=start,
        reduced=reduced,
    )


if __name__ == "__main__":
    main()
