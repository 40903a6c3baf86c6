"""Energy-based models of real digits: RBMs trained by contrastive divergence, scored exactly or
by AIS, next to scikit-learn's BernoulliRBM; a Gaussian-Bernoulli RBM; a DBN; a Langevin EBM.

Data: scikit-learn's 8x8 digits, binarized at pixel >= 8, 1437 train / 360 test (stratified,
seed 0). Every Bernoulli RBM is trained by ``pyrogen.infer.fit_rbm`` (``pyro.infer.SVI`` with
``ContrastiveDivergence``, Adam lr 0.01, batch 50, 100 epochs; weights N(0, 0.01^2), visible
biases at the data's logits).

1. 20 hidden units with CD-1, CD-25 and persistent CD (PCD-1, 50 chains): exact test
   log-likelihood (``log Z`` by enumerating the 2^20 hidden states), nats per image.
2. scikit-learn's ``BernoulliRBM`` (20 components, 100 iterations, its defaults otherwise:
   PCD-1, SGD lr 0.1, batch 10), its parameters loaded into ``pyrogen.distributions.
   BernoulliRBM`` to score it exactly. Wall time per epoch against pyrogen's PCD-1 with the
   same batch size (10), as the ratio pyrogen / scikit-learn.
3. AIS (``rbm.log_partition(method="ais")``, 100 chains, the 14,500-step schedule of
   Salakhutdinov and Murray, base-rate initialization) against the exact ``log Z`` of every
   20-hidden model, then AIS test log-likelihoods of 100- and 500-hidden RBMs (CD-25).
4. A Gaussian-Bernoulli RBM (20 hidden units, unit variances, CD-1) on the real-valued digits
   (pixels dequantized with U[0,1) noise, standardized with the training mean and sd), exact
   test log-likelihood in nats per image in the standardized space, next to a diagonal and a
   full-covariance Gaussian fitted to the same data.
5. A two-layer deep belief net (64-100-50, greedy PCD-1), sampled top-down; its test
   log-likelihood is the variational lower bound of Salakhutdinov and Murray (2008) with
   q(h1 | v) from the bottom RBM (100 draws per image) and AIS for the top RBM's log Z.
6. A continuous EBM (MLP energy) on two moons (scaled by 2) trained by CD with 30 Langevin steps
   (step 0.05) from a replay buffer and the energy penalty 0.1 of Du and Mordatch (2019);
   ``log Z`` by quadrature on a 301x301 grid over [-6, 6]^2 gives its test log-likelihood, next
   to a full-covariance Gaussian.
7. A deep Boltzmann machine (64-100-50): greedy pretraining with the doubled RBMs of
   Salakhutdinov and Hinton (2009), then ``MeanFieldPCD`` (mean-field data term, 100
   persistent chains, Adam lr 0.005, the same epochs and batch size). Test log-likelihood: the
   mean-field variational lower bound plus AIS ``log Z`` (a lower bound, up to the AIS error).
   A summary table compares RBMs, the DBN and the DBM: test log-likelihood (nats per image),
   its standard error (test-set spread and AIS combined) and training seconds.

Run: ``python examples/rbm_digits.py --threads 1`` (one seed; ``--seeds 0 1 2`` for one run per
seed and their spread; the wall time is on its results page, ``docs/results/rbm_digits.rst``),
``--epochs`` / ``--ais-betas`` for a smaller run, ``--smoke`` for a short check. Writes
``outputs/rbm_digits.json`` (the record its results page renders), ``outputs/rbm_digits.png``
(test images and each model's samples with its score) and ``outputs/ebm_two_moons.png`` (data,
density and samples, with the test log-likelihoods), the figures from the first seed.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import pyro
import torch
from pyro.infer import SVI
from pyro.optim import Adam
from torch import nn

from pyrogen.datasets import load_digits, two_moons
from pyrogen.distributions import (
    BernoulliRBM,
    DeepBeliefNet,
    DeepBoltzmannMachine,
    EnergyBasedDistribution,
    GaussianBernoulliRBM,
)
from pyrogen.infer import ContrastiveDivergence, MeanFieldPCD, fit_rbm, pretrain_dbm


def exact_test_ll(rbm: BernoulliRBM, x: torch.Tensor, log_z: float | None = None) -> float:
    """Mean exact ``log p(x)`` in nats; ``log_z``: the model's exact ``log Z`` when already
    computed (enumerating ``2^20`` hidden states is the costly part)."""
    with torch.no_grad():
        if log_z is None:
            return float(rbm.log_prob(x).mean())
        return float(rbm.unnormalized_log_prob(x).mean()) - log_z


def ais_test_ll(rbm: BernoulliRBM, x: torch.Tensor, x_train: torch.Tensor, num_betas: int):
    est = rbm.log_partition(method="ais", num_chains=100, num_betas=num_betas, data=x_train)
    with torch.no_grad():
        ll = float((rbm.unnormalized_log_prob(x) - est.log_partition).mean())
    return ll, float(est.log_partition), float(est.stderr)


def combined_se(values: torch.Tensor, ais_se: float) -> float:
    """Standard error of a mean test log-likelihood with an estimated log Z."""
    return math.sqrt(float(values.var()) / len(values) + ais_se**2)


def dbn_test_ll(dbn: DeepBeliefNet, x: torch.Tensor, x_train: torch.Tensor, num_betas: int):
    """Salakhutdinov and Murray (2008): log p(v) >= E_q[log p(v|h1) - F_top(h1)] + H(q) - log
    Z_top with q = p(h1 | v) of the bottom RBM; 100 draws of h1 per image."""
    bottom, top = dbn.layers
    h_train = bottom.hidden_given_visible(x_train).base_dist.probs
    est = top.log_partition(method="ais", num_chains=100, num_betas=num_betas, data=h_train)
    with torch.no_grad():
        q = bottom.hidden_given_visible(x)
        h = q.sample((100,))
        terms = bottom.visible_given_hidden(h).log_prob(x) + top.unnormalized_log_prob(h)
        bound = terms.mean(0) + q.entropy() - est.log_partition
    return bound, float(est.log_partition), float(est.stderr)


def train_dbm(x_train: torch.Tensor, epochs: int, batch_size: int = 50) -> DeepBoltzmannMachine:
    """Greedy pretraining, then mean-field / persistent-chain training with ``pyro.infer.SVI``."""
    init = pretrain_dbm(x_train, [100, 50], epochs=epochs, batch_size=batch_size)

    def model(batch):
        w = [pyro.param(f"dbm_w{i}", init.weights[i].clone()) for i in range(2)]
        b = [pyro.param(f"dbm_b{i}", init.biases[i].clone()) for i in range(3)]
        with pyro.plate("data", len(x_train), subsample=torch.arange(len(batch))):
            pyro.sample("v", DeepBoltzmannMachine(w, b), obs=batch)

    with pyro.get_param_store().scope():
        svi = SVI(model, lambda batch: None, Adam({"lr": 0.005}), MeanFieldPCD(num_chains=100))
        for _ in range(epochs):
            perm = torch.randperm(len(x_train))
            for i in range(0, len(x_train), batch_size):
                svi.step(x_train[perm[i : i + batch_size]])
        weights = [pyro.param(f"dbm_w{i}").detach() for i in range(2)]
        biases = [pyro.param(f"dbm_b{i}").detach() for i in range(3)]
    return DeepBoltzmannMachine(weights, biases)


def sklearn_rbm(x_train: torch.Tensor, epochs: int, batch_size: int = 10):
    from sklearn.neural_network import BernoulliRBM as SkRBM

    sk = SkRBM(n_components=20, n_iter=epochs, batch_size=batch_size, random_state=0)
    start = time.perf_counter()
    sk.fit(x_train.numpy())
    seconds = time.perf_counter() - start
    rbm = BernoulliRBM(
        torch.as_tensor(sk.components_.T, dtype=x_train.dtype),
        torch.as_tensor(sk.intercept_visible_, dtype=x_train.dtype),
        torch.as_tensor(sk.intercept_hidden_, dtype=x_train.dtype),
    )
    return rbm, seconds / epochs


def gaussian_rbm(x_train: torch.Tensor, x_test: torch.Tensor, epochs: int) -> dict:
    """Gaussian-Bernoulli RBM on dequantized, standardized pixels, trained the Pyro way."""
    g = torch.Generator().manual_seed(0)
    train = x_train + torch.rand(x_train.shape, generator=g, dtype=x_train.dtype)
    test = x_test + torch.rand(x_test.shape, generator=g, dtype=x_test.dtype)
    mean, sd = train.mean(0), train.std(0)
    train, test = (train - mean) / sd, (test - mean) / sd
    d, h = train.shape[1], 20

    def model(batch):
        w = pyro.param("gw", 0.01 * torch.randn(d, h, dtype=train.dtype))
        b = pyro.param("gb", torch.zeros(d, dtype=train.dtype))
        c = pyro.param("gc", torch.zeros(h, dtype=train.dtype))
        with pyro.plate("data", len(train), subsample_size=len(batch)):
            pyro.sample("v", GaussianBernoulliRBM(w, b, c, torch.ones(d, dtype=w.dtype)), obs=batch)

    with pyro.get_param_store().scope():
        svi = SVI(model, lambda batch: None, Adam({"lr": 0.005}), ContrastiveDivergence(1))
        for _ in range(epochs):
            perm = torch.randperm(len(train))
            for i in range(0, len(train), 50):
                svi.step(train[perm[i : i + 50]])
        rbm = GaussianBernoulliRBM(
            *(pyro.param(n).detach() for n in ("gw", "gb", "gc")), torch.ones(d, dtype=train.dtype)
        )
    diag = torch.distributions.Normal(train.mean(0), train.std(0)).log_prob(test).sum(-1)
    cov = torch.cov(train.T) + 1e-6 * torch.eye(d, dtype=train.dtype)
    full = torch.distributions.MultivariateNormal(train.mean(0), cov).log_prob(test)
    with torch.no_grad():
        return {
            "rbm": rbm,
            "test_ll": float(rbm.log_prob(test).mean()),
            "diagonal_gaussian": float(diag.mean()),
            "full_gaussian": float(full.mean()),
            "unstandardize": sd,
            "mean": mean,
        }


class Energy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(2, 64), nn.SiLU(), nn.Linear(64, 64), nn.SiLU(), nn.Linear(64, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1) + 0.05 * (x**2).sum(-1)  # weak confinement


def ebm_two_moons(steps: int, out: Path | None) -> dict:
    """Continuous EBM trained by CD with Langevin negatives; log Z by grid quadrature (and,
    with ``out``, its figure ``out / "ebm_two_moons.png"``)."""
    g = torch.Generator().manual_seed(0)
    train, test = two_moons(2000, generator=g) * 2, two_moons(1000, generator=g) * 2
    energy = Energy()

    def model(batch):
        pyro.module("energy", energy)
        ebm = EnergyBasedDistribution(energy, (2,), step_size=0.05, init_scale=2.0)
        with pyro.plate("data", len(train), subsample_size=len(batch)):
            pyro.sample("x", ebm, obs=batch)

    loss = ContrastiveDivergence(30, num_chains=200, replay_buffer=2000, energy_penalty=0.1)
    with pyro.get_param_store().scope():
        svi = SVI(model, lambda batch: None, Adam({"lr": 1e-3}), loss)
        for _ in range(steps):
            svi.step(train[torch.randint(len(train), (200,), generator=g)])
    grid = torch.linspace(-6, 6, 301)
    points = torch.cartesian_prod(grid, grid)
    with torch.no_grad():
        log_f = -energy(points)
        log_z = float(torch.logsumexp(log_f, 0) + 2 * math.log(float(grid[1] - grid[0])))
        test_ll = float((-energy(test)).mean()) - log_z
    ebm = EnergyBasedDistribution(
        energy, (2,), num_steps=2000, step_size=0.01, adjusted=True, init_scale=2.0
    )
    samples = ebm.sample((1000,))
    mean, cov = train.mean(0), torch.cov(train.T)
    gauss = float(torch.distributions.MultivariateNormal(mean, cov).log_prob(test).mean())

    if out is not None:
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 3, figsize=(12, 4.4))
        axes[0].scatter(*test.T.numpy(), s=2)
        axes[0].set_title(f"two moons x2: {len(test)} test points")
        density = log_f.reshape(301, 301).T.exp().numpy()
        axes[1].imshow(density, origin="lower", extent=(-6, 6, -6, 6))
        axes[1].set_title("unnormalized density exp(-E(x))")
        axes[2].scatter(*samples.T.numpy(), s=2)
        axes[2].set_title(f"{len(samples)} MALA samples (2000 steps)")
        for ax in axes:
            ax.set_xlim(-6, 6)
            ax.set_ylim(-6, 6)
            ax.set_xlabel("x1")
            ax.set_ylabel("x2")
        fig.suptitle(
            f"Langevin-trained EBM: test log-likelihood {test_ll:.3f} nats/point (log Z by "
            f"quadrature), full-covariance Gaussian {gauss:.3f}"
        )
        fig.tight_layout()
        fig.savefig(out / "ebm_two_moons.png", dpi=70)
        plt.close(fig)
    return {"test_ll": test_ll, "log_partition_quadrature": log_z, "gaussian_test_ll": gauss}


def save_digit_grid(rows: dict[str, torch.Tensor], path: Path, title: str) -> None:
    """Labelled strips of 16 binary (or [0, 1]) 8x8 digits, one per row."""
    from pyrogen.analysis import save_image_grid

    rows = {label: x[:16].clamp(0, 1) for label, x in rows.items()}
    save_image_grid(rows, path, image_size=(8, 8), title=title)


def run_seed(
    seed: int,
    x_train: torch.Tensor,
    x_test: torch.Tensor,
    real_train: torch.Tensor,
    real_test: torch.Tensor,
    *,
    epochs: int,
    num_betas: int,
    big: tuple[int, ...],
    smoke: bool,
    out: Path | None,
) -> dict:
    """Every model trained and scored with ``seed``; the figures are drawn when ``out`` is
    given."""
    results: dict = {}

    # 1-2. 20 hidden units, exactly scored
    losses = {
        "CD-1": lambda: ContrastiveDivergence(1),
        "CD-25": lambda: ContrastiveDivergence(25),
        "PCD-1": lambda: ContrastiveDivergence(1, persistent=True, num_chains=50),
    }
    small: dict[str, BernoulliRBM] = {}
    print(f"{'model (20 hidden units)':34s} {'exact test LL':>13s} {'s/epoch':>8s}", flush=True)
    exact_log_z: dict[str, float] = {}  # each 20-hidden model's log Z, enumerated once
    for name, make in losses.items():
        pyro.set_rng_seed(seed)
        start = time.perf_counter()
        small[name] = fit_rbm(x_train, 20, loss=make(), epochs=epochs)
        seconds = (time.perf_counter() - start) / epochs
        exact_log_z[name] = float(small[name].log_partition())
        ll = exact_test_ll(small[name], x_test, exact_log_z[name])
        results[f"pyrogen {name}"] = {"test_ll": ll, "seconds_per_epoch": seconds}
        print(f"{'pyrogen ' + name:34s} {ll:13.3f} {seconds:8.3f}", flush=True)
    sk, sk_seconds = sklearn_rbm(x_train, epochs)
    small["scikit-learn"] = sk
    exact_log_z["scikit-learn"] = float(sk.log_partition())
    sk_ll = exact_test_ll(sk, x_test, exact_log_z["scikit-learn"])
    results["scikit-learn BernoulliRBM"] = {"test_ll": sk_ll, "seconds_per_epoch": sk_seconds}
    print(
        f"{'scikit-learn BernoulliRBM (PCD-1)':34s} {sk_ll:13.3f} {sk_seconds:8.3f}",
        flush=True,
    )
    timing_epochs = 1 if smoke else 5
    pyro.set_rng_seed(seed)
    start = time.perf_counter()
    fit_rbm(
        x_train,
        20,
        loss=ContrastiveDivergence(1, persistent=True, num_chains=10),
        epochs=timing_epochs,
        batch_size=10,
    )
    ours = (time.perf_counter() - start) / timing_epochs
    results["speed"] = {
        "pyrogen_pcd1_batch10_seconds_per_epoch": ours,
        "sklearn_seconds_per_epoch": sk_seconds,
        "ratio_pyrogen_over_sklearn": ours / sk_seconds,
    }
    print(
        f"wall time per epoch, PCD-1 batch 10: pyrogen {ours:.3f} s, scikit-learn "
        f"{sk_seconds:.3f} s, ratio {ours / sk_seconds:.1f}x",
        flush=True,
    )

    # 3. AIS against exact log Z, then larger RBMs
    print(f"{'AIS vs exact log Z':34s} {'exact':>9s} {'AIS':>9s} {'se':>6s} {'diff':>7s}")
    results["ais_check"] = {}
    for name, rbm in small.items():
        exact = exact_log_z[name]
        est = rbm.log_partition(method="ais", num_chains=100, num_betas=num_betas, data=x_train)
        diff = float(est.log_partition) - exact
        results["ais_check"][name] = {
            "exact": exact,
            "ais": float(est.log_partition),
            "stderr": float(est.stderr),
            "difference": diff,
        }
        print(
            f"{name:34s} {exact:9.3f} {float(est.log_partition):9.3f} {float(est.stderr):6.3f} "
            f"{diff:+7.3f}",
            flush=True,
        )
    print(f"{'larger RBMs (CD-25)':34s} {'AIS test LL':>11s} {'log Z':>9s} {'se':>6s}")
    summary = {}
    with torch.no_grad():
        cd25 = small["CD-25"].log_prob(x_test)
    summary["RBM 64-20, CD-25 (exact)"] = (
        float(cd25.mean()),
        combined_se(cd25, 0.0),
        results["pyrogen CD-25"]["seconds_per_epoch"] * epochs,
    )
    for h in big:
        pyro.set_rng_seed(seed)
        start = time.perf_counter()
        rbm = fit_rbm(x_train, h, loss=ContrastiveDivergence(25), epochs=epochs)
        seconds = time.perf_counter() - start
        ll, log_z, se = ais_test_ll(rbm, x_test, x_train, num_betas)
        results[f"pyrogen CD-25, {h} hidden"] = {"test_ll": ll, "log_partition": log_z, "se": se}
        with torch.no_grad():
            values = rbm.unnormalized_log_prob(x_test) - log_z
        summary[f"RBM 64-{h}, CD-25 (AIS)"] = (ll, combined_se(values, se), seconds)
        print(f"{f'{h} hidden units':34s} {ll:11.3f} {log_z:9.3f} {se:6.3f}", flush=True)

    # 4. Gaussian-Bernoulli RBM on real-valued pixels
    pyro.set_rng_seed(seed)
    gb = gaussian_rbm(real_train, real_test, epochs)
    results["gaussian_bernoulli_rbm"] = {
        k: gb[k] for k in ("test_ll", "diagonal_gaussian", "full_gaussian")
    }
    print(
        f"Gaussian-Bernoulli RBM (standardized pixels), test LL per image: RBM "
        f"{gb['test_ll']:.2f}, diagonal Gaussian {gb['diagonal_gaussian']:.2f}, "
        f"full-covariance Gaussian {gb['full_gaussian']:.2f}",
        flush=True,
    )

    # 5. Deep belief net, greedy
    pyro.set_rng_seed(seed)
    start = time.perf_counter()
    first = fit_rbm(
        x_train, 100, loss=ContrastiveDivergence(1, persistent=True, num_chains=50), epochs=epochs
    )
    hidden = DeepBeliefNet([first]).propagate_up(x_train, sample=True)[-1]
    second = fit_rbm(
        hidden, 50, loss=ContrastiveDivergence(1, persistent=True, num_chains=50), epochs=epochs
    )
    dbn = DeepBeliefNet([first, second])
    dbn_seconds = time.perf_counter() - start
    bound, log_z, se = dbn_test_ll(dbn, x_test, x_train, num_betas)
    summary["DBN 64-100-50 (AIS + bound)"] = (
        float(bound.mean()),
        combined_se(bound, se),
        dbn_seconds,
    )
    results["dbn"] = {"test_ll_lower_bound": float(bound.mean()), "log_partition_top": log_z}

    # 7. Deep Boltzmann machine
    pyro.set_rng_seed(seed)
    start = time.perf_counter()
    dbm = train_dbm(x_train, epochs)
    dbm_seconds = time.perf_counter() - start
    est = dbm.log_partition(method="ais", num_chains=100, num_betas=num_betas, data=x_train)
    with torch.no_grad():
        bound = dbm.log_likelihood_lower_bound(x_test, est.log_partition)
    summary["DBM 64-100-50 (AIS + bound)"] = (
        float(bound.mean()),
        combined_se(bound, float(est.stderr)),
        dbm_seconds,
    )
    results["dbm"] = {
        "test_ll_lower_bound": float(bound.mean()),
        "log_partition": float(est.log_partition),
        "log_partition_stderr": float(est.stderr),
    }
    results["summary"] = {
        name: {"test_ll": ll, "se": se, "train_seconds": sec}
        for name, (ll, se, sec) in summary.items()
    }
    print(f"{'model':34s} {'test LL':>9s} {'se':>6s} {'train s':>8s}")
    print(f"{'uniform over 2^64 images':34s} {-64 * math.log(2):9.2f}")
    for name, (ll, se, sec) in summary.items():
        print(f"{name:34s} {ll:9.2f} {se:6.2f} {sec:8.1f}", flush=True)

    # 6. Langevin EBM on two moons
    pyro.set_rng_seed(seed)
    results["ebm_two_moons"] = ebm_two_moons(20 if smoke else 3000, out)
    e = results["ebm_two_moons"]
    print(
        f"EBM on two moons (x2 scale): test LL {e['test_ll']:.3f} nats (log Z by quadrature), "
        f"full-covariance Gaussian {e['gaussian_test_ll']:.3f}",
        flush=True,
    )

    if out is not None:
        with torch.no_grad():
            gb_samples = gb["rbm"].sample((16,)) * gb["unstandardize"] + gb["mean"]
            s = results["summary"]
            rbm20, dbn_name, dbm_name = (
                "RBM 64-20, CD-25 (exact)",
                "DBN 64-100-50 (AIS + bound)",
                "DBM 64-100-50 (AIS + bound)",
            )
            save_digit_grid(
                {
                    f"test images (binarized; {len(x_test)} held out, the first 16)": x_test,
                    f"RBM 64-20, CD-25, exact samples: test log-likelihood "
                    f"{s[rbm20]['test_ll']:.2f} nats/img (exact)": small["CD-25"].sample((16,)),
                    f"DBN 64-100-50, top-down samples (mean activations): test bound "
                    f"{s[dbn_name]['test_ll']:.2f} nats/img": dbn.sample((16,)),
                    f"DBM 64-100-50, block-Gibbs samples (1000 sweeps): test bound "
                    f"{s[dbm_name]['test_ll']:.2f} nats/img": dbm.sample((16,)),
                    f"Gaussian-Bernoulli RBM, exact samples (real-valued pixels / 16): test "
                    f"{gb['test_ll']:.2f} nats/img (standardized)": gb_samples / 16,
                },
                out / "rbm_digits.png",
                f"Energy models of 8x8 digits (seed {seed}): test images and samples",
            )
    return results


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="short budget, for the test suite")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per RBM (100)")
    parser.add_argument("--out", type=Path, default=Path("outputs"))
    parser.add_argument("--ais-betas", type=int, default=None, help="AIS temperatures (14500)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="one run per seed")
    parser.add_argument("--seed", type=int, default=None, help="one seed (as --seeds N)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args(argv)
    from pyrogen.analysis.report import seed_spread, set_threads, write_results

    set_threads(args.threads)
    started = time.perf_counter()
    seeds = [args.seed] if args.seed is not None else args.seeds
    epochs = args.epochs or (1 if args.smoke else 100)
    num_betas = args.ais_betas or (100 if args.smoke else 14500)
    big = (25,) if args.smoke else (100, 500)

    import matplotlib

    matplotlib.use("Agg")
    args.out.mkdir(parents=True, exist_ok=True)
    dtype = torch.float64
    x_train, x_test, _, _ = load_digits(dtype=dtype)
    real_train, real_test = x_train, x_test
    x_train, x_test = (x_train >= 8).to(dtype), (x_test >= 8).to(dtype)
    if args.smoke:
        x_train, x_test = x_train[:200], x_test[:50]
        real_train, real_test = real_train[:200], real_test[:50]
    per_seed = {}
    for seed in seeds:
        print(f"--- seed {seed}", flush=True)
        per_seed[seed] = run_seed(
            seed,
            x_train,
            x_test,
            real_train,
            real_test,
            epochs=epochs,
            num_betas=num_betas,
            big=big,
            smoke=args.smoke,
            out=args.out if seed == seeds[0] else None,
        )
    reduced = ""
    if args.smoke:
        reduced = "--smoke: 200 training and 50 test images, 1 epoch, 100 AIS temperatures"
    else:
        parts = [f"--epochs {args.epochs} (full mode: 100)"] if args.epochs else []
        if args.ais_betas:
            parts.append(f"--ais-betas {args.ais_betas} (full mode: 14500)")
        reduced = "; ".join(parts)
    record = {
        "epochs": epochs,
        "ais_betas": num_betas,
        "spread_over_seeds": seed_spread(per_seed),
        "per_seed": {str(seed): r for seed, r in per_seed.items()},
    }
    write_results(
        args.out / "rbm_digits.json",
        record,
        title="Energy models of 8x8 digits: RBMs, DBN, DBM, EBM",
        script=__file__,
        argv=argv,
        description=__doc__.split("\nRun:")[0],
        started=started,
        reduced=reduced,
    )
    return record


if __name__ == "__main__":
    main()
