"""Data-parallel VAE on MNIST-5k with torch.distributed: ``torchrun --nproc_per_node 2``.

The VAE of ``examples/vae_mnist.py`` (imported from it: 20 latents, MLP 784-200-200 encoder and
20-200-200-784 decoder, tanh, Bernoulli likelihood), trained with ``Trace_ELBO`` and Adam
(lr 1e-3) at a total batch of 100 images per step, split evenly over the workers. Each worker
draws its part of every batch with ``torch.utils.data.DistributedSampler`` (one shared
permutation per epoch), binarizes it afresh, and passes the indices to
``pyro.plate("data", 4000, subsample=indices)``, so its loss estimates the full-data ELBO;
``pyrogen.infer.DistributedSVI`` averages the gradients over the workers before Adam's step.
(The full-data scale makes the gradient 40 times the batch-sum gradient of ``vae_mnist.py``;
Adam is invariant to that factor up to its ``eps``.) The initial parameters are broadcast from
rank 0; each worker seeds its own noise with ``seed + rank``.

Every ``--eval-every`` steps the workers estimate the test ELBO together (one draw per test
image, the 1000 test images split over the workers), off the training clock. At the end rank 0
prints the figures of ``vae_mnist.py`` for its ``VAE`` variant (its ``evaluate``: test
log-likelihood with K = ``--eval-samples`` importance draws, test ELBO averaged over 10 draws,
active units), steps per second and the training time until the test ELBO first reached
``--target-elbo``, and writes ``<out>/distributed_vae_<W>proc.json`` (the record that the
results page ``docs/results/distributed_vae_<W>proc.rst`` renders: command, date, machine,
load average, versions, every number) and ``<out>/distributed_vae.png``. Only rank 0 prints
and writes.

Run: ``torchrun --nproc_per_node 2 examples/distributed_vae.py --threads 1`` (gloo on CPU,
NCCL with one GPU per worker when CUDA is present); ``python examples/distributed_vae.py
--threads 1`` runs one process without a process group. ``--seeds 0 1 2`` trains once per seed
(the record gives each seed's figures and their spread: mean, sample sd, min, max); ``--smoke``
for a seconds-long check, ``--threads`` for torch's threads per worker.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import pyro
import pyro.distributions as dist
import torch
import torch.distributed
from pyro.infer import Trace_ELBO
from pyro.optim import Adam
from torch.utils.data import DistributedSampler

from pyrogen.analysis.report import seed_spread, write_results
from pyrogen.datasets import load_mnist5k
from pyrogen.infer import DistributedSVI, broadcast_parameters, is_main_process

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vae_mnist import VAE, Z_DIM, evaluate, save_grid


class ShardedVAE(VAE):
    """``vae_mnist.VAE`` with its data plate at the full data size and a worker's indices."""

    def sharded_model(self, x: torch.Tensor, idx: torch.Tensor, size: int) -> None:
        pyro.module("vae", self)
        with pyro.plate("data", size, subsample=idx):
            prior = dist.Normal(x.new_zeros(Z_DIM), x.new_ones(Z_DIM)).to_event(1)
            z = pyro.sample("z", prior)
            pyro.sample("x", dist.Bernoulli(logits=self.decode(z)).to_event(1), obs=x)

    def sharded_guide(self, x: torch.Tensor, idx: torch.Tensor, size: int) -> None:
        pyro.module("vae", self)
        with pyro.plate("data", size, subsample=idx):
            pyro.sample("z", self.posterior(x))


def setup() -> tuple[int, int, torch.device]:
    """Join the process group that torchrun describes (if any): ``(rank, world, device)``."""
    if "RANK" not in os.environ:
        return 0, 1, torch.device("cpu")
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    torch.distributed.init_process_group("nccl" if cuda else "gloo")
    device = torch.device("cuda", torch.cuda.current_device()) if cuda else torch.device("cpu")
    return torch.distributed.get_rank(), torch.distributed.get_world_size(), device


def train(
    args: argparse.Namespace,
    seed: int,
    x_train: torch.Tensor,
    x_test: torch.Tensor,
    epochs: int,
    eval_every: int,
) -> tuple[dict, ShardedVAE]:
    """One seed's data-parallel training run (every worker calls it): its figures (steps,
    training seconds, steps per second, time to ``--target-elbo``, the test-ELBO curve) and the
    trained VAE."""
    world = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
    rank = torch.distributed.get_rank() if world > 1 else 0
    device = x_train.device
    local_batch = args.batch_size // world
    n_train, n_test = x_train.shape[0], x_test.shape[0]
    test_idx = torch.arange(n_test, device=device).tensor_split(world)[rank]
    pyro.set_rng_seed(seed)
    pyro.clear_param_store()
    vae = ShardedVAE().to(device=device, dtype=torch.float32)  # the data are float32
    # the test set may not split evenly: weighting each worker by its shard's size makes the
    # averaged test ELBO the one of the whole test set
    svi = DistributedSVI(
        vae.sharded_model,
        vae.sharded_guide,
        Adam({"lr": 1e-3}),
        Trace_ELBO(),
        shard_size=lambda x, idx, n: len(idx),
    )

    def test_elbo() -> float:
        return -svi.evaluate_loss(x_test[test_idx], test_idx, n_test) / n_test

    test_elbo()  # creates the parameters on every worker
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])  # its first use imports for seconds
    broadcast_parameters()
    pyro.set_rng_seed(seed + rank)
    sampler = DistributedSampler(
        range(n_train), num_replicas=world, rank=rank, shuffle=True, seed=seed
    )
    curve, step, train_seconds, reached = [], 0, 0.0, None
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        order = torch.tensor(list(sampler), device=device)
        x_bin = torch.bernoulli(x_train[order])  # this worker's images, binarized afresh
        for i in range(0, len(order) - local_batch + 1, local_batch):
            start = time.perf_counter()
            svi.step(x_bin[i : i + local_batch], order[i : i + local_batch], n_train)
            train_seconds += time.perf_counter() - start
            step += 1
            if step % eval_every == 0:
                elbo = test_elbo()
                curve.append({"step": step, "train_seconds": train_seconds, "test_elbo": elbo})
                if reached is None and elbo >= args.target_elbo:
                    reached = curve[-1]
        if is_main_process() and curve:
            print(
                f"seed {seed}  epoch {epoch + 1:3d}  step {step:5d}  train time "
                f"{train_seconds:7.1f} s  test ELBO {curve[-1]['test_elbo']:8.2f}",
                flush=True,
            )
    if is_main_process():
        print(
            f"seed {seed}: {step / train_seconds:.1f} steps/s; test ELBO >= {args.target_elbo} "
            + (
                "(not reached)"
                if reached is None
                else f"after {reached['step']} steps, {reached['train_seconds']:.1f} s of training"
            ),
            flush=True,
        )
    result = {
        "steps": step,
        "train_seconds": train_seconds,
        "steps_per_second": step / train_seconds,
        "seconds_per_epoch": train_seconds / epochs,
        "seconds_to_target": None if reached is None else reached["train_seconds"],
        "steps_to_target": None if reached is None else reached["step"],
        "test_elbo_curve": curve,
    }
    return result, vae


FULL = {"epochs": 20, "eval_samples": 5000}


def main(argv: list[str] | None = None) -> dict | None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny budget, for the test suite")
    parser.add_argument("--epochs", type=int, default=None, help=f"epochs ({FULL['epochs']})")
    parser.add_argument("--batch-size", type=int, default=100, help="total over the workers")
    parser.add_argument(
        "--eval-samples", type=int, default=None, help=f"K for log p(x) ({FULL['eval_samples']})"
    )
    parser.add_argument("--eval-every", type=int, default=10, help="steps between test ELBOs")
    parser.add_argument("--target-elbo", type=float, default=-160.0, help="nats per image")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per worker")
    parser.add_argument("--out", type=Path, default=Path("outputs"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="one run per seed")
    parser.add_argument("--seed", type=int, default=None, help="one seed (as --seeds N)")
    args = parser.parse_args(argv)
    seeds = [args.seed] if args.seed is not None else args.seeds
    started = time.perf_counter()
    epochs = args.epochs or (1 if args.smoke else FULL["epochs"])
    eval_samples = args.eval_samples
    if eval_samples is None:
        eval_samples = 20 if args.smoke else FULL["eval_samples"]
    eval_every = 1 if args.smoke else args.eval_every
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    _, world, device = setup()
    main_process = is_main_process()
    if args.batch_size % world:
        raise ValueError(f"--batch-size {args.batch_size} must be divisible by {world} workers")
    start_load = os.getloadavg()
    if main_process:
        backend = torch.distributed.get_backend() if world > 1 else "none"
        print(
            f"workers {world} ({backend}), torch threads per worker {torch.get_num_threads()}, "
            f"batch {args.batch_size} ({args.batch_size // world} per worker), "
            f"load average {start_load}",
            flush=True,
        )

    x_train, x_test, y_train, y_test = load_mnist5k(dtype=torch.float32)
    if args.smoke:
        x_train, y_train, x_test, y_test = x_train[:300], y_train[:300], x_test[:50], y_test[:50]
    x_test = torch.bernoulli(x_test, generator=torch.Generator().manual_seed(1234))
    x_train, x_test = x_train.to(device), x_test.to(device)

    per_seed, trained = {}, {}
    for seed in seeds:
        per_seed[seed], trained[seed] = train(args, seed, x_train, x_test, epochs, eval_every)
    if world > 1:
        # every worker reaches the barrier before any tears down its gloo connections (a worker
        # exiting while a peer still used them could abort with "terminate called without an
        # active exception")
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()  # rank 0 evaluates alone
    if not main_process:
        return None

    for seed in seeds:
        figures, vae = per_seed[seed], trained[seed].cpu()
        if eval_samples:
            r = evaluate(vae, x_test.cpu(), y_test, num_samples=eval_samples, chunk=250)
            figures.update(r)
            print(
                f"seed {seed}: VAE (Trace_ELBO, {world} workers): test log p(x) "
                f"{r['test_log_likelihood']:.2f} (max se {r['max_stderr']:.3f}, "
                f"K={eval_samples}), test ELBO {r['test_elbo']:.2f}, active units "
                f"{r['active_units']}, {figures['seconds_per_epoch']:.2f} s/epoch",
                flush=True,
            )
            if seed == seeds[0]:
                args.out.mkdir(parents=True, exist_ok=True)
                grid = {f"VAE, {world} workers, seed {seed}": vae}
                save_grid(grid, x_test.cpu(), args.out / "distributed_vae.png")
    quantities = ["steps_per_second", "seconds_per_epoch", "seconds_to_target"]
    quantities += ["test_log_likelihood", "test_elbo", "active_units"]
    spread = seed_spread(
        {s: {k: v for k, v in r.items() if v is not None} for s, r in per_seed.items()},
        quantities,
    )
    if len(seeds) > 1:
        print(f"over seeds {' '.join(map(str, seeds))}: mean (sample sd)", flush=True)
        for q in quantities:
            if f"{q} mean" in spread:
                print(f"  {q:<22} {spread[f'{q} mean']:10.3f} ({spread[f'{q} sd']:.3f})")
    result = {
        "workers": world,
        "backend": backend,
        "threads_per_worker": torch.get_num_threads(),
        "load_average_1_5_15_at_start": list(start_load),
        "load_average_1_5_15_at_end": list(os.getloadavg()),
        "batch_size": args.batch_size,
        "epochs": epochs,
        "eval_samples": eval_samples,
        "target_elbo": args.target_elbo,
        "seeds": seeds,
        "spread_over_seeds": spread,
        "per_seed": {str(s): r for s, r in per_seed.items()},
    }
    reduced = "--smoke: 300 training and 50 test images, 1 epoch" if args.smoke else ""
    if not args.smoke:
        reduced = "; ".join(
            f"--{k.replace('_', '-')} {v} (full mode: {FULL[k]})"
            for k, v in (("epochs", epochs), ("eval_samples", eval_samples))
            if v != FULL[k]
        )
    args.out.mkdir(parents=True, exist_ok=True)
    return write_results(
        args.out / f"distributed_vae_{world}proc.json",
        result,
        title=f"Data-parallel VAE on MNIST-5k, {world} process{'es' if world > 1 else ''}",
        script=__file__,
        argv=argv,
        description=__doc__.split("\nRun:")[0],
        started=started,
        reduced=reduced,
        launcher=f"torchrun --nproc_per_node {world}" if world > 1 else "python",
    )


if __name__ == "__main__":
    main()
