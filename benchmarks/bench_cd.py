"""Contrastive divergence: an epoch of PCD-1 in pyrogen (``pyro.infer.SVI`` with
``ContrastiveDivergence``) against scikit-learn's ``BernoulliRBM``, side by side in one process.

Case (the RBM example's sizes): scikit-learn's 8x8 digits binarized at pixel >= 8, the 1437
training images (``pyrogen.datasets.load_digits``), float64, an RBM with 64 visible and 20
hidden units, PCD-1 with one persistent chain per batch row, plain SGD with scikit-learn's
default learning rate 0.1 per batch mean, batches taken in order, at batch 10 and 100. Both
libraries do the same arithmetic per batch: the hidden probabilities of the data, one block
Gibbs sweep of the chains, the hidden probabilities of the chains, the three gradients.

- ``pyrogen``: the user's model (``pyro.param`` for the weight and biases, a subsampled data
  plate, ``BernoulliRBM`` observing the batch, as :func:`pyrogen.infer.fit_rbm` writes it),
  an empty guide, ``SVI(model, guide, SGD({"lr": 0.1 / N}), ContrastiveDivergence(1,
  persistent=True, num_chains=batch))`` (the plate scales the loss by ``N / batch``, so this
  is scikit-learn's step). It takes the closed-form step once the first call has traced the
  model.
- ``pyrogen traced``: the same with ``fast=False`` (the model traced and differentiated every
  step), for reference.
- ``SVI floor``: ``SVI.step`` with a loss that only reads the three parameters (what Pyro's
  step costs by itself, mostly its optimizer stepping one ``torch.optim.SGD`` per parameter).
- ``scikit-learn``: ``BernoulliRBM(n_components=20, batch_size=batch, n_iter=E)``; its ``fit``
  time divided by ``E`` (its one-off set-up is spread over the epochs).

Each repeat times ``--epochs`` epochs of every case in turn (round robin); the figure is the
median over ``--repeats`` of the seconds per epoch. Ratios are ``pyrogen / scikit-learn``
(< 1: pyrogen is faster). ``--threads`` limits torch and the BLAS behind NumPy alike.

Run: ``python benchmarks/bench_cd.py [--threads 1] [--repeats 7] [--epochs 3] [--quick]
[--out docs/results/bench_cd.json]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import pyro
import torch
from pyro.infer import ELBO, SVI
from pyro.optim import SGD

from pyrogen.analysis.report import set_threads, write_results
from pyrogen.datasets import load_digits
from pyrogen.distributions import BernoulliRBM
from pyrogen.infer import ContrastiveDivergence

N_HIDDEN, LR = 20, 0.1
BATCHES = (10, 100)
OUT = Path(__file__).resolve().parents[1] / "docs" / "results" / "bench_cd.json"


def binary_digits() -> torch.Tensor:
    """The 1437 training digits, binarized at pixel >= 8, float64 ``(1437, 64)``."""
    x_train, _, _, _ = load_digits(dtype=torch.float64)
    return (x_train >= 8).to(torch.float64)


def pyrogen_epochs(x: torch.Tensor, batch: int, *, fast: bool):
    """A callable that runs ``epochs`` epochs of PCD-1 through ``pyro.infer.SVI`` (fresh
    parameters and chains per call, created before the clock starts)."""
    n, d = x.shape

    def model(v):
        w = pyro.param("weight", 0.01 * torch.randn(d, N_HIDDEN, dtype=x.dtype))
        b = pyro.param("visible_bias", torch.zeros(d, dtype=x.dtype))
        c = pyro.param("hidden_bias", torch.zeros(N_HIDDEN, dtype=x.dtype))
        with pyro.plate("data", n, subsample_size=len(v)):
            pyro.sample("v", BernoulliRBM(w, b, c), obs=v)

    batches = [x[i : i + batch] for i in range(0, n, batch)]

    def run(epochs: int) -> float:
        with pyro.get_param_store().scope():
            loss = ContrastiveDivergence(1, persistent=True, num_chains=batch, fast=fast)
            svi = SVI(model, lambda v: None, SGD({"lr": LR / n}), loss)
            svi.step(batches[0])  # parameters, chains and the traced signature exist
            start = time.perf_counter()
            for _ in range(epochs):
                for v in batches:
                    svi.step(v)
            return (time.perf_counter() - start) / epochs

    return run


class ReadParamsOnly(ELBO):
    """A loss that only reads the three parameters and gives them zero gradients: what
    ``SVI.step`` costs by itself (its optimizer steps a ``torch.optim`` object per
    parameter), the floor under any loss."""

    def loss(self, model, guide, *args, **kwargs) -> float:
        return 0.0

    def _get_trace(self, *args, **kwargs):  # pragma: no cover - not used
        raise NotImplementedError

    def loss_and_grads(self, model, guide, *args, **kwargs) -> float:
        for name in ("weight", "visible_bias", "hidden_bias"):
            p = pyro.param(name)
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        return 0.0


def floor_epochs(x: torch.Tensor, batch: int):
    """A callable timing ``SVI.step`` with :class:`ReadParamsOnly` over an epoch's batches."""
    n, d = x.shape
    batches = [x[i : i + batch] for i in range(0, n, batch)]

    def run(epochs: int) -> float:
        with pyro.get_param_store().scope():
            pyro.param("weight", torch.zeros(d, N_HIDDEN, dtype=x.dtype))
            pyro.param("visible_bias", torch.zeros(d, dtype=x.dtype))
            pyro.param("hidden_bias", torch.zeros(N_HIDDEN, dtype=x.dtype))
            svi = SVI(lambda v: None, lambda v: None, SGD({"lr": LR / n}), ReadParamsOnly())
            svi.step(batches[0])
            start = time.perf_counter()
            for _ in range(epochs):
                for v in batches:
                    svi.step(v)
            return (time.perf_counter() - start) / epochs

    return run


def sklearn_epochs(x: torch.Tensor, batch: int):
    """A callable that fits scikit-learn's BernoulliRBM for ``epochs`` epochs."""
    from sklearn.neural_network import BernoulliRBM as SkRBM

    data = x.numpy()

    def run(epochs: int) -> float:
        sk = SkRBM(n_components=N_HIDDEN, learning_rate=LR, batch_size=batch, n_iter=epochs)
        sk.random_state = 0
        start = time.perf_counter()
        sk.fit(data)
        return (time.perf_counter() - start) / epochs

    return run


def table(x: torch.Tensor | None = None) -> list[dict]:
    """This script's cases: one dict per batch size with ``name``,
    ``fn_pyrogen``, ``fn_pyrogen_traced``, ``fn_svi_floor`` and ``fn_peer`` (each
    ``fn(epochs) -> seconds per epoch``), ``peer`` (the peer library) and ``unit``."""
    x = binary_digits() if x is None else x
    return [
        {
            "name": f"PCD-1 epoch, RBM 64-{N_HIDDEN}, batch {batch}",
            "fn_pyrogen": pyrogen_epochs(x, batch, fast=True),
            "fn_pyrogen_traced": pyrogen_epochs(x, batch, fast=False),
            "fn_svi_floor": floor_epochs(x, batch),
            "fn_peer": sklearn_epochs(x, batch),
            "peer": "scikit-learn",
            "unit": "s/epoch",
            "batch": batch,
        }
        for batch in BATCHES
    ]


def cases(quick: bool = False, device: str = "cpu") -> list[dict]:
    """The registry entry (see :mod:`benchmarks.harness`): per batch size, one epoch of
    ``pyrogen`` (target: at most 2x scikit-learn's time at batch 10, at most 1x at batch 100),
    ``pyrogen traced`` and ``SVI floor`` (ours, for reference) and ``scikit-learn``. CPU only
    (scikit-learn has no GPU); ``quick`` uses 100 images."""
    x = binary_digits()
    x = x[:100] if quick else x
    targets = {10: 0.5, 100: 1.0}
    rows = []
    for c in table(x):
        name = f"{c['name']} (s/epoch)"
        for library, key in (
            ("pyrogen", "fn_pyrogen"),
            ("pyrogen traced", "fn_pyrogen_traced"),
            ("pyrogen SVI floor", "fn_svi_floor"),
            ("scikit-learn", "fn_peer"),
        ):
            row = {"case": name, "library": library, "fn": lambda f=c[key]: f(1)}
            if key == "fn_pyrogen":
                row["target"] = targets.get(c["batch"], 1.0)
            rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="torch and BLAS threads")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--epochs", type=int, default=3, help="epochs per timed repeat")
    parser.add_argument("--quick", action="store_true", help="one short repeat (test suite)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    from threadpoolctl import threadpool_limits

    started = time.perf_counter()
    threads = set_threads(args.threads)
    repeats, epochs = (1, 1) if args.quick else (args.repeats, args.epochs)
    pyro.set_rng_seed(0)
    rows = []
    with threadpool_limits(limits=threads):
        table = globals()["table"]()
        keys = {"pyrogen": "fn_pyrogen", "traced": "fn_pyrogen_traced"}
        keys |= {"floor": "fn_svi_floor", "peer": "fn_peer"}
        times = {(c["name"], k): [] for c in table for k in keys}
        for _ in range(repeats):  # round robin
            for c in table:
                for key, fn in keys.items():
                    times[(c["name"], key)].append(c[fn](epochs))
    label = f"case ({threads} thread{'s' if threads > 1 else ''})"
    print(
        f"{label:36s} {'pyrogen s':>9s} {'traced s':>9s} {'SVI floor s':>11s} "
        f"{'sklearn s':>9s} {'pyrogen/sk':>10s} {'traced/sk':>9s} {'floor/sk':>8s}"
    )
    for c in table:
        ours, traced, floor, peer = (
            statistics.median(times[(c["name"], k)]) for k in ("pyrogen", "traced", "floor", "peer")
        )
        rows.append(
            {
                "case": c["name"],
                "batch": c["batch"],
                "pyrogen_s_per_epoch": ours,
                "pyrogen_traced_s_per_epoch": traced,
                "svi_floor_s_per_epoch": floor,
                "sklearn_s_per_epoch": peer,
                "ratio_pyrogen_over_sklearn": ours / peer,
                "ratio_traced_over_sklearn": traced / peer,
                "ratio_svi_floor_over_sklearn": floor / peer,
                "repeats": repeats,
                "epochs_per_repeat": epochs,
            }
        )
        print(
            f"{c['name']:36s} {ours:9.4f} {traced:9.4f} {floor:11.4f} {peer:9.4f} "
            f"{ours / peer:9.2f}x {traced / peer:8.2f}x {floor / peer:7.2f}x",
            flush=True,
        )
    report = {"threads": threads, "rows": rows, "numpy": np.__version__}
    write_results(
        args.out,
        report,
        title="Contrastive divergence: pyrogen (SVI) against scikit-learn's BernoulliRBM",
        script=__file__,
        argv=argv,
        description=__doc__.split("\nRun:")[0],
        started=started,
    )
    return report


if __name__ == "__main__":
    main()
