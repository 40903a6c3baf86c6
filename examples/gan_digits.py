"""GAN and WGAN-GP generators of real 8x8 digits (Pyro models trained with
``pyrogen.infer.GAN``) next to a VAE, scored with a classifier trained on real digits.

Data: scikit-learn's 8x8 digits, pixels divided by 16 (values in [0, 1]), 1437 train / 360
test (stratified, seed 0). All three generators share one decoder architecture:
``z ~ N(0, I_16)``, MLP 16-256-256-64 (ReLU) with a sigmoid output.

- non-saturating GAN: critic MLP 64-256-256-1 (LeakyReLU 0.2), one critic step per generator
  step, Adam lr 2e-4, betas (0.5, 0.999);
- WGAN-GP: the same critic, five critic steps per generator step, penalty weight 10, Adam lr
  1e-4, betas (0.5, 0.9) (Gulrajani et al. 2017);
- VAE: Gaussian encoder MLP 64-256-256-32, Bernoulli likelihood on the [0, 1] intensities,
  ``Trace_ELBO``, Adam lr 1e-3; samples are the decoder's means.

GANs train ``--steps`` generator steps on batches of 64 (default 6000); the VAE trains for the
same number of mini-batch steps.

Scores use ``pyrogen.analysis.digits_classifier`` (an MLP 64-128-64-10 trained on the training
digits, 96.4% test accuracy), never Inception: the Fréchet distance between its 64-d features
of 2,000 samples and of the 360 held-out digits ("classifier FD"; *not* FID), the number of
classes predicted (of 10) and the KL divergence of the predicted-class histogram to uniform
(nats), and the Inception-style score of the class probabilities. For scale, the training
digits themselves are scored the same way. Sample grids go to ``outputs/gan_digits.png``.

Run: ``python examples/gan_digits.py --threads 1 --seeds 0 1 2`` (the spread over seeds; one
seed, 0, by default; the classifier is trained once, with the first seed; wall time on its
results page), ``--smoke`` for a short check. Writes ``outputs/gan_digits.json`` (the record its
results page renders) and ``outputs/gan_digits.png`` (samples of the first seed).
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

from pyrogen.analysis import (
    class_coverage,
    digits_classifier,
    frechet_distance,
    inception_score,
    save_image_grid,
)
from pyrogen.analysis.report import seed_spread, set_threads, write_results
from pyrogen.datasets import load_digits
from pyrogen.infer import GAN

Z, H = 16, 256


def decoder_net() -> nn.Module:
    return nn.Sequential(
        nn.Linear(Z, H), nn.ReLU(), nn.Linear(H, H), nn.ReLU(), nn.Linear(H, 64)
    )  # fmt: skip


def critic_net() -> nn.Module:
    return nn.Sequential(
        nn.Linear(64, H), nn.LeakyReLU(0.2), nn.Linear(H, H), nn.LeakyReLU(0.2), nn.Linear(H, 1)
    )  # fmt: skip


def make_generator(net: nn.Module):
    def generator(num: int) -> torch.Tensor:
        pyro.module("generator", net)
        with pyro.plate("samples", num):
            z = pyro.sample("z", dist.Normal(torch.zeros(Z), 1.0).to_event(1))
        return torch.sigmoid(net(z))

    return generator


def train_gan(loss: str, x_train: torch.Tensor, steps: int, seed: int):
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    net = decoder_net()
    if loss == "wasserstein":
        opt = {"lr": 1e-4, "betas": (0.5, 0.9)}
        extra = {"critic_steps": 5, "penalty_weight": 10.0}
    else:
        opt = {"lr": 2e-4, "betas": (0.5, 0.999)}
        extra = {}
    gan = GAN(make_generator(net), critic_net(), Adam(opt), Adam(opt), loss=loss, **extra)
    gen = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    for _ in range(steps):
        idx = torch.randint(x_train.shape[0], (64,), generator=gen)
        gan.step(x_train[idx])
    seconds = time.perf_counter() - start
    with torch.no_grad():
        samples = make_generator(net)(2000)
    return samples, seconds


def train_vae(x_train: torch.Tensor, steps: int, seed: int):
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    dec = decoder_net()
    enc = nn.Sequential(
        nn.Linear(64, H), nn.ReLU(), nn.Linear(H, H), nn.ReLU(), nn.Linear(H, 2 * Z)
    )  # fmt: skip

    def model(x):
        pyro.module("decoder", dec)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(Z), 1.0).to_event(1))
            pyro.sample("x", dist.Bernoulli(logits=dec(z), validate_args=False).to_event(1), obs=x)

    def guide(x):
        pyro.module("encoder", enc)
        loc, log_scale = enc(x).chunk(2, -1)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(loc, log_scale.exp()).to_event(1))

    svi = SVI(model, guide, Adam({"lr": 1e-3}), Trace_ELBO())
    gen = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    for _ in range(steps):
        svi.step(x_train[torch.randint(x_train.shape[0], (64,), generator=gen)])
    seconds = time.perf_counter() - start
    with torch.no_grad():
        samples = torch.sigmoid(dec(torch.randn(2000, Z)))
    return samples, seconds


def score(net, samples: torch.Tensor, real_test: torch.Tensor) -> dict:
    with torch.no_grad():
        fd = frechet_distance(net.features(real_test), net.features(samples))
        probs = net.probs(samples)
    classes, kl = class_coverage(probs)
    is_mean, _ = inception_score(probs)
    return {
        "classifier_fd": float(fd),
        "classes_covered": classes,
        "class_kl_to_uniform": kl,
        "classifier_score": is_mean,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--steps", type=int, default=6000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="one run per seed")
    parser.add_argument("--seed", type=int, default=None, help="one seed (as --seeds N)")
    parser.add_argument("--out", default="outputs")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args(argv)
    set_threads(args.threads)
    started = time.perf_counter()
    if args.smoke:
        args.steps = 5
    torch.set_default_dtype(torch.float32)
    seeds = [args.seed] if args.seed is not None else args.seeds
    x_train, x_test, _, _ = load_digits(dtype=torch.float32)
    x_train, x_test = x_train / 16, x_test / 16
    # one scorer for every seed: the classifier is trained once, with the first seed
    net = digits_classifier(seed=seeds[0], dtype=torch.float32)

    per_seed, first_samples = {}, None
    for seed in seeds:
        results = {"real training digits": {**score(net, x_train, x_test), "seconds": 0.0}}
        samples = {}
        for name, loss in (("GAN (non-saturating)", "nonsaturating"), ("WGAN-GP", "wasserstein")):
            samples[name], seconds = train_gan(loss, x_train, args.steps, seed)
            results[name] = {**score(net, samples[name], x_test), "seconds": seconds}
        samples["VAE"], seconds = train_vae(x_train, args.steps, seed)
        results["VAE"] = {**score(net, samples["VAE"], x_test), "seconds": seconds}
        per_seed[seed], first_samples = results, first_samples or samples

    print(
        f"{'generator':<22} {'seed':>4} {'classifier FD':>14} {'classes':>8} "
        f"{'KL(hist||unif)':>15} {'score':>6} {'seconds':>8}"
    )
    for seed, results in per_seed.items():
        for name, r in results.items():
            print(
                f"{name:<22} {seed:4d} {r['classifier_fd']:>14.3f} {r['classes_covered']:>8d}"
                f" {r['class_kl_to_uniform']:>15.4f} {r['classifier_score']:>6.2f}"
                f" {r['seconds']:>8.1f}"
            )
    quantities = ["classifier_fd", "classes_covered", "class_kl_to_uniform", "classifier_score"]
    spread = seed_spread(per_seed, quantities)
    print(f"\nover seeds {' '.join(map(str, seeds))}: classifier FD mean (sample sd)")
    for name, r in spread.items():
        print(f"{name:<22} {r['classifier_fd mean']:8.3f} ({r['classifier_fd sd']:.3f})")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    reduced = "--smoke: 5 steps" if args.smoke else ""
    if not args.smoke and args.steps != 6000:
        reduced = f"--steps {args.steps} (full mode: 6000)"
    write_results(
        out / "gan_digits.json",
        {"spread_over_seeds": spread, "per_seed": {str(s): r for s, r in per_seed.items()}},
        title="GAN, WGAN-GP and VAE generators of digits",
        script=__file__,
        argv=argv,
        description=__doc__.split("\nRun:")[0],
        started=started,
        reduced=reduced,
    )
    results, samples = per_seed[seeds[0]], first_samples
    rows = {"real test digits": x_test}
    for k, v in samples.items():
        r = results[k]
        rows[f"{k}: classifier FD {r['classifier_fd']:.2f}, {r['classes_covered']} classes"] = v
    save_image_grid(
        rows,
        out / "gan_digits.png",
        image_size=(8, 8),
        title="Digits: real test digits (top row), then samples of each generator",
    )
    return results


if __name__ == "__main__":
    main()
