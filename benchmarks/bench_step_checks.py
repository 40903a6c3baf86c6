"""Cost of the finite-step check of pyrogen's SVI losses, per step, on the MNIST VAE.

Case: one ``SVI.step`` (forward, backward, Adam) of ``examples/vae_mnist.py``'s Bernoulli VAE
(784-200-200-20 encoder, 20-200-200-784 decoder) on a batch of 100 random binary images, with
``AnnealedELBO(1.0)`` and ``IWAE(5, "dreg")`` as they ship (the loss and every gradient
checked before any ``.grad`` is written) against the same losses with a plain ``backward()``
and no check. Both variants run interleaved in one process on one thread; times are the
process's CPU time (``time.process_time``: on one thread it is the compute time, and it does
not count the waits of a shared machine), the median over ``--repeats`` rounds of ``--steps``
steps each (the variant that runs first alternates); the overhead is the median over rounds
of ``checked / unchecked - 1``, next to the same figure for two identical unchecked copies
(the noise floor of the machine). The check alone (one sum per gradient, stacked, one
synchronization) is timed too, as a fraction of the unchecked step.

Run: ``python benchmarks/bench_step_checks.py [--repeats 40] [--steps 5]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import time
from pathlib import Path

import pyro
import torch
from pyro.infer import SVI
from pyro.optim import Adam

from pyrogen.infer import IWAE, AnnealedELBO
from pyrogen.infer.checks import checked_grads


def load_vae():
    path = Path(__file__).resolve().parents[1] / "examples" / "vae_mnist.py"
    spec = importlib.util.spec_from_file_location("vae_mnist", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.VAE


class UncheckedAnnealedELBO(AnnealedELBO):
    """The loss with a plain ``backward()``: no check (the baseline)."""

    def loss_and_grads(self, model, guide, *args, **kwargs):
        loss, surrogate = self.loss_and_surrogate(model, guide, *args, **kwargs)
        surrogate.backward()
        self.num_steps += 1
        return float(loss.detach())


class UncheckedIWAE(IWAE):
    def loss_and_grads(self, model, guide, *args, **kwargs):
        loss, surrogate = self.loss_and_surrogate(model, guide, *args, **kwargs)
        surrogate.backward()
        self.num_steps += 1
        return float(loss.detach())


def time_steps(svi: SVI, x: torch.Tensor, steps: int) -> float:
    start = time.process_time()
    for _ in range(steps):
        svi.step(x)
    return (time.process_time() - start) / steps


def time_check(vae, reps: int = 200) -> float:
    """Seconds for :func:`checked_grads`'s fused test on the VAE's gradients (median of 5)."""
    params = list(vae.parameters())
    loss = sum((p**2).sum() for p in params)
    grads = torch.autograd.grad(loss, params)
    loss = loss.detach()
    rounds = []
    for _ in range(5):
        start = time.process_time()
        for _ in range(reps):
            sums = [loss] + [g.sum() for g in grads]
            assert bool(torch.isfinite(torch.stack(sums)).all())
        rounds.append((time.process_time() - start) / reps)
    p = torch.zeros(3, requires_grad=True)  # the same test as the library's
    checked_grads(torch.tensor(0.0), (p**2).sum(), [p], where="smoke")
    return statistics.median(rounds)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    pyro.set_rng_seed(0)
    vae = load_vae()()
    x = torch.bernoulli(torch.full((100, 784), 0.3))
    variants = {
        "AnnealedELBO(1.0)": (AnnealedELBO, UncheckedAnnealedELBO, (1.0,)),
        'IWAE(5, "dreg")': (IWAE, UncheckedIWAE, (5, "dreg")),
    }
    t_check = time_check(vae)
    print(f"torch {torch.__version__}, pyro {pyro.__version__}, 1 thread, batch 100")
    print(
        f"the fused check alone ({len(list(vae.parameters()))} gradients, "
        f"{sum(p.numel() for p in vae.parameters())} numbers): {1e3 * t_check:.3f} ms"
    )
    print(
        f"{'loss':20s} {'unchecked ms':>13s} {'checked ms':>11s} {'overhead':>9s} "
        f"{'noise A/A':>10s} {'check alone':>12s}"
    )
    for name, (checked, unchecked, loss_args) in variants.items():
        pyro.clear_param_store()
        # checked, unchecked, and a second unchecked copy: the A/A difference is the noise floor
        losses = (checked(*loss_args), unchecked(*loss_args), unchecked(*loss_args))
        svis = [SVI(vae.model, vae.guide, Adam({"lr": 1e-4}), loss) for loss in losses]
        for svi in svis:
            time_steps(svi, x, 3)  # warm up
        times = ([], [], [])
        for r in range(args.repeats):
            for i in (0, 1, 2) if r % 2 == 0 else (2, 1, 0):  # alternate the order
                times[i].append(time_steps(svis[i], x, args.steps))
        t_checked, t_plain = statistics.median(times[0]), statistics.median(times[1])
        # paired rounds: the median ratio cancels slow drifts of a shared machine
        ratio = statistics.median(c / u for c, u in zip(times[0], times[1], strict=True))
        noise = statistics.median(c / u for c, u in zip(times[2], times[1], strict=True))
        print(
            f"{name:20s} {1e3 * t_plain:13.2f} {1e3 * t_checked:11.2f} "
            f"{100 * (ratio - 1):+8.2f}% {100 * (noise - 1):+9.2f}% "
            f"{100 * t_check / t_plain:11.2f}%"
        )


if __name__ == "__main__":
    main()
