"""Held-out quality of masked autoregressive flows at equal budget: pyrogen against its peers.

One protocol, one process, every library:

- data: scikit-learn's 8x8 digits, the stratified 1437/360 split with seed 0
  (:func:`pyrogen.datasets.load_digits`); uniform dequantization (a fresh draw every batch) and
  the logit preprocessing with ``alpha = 0.05`` over 17 levels
  (:func:`pyrogen.datasets.logit_transform`), whose log-determinant is counted, so that every
  figure is a density over pixels;
- model: a standard normal base and 5 MAF layers whose MADE has hidden sizes ``[64, 64]``;
- training: Adam, learning rate ``1e-3`` with cosine decay to zero over the steps (1,500 by
  default), batches of 128 taken from shuffled epochs, float32, loss ``-mean log p``;
- figure: test log-likelihood in nats per image averaged over 5 dequantization draws (the same
  draws for every model), and bits/dim ``= -log p / (64 ln 2)``. Higher nats is better.

Peers: Pyro's ``AffineAutoregressive(AutoRegressiveNN(64, [64, 64])).inv`` stacked five times
(Pyro's own defaults: a random variable order per layer, no permutation layers, the clamp
``[-5, 3]`` on the log-scale), nflows' ``MaskedAutoregressiveFlow`` (reversals, plain MADE blocks),
zuko's ``MAF`` and pyrogen's ``flows.maf`` with its defaults. Then variants of pyrogen's MAF,
each changing one factor from the defaults (added to pyrogen) or one factor of a replica of
Pyro's flow built from pyrogen's parts (removed from the replica): the soft log-scale bound, the
mixing between layers, the activation, the MADE's hidden degrees, the initialization of the last
layer, and the parametrization of the elementwise affine map (``x = (y - mu) e^{-s}`` as in
Papamakarios et al. 2017, against ``x = y e^{s} + mu`` in the data-to-noise direction as in Pyro,
nflows and zuko).

Run: ``python benchmarks/bench_maf_quality.py --threads 1 --seeds 0 1 2 --out out.json``
(the record its results pages render)
(about 15 s per model and seed on one core); ``--models`` picks a subset by name, ``--quick`` runs a
few steps of everything (the smoke test).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib.metadata
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pyro.distributions as dist
import pyro.distributions.transforms as T
import torch
from pyro.distributions.torch_transform import ComposeTransformModule
from pyro.distributions.transforms.utils import clamp_preserve_gradients
from pyro.nn import AutoRegressiveNN
from torch import nn
from torch.distributions import constraints

from pyrogen import flows
from pyrogen.analysis.report import write_results
from pyrogen.datasets import DIGITS_LEVELS, bits_per_dim, dequantize, load_digits, logit_transform
from pyrogen.nn import MADE
from pyrogen.transforms import Bijector, LULinear, MaskedAutoregressive, Permute, soft_bound

D = 64
NUM_LAYERS = 5
HIDDEN = (64, 64)
BATCH = 128
LR = 1e-3
EVAL_DRAWS = 5
EVAL_SEED = 12345


class LogitSpaceModel(nn.Module):
    """A density ``log_prob(h)`` over logit-space images ``h`` of shape ``(B, 64)``."""

    def __init__(self, modules: list[nn.Module], log_prob: Callable) -> None:
        super().__init__()
        self.parts = nn.ModuleList(modules)
        self._log_prob = log_prob

    def log_prob(self, h: torch.Tensor) -> torch.Tensor:
        return self._log_prob(h)


def _base() -> dist.Distribution:
    return dist.Normal(torch.zeros(D), torch.ones(D)).to_event(1)


def _from_transform(transform: nn.Module) -> LogitSpaceModel:
    """A noise-to-data transform (pyrogen's convention) under a standard normal base."""
    return LogitSpaceModel(
        [transform], lambda h: dist.TransformedDistribution(_base(), transform).log_prob(h)
    )


# -- peers -------------------------------------------------------------------------------------


def pyro_maf() -> LogitSpaceModel:
    layers = [T.AffineAutoregressive(AutoRegressiveNN(D, list(HIDDEN))) for _ in range(NUM_LAYERS)]
    parts = [layer.inv for layer in layers]
    return LogitSpaceModel(
        layers, lambda h: dist.TransformedDistribution(_base(), parts).log_prob(h)
    )


def nflows_maf() -> LogitSpaceModel:
    from nflows.flows import MaskedAutoregressiveFlow

    # num_blocks_per_layer=1 without residual blocks is a MADE with hidden sizes [64, 64]
    flow = MaskedAutoregressiveFlow(
        features=D,
        hidden_features=HIDDEN[0],
        num_layers=NUM_LAYERS,
        num_blocks_per_layer=len(HIDDEN) - 1,
        use_residual_blocks=False,
    )
    return LogitSpaceModel([flow], flow.log_prob)


def zuko_maf() -> LogitSpaceModel:
    import zuko

    flow = zuko.flows.MAF(D, 0, transforms=NUM_LAYERS, hidden_features=HIDDEN)
    return LogitSpaceModel([flow], lambda h: flow().log_prob(h))


def pyrogen_maf_default() -> LogitSpaceModel:
    return _from_transform(flows.maf(D, num_layers=NUM_LAYERS, hidden_dims=HIDDEN))


# -- pyrogen variants --------------------------------------------------------------------------


class AffineMAF(Bijector):
    r"""MAF layer with a choice of parametrization of its elementwise affine map.

    With :math:`(\mu, s) = \mathrm{MADE}(y)`, the data-to-noise direction (one pass, the one that
    scores data) is :math:`x = y e^{\tilde s} + \mu` for ``param="data"`` (Pyro's ``.inv``,
    nflows, zuko) or :math:`x = (y - \mu) e^{-\tilde s}` for ``param="noise"`` (pyrogen,
    Papamakarios et al. 2017), :math:`\tilde s` soft-bounded and/or clamped (``clamp`` bounds the
    data-direction log-scale, Pyro's ``[-5, 3]``); the forward (noise to data) is ``D``
    sequential passes. Shapes: ``(*batch, D)``.
    """

    domain = constraints.independent(constraints.real, 1)
    codomain = constraints.independent(constraints.real, 1)

    def __init__(self, made: MADE, param: str, bound: float | None, clamp: tuple | None) -> None:
        super().__init__((made.input_dim,))
        self.made, self.param, self.bound, self.clamp = made, param, bound, clamp

    def _shift_log_scale(self, y):
        """Shift and the data-direction log-scale (``x = y e^s + mu`` or ``(y - mu) e^s``)."""
        out = self.made(y)
        s = out[..., 1, :] if self.param == "data" else -out[..., 1, :]
        if self.clamp is not None:
            s = clamp_preserve_gradients(s, *self.clamp)
        return out[..., 0, :], soft_bound(s, self.bound)

    def inverse_and_ladj(self, y):
        shift, s = self._shift_log_scale(y)
        x = y * torch.exp(s) + shift if self.param == "data" else (y - shift) * torch.exp(s)
        return x, s.sum(-1)

    def forward_and_ladj(self, x):
        y = torch.zeros_like(x)
        for _ in range(self.made.input_dim):
            shift, s = self._shift_log_scale(y)
            y = (x - shift) * torch.exp(-s) if self.param == "data" else x * torch.exp(-s) + shift
        return y, -s.sum(-1)


@dataclasses.dataclass(frozen=True)
class Spec:
    """One factor setting of a pyrogen MAF; the defaults are ``flows.maf(order="natural")``'s
    (the same two orders alternating in every layer pair)."""

    order: str = "natural"  # MADE variable order of every layer ("random": one per layer)
    mixing: str = "reverse"  # between layers: "reverse", "lu", "none"
    bound: float | None = 5.0  # soft bound B tanh(s / B) on the log-scale
    clamp: tuple | None = None  # hard clamp of the log-scale (Pyro: (-5, 3))
    activation: type[nn.Module] = nn.ReLU
    degrees: str = "cyclic"  # hidden degrees: pyrogen's cyclic, or Pyro's round(linspace)
    init: str = "zero"  # last MADE layer: "zero" (identity at init) or "torch" (nn.Linear)
    param: str = "noise"  # "noise": x = (y - mu) e^{-s};  "data": x = y e^{s} + mu


def _pyro_degrees(made: MADE) -> None:
    """Rewrite the masks of ``made`` with Pyro's hidden degrees ``round(linspace(1, D-1, h))``."""
    d_in = made.degrees
    degrees = [d_in] + [
        torch.linspace(1, D - 1, layer.out_features).round().long() for layer in made.hidden
    ]
    for layer, a, b in zip(made.hidden, degrees[:-1], degrees[1:], strict=True):
        layer.mask.copy_((b[:, None] >= a[None, :]).to(layer.mask.dtype))
    out = (d_in[:, None] > degrees[-1][None, :]).repeat(made.num_params, 1)
    made.output.mask.copy_(out.to(made.output.mask.dtype))


def build_variant(spec: Spec) -> LogitSpaceModel:
    parts: list[nn.Module] = []
    for i in range(NUM_LAYERS):
        made = MADE(D, HIDDEN, num_params=2, order=spec.order, activation=spec.activation)
        if spec.degrees == "pyro":
            _pyro_degrees(made)
        if spec.init == "torch":
            made.output.reset_parameters()
        if spec.param == "noise" and spec.clamp is None:
            parts.append(MaskedAutoregressive(made, log_scale_bound=spec.bound))
        else:
            parts.append(AffineMAF(made, spec.param, spec.bound, spec.clamp))
        if i < NUM_LAYERS - 1 and spec.mixing == "reverse":
            parts.append(Permute(list(range(D - 1, -1, -1))))
        elif i < NUM_LAYERS - 1 and spec.mixing == "lu":
            parts.append(LULinear(D))
    return _from_transform(ComposeTransformModule(parts))


PYRO_REPLICA = Spec(
    order="random",
    mixing="none",
    bound=None,
    clamp=(-5.0, 3.0),
    degrees="pyro",
    init="torch",
    param="data",
)

# name: (group, factory); the first four are the peers of the table
MODELS: dict[str, tuple[str, Callable[[], LogitSpaceModel]]] = {
    "Pyro AffineAutoregressive.inv": ("peer", pyro_maf),
    "pyrogen flows.maf (defaults)": ("peer", pyrogen_maf_default),
    "nflows MaskedAutoregressiveFlow": ("peer", nflows_maf),
    "zuko MAF": ("peer", zuko_maf),
}
_VARIANTS = {
    "+ bound None": Spec(bound=None),
    "+ bound 10": Spec(bound=10.0),
    "+ bound 2": Spec(bound=2.0),
    "+ mixing lu": Spec(mixing="lu"),
    "+ mixing none": Spec(mixing="none"),
    "+ random order per layer, mixing none": Spec(order="random", mixing="none"),
    "+ random order per layer, reverse": Spec(order="random"),
    "+ random order per layer, mixing lu": Spec(order="random", mixing="lu"),
    "+ random order, mixing none, torch init": Spec(order="random", mixing="none", init="torch"),
    "+ random order, reverse, data-direction affine": Spec(order="random", param="data"),
    "+ random order, mixing none, data-direction affine": Spec(
        order="random", mixing="none", param="data"
    ),
    "+ tanh": Spec(activation=nn.Tanh),
    "+ Pyro hidden degrees": Spec(degrees="pyro"),
    "+ torch init of last layer": Spec(init="torch"),
    "+ data-direction affine": Spec(param="data"),
    "+ data-direction affine, bound None": Spec(param="data", bound=None),
    "Pyro replica (pyrogen parts)": PYRO_REPLICA,
    "replica - random order (natural+reverse)": dataclasses.replace(
        PYRO_REPLICA, order="natural", mixing="reverse"
    ),
    "replica - clamp (soft bound 5)": dataclasses.replace(PYRO_REPLICA, clamp=None, bound=5.0),
    "replica - Pyro degrees": dataclasses.replace(PYRO_REPLICA, degrees="cyclic"),
    "replica - torch init (zero)": dataclasses.replace(PYRO_REPLICA, init="zero"),
    "replica - data-direction (noise)": dataclasses.replace(PYRO_REPLICA, param="noise"),
}
for _name, _spec in _VARIANTS.items():
    MODELS[_name] = ("variant", lambda spec=_spec: build_variant(spec))


# -- protocol ----------------------------------------------------------------------------------

_LOGIT = logit_transform(DIGITS_LEVELS)


def pixel_log_prob(model: LogitSpaceModel, v: torch.Tensor) -> torch.Tensor:
    """``log p(v)`` over dequantized pixels (nats), with the logit preprocessing counted."""
    h = _LOGIT.inv(v)
    return model.log_prob(h) - _LOGIT.log_abs_det_jacobian(h, v).sum(-1)


def batches(n: int, size: int, generator: torch.Generator):
    """Indices of consecutive batches from shuffled epochs (no partial batches)."""
    while True:
        perm = torch.randperm(n, generator=generator)
        for i in range(n // size):
            yield perm[i * size : (i + 1) * size]


@torch.no_grad()
def evaluate(model: LogitSpaceModel, x: torch.Tensor, num_draws: int) -> float:
    g = torch.Generator().manual_seed(EVAL_SEED)
    return (
        sum(
            float(pixel_log_prob(model, dequantize(x, generator=g)).mean())
            for _ in range(num_draws)
        )
        / num_draws
    )


def run_one(factory, x_train, x_test, *, steps: int, seed: int, num_draws: int) -> dict:
    torch.manual_seed(seed)
    model = factory()
    num_params = sum(p.numel() for p in model.parameters())
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    stream = batches(x_train.shape[0], BATCH, g)
    t0 = time.perf_counter()
    model.train()
    loss = float("nan")
    for step in range(steps):
        v = dequantize(x_train[next(stream)], generator=g)
        loss_t = -pixel_log_prob(model, v).mean()
        if not torch.isfinite(loss_t):
            return {"params": num_params, "failed": f"non-finite loss at step {step}"}
        opt.zero_grad()
        loss_t.backward()
        opt.step()
        sched.step()
        loss = float(loss_t.detach())
    seconds = time.perf_counter() - t0
    model.eval()
    test = evaluate(model, x_test, num_draws)
    return {
        "params": num_params,
        "test_nats": test,
        "test_bits_per_dim": bits_per_dim(test, D),
        "train_nats": evaluate(model, x_train, 1),
        "final_batch_loss": loss,
        "seconds": seconds,
    }


def run_all(names, x_train, x_test, steps, seeds, num_draws) -> dict[str, dict]:
    results: dict[str, dict] = {}
    for name in names:
        group, factory = MODELS[name]
        runs = {}
        for seed in seeds:
            runs[seed] = run_one(
                factory, x_train, x_test, steps=steps, seed=seed, num_draws=num_draws
            )
            r = runs[seed]
            figure = f"{r['test_nats']:8.2f}" if "test_nats" in r else r["failed"]
            print(f"  {name:42s} seed {seed}: test {figure}", flush=True)
        results[name] = {
            "group": group,
            "params": next(iter(runs.values()))["params"],
            "runs": runs,
            **summarize(list(runs.values())),
        }
    return results


def print_table(results: dict, num_test: int, num_draws: int, steps: int, seeds) -> None:
    print(
        f"\nDigits 8x8 test log-likelihood ({num_test} images, {num_draws} dequantization"
        f" draws), {steps} steps, seeds {seeds}; higher nats is better"
    )
    print(
        f"{'model':44s} {'params':>7s} {'nats/img':>9s} {'sd':>5s} {'bits/dim':>8s} "
        f"{'train':>8s} {'s/run':>6s}"
    )
    for name, r in results.items():
        if "test_nats_mean" not in r:
            print(f"{name:44s} {r['params']:7d}  failed: {r['failed']}")
            continue
        print(
            f"{name:44s} {r['params']:7d} {r['test_nats_mean']:9.2f} {r['test_nats_std']:5.2f} "
            f"{r['test_bits_per_dim_mean']:8.4f} {r['train_nats_mean']:8.2f} "
            f"{r['seconds_mean']:6.1f}"
        )


def _versions() -> dict:
    out = {"python": sys.version.split()[0]}
    for pkg in ("torch", "pyro-ppl", "nflows", "zuko", "scikit-learn", "pyrogen"):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def summarize(runs: list[dict]) -> dict:
    ok = [r for r in runs if "test_nats" in r]
    if not ok:
        return {"failed": [r.get("failed") for r in runs]}
    t = torch.tensor([r["test_nats"] for r in ok], dtype=torch.float64)
    return {
        "test_nats_mean": float(t.mean()),
        "test_nats_std": float(t.std()) if len(ok) > 1 else 0.0,
        "test_bits_per_dim_mean": bits_per_dim(float(t.mean()), D),
        "train_nats_mean": sum(r["train_nats"] for r in ok) / len(ok),
        "seconds_mean": sum(r["seconds"] for r in ok) / len(ok),
        "num_failed": len(runs) - len(ok),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--models", nargs="+", default=None, help="names (default: all)")
    parser.add_argument("--quick", action="store_true", help="a few steps, one seed (smoke)")
    parser.add_argument("--out", type=Path, default=Path("outputs/bench_maf_quality.json"))
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.seeds = 3, args.seeds[:1]
    torch.set_num_threads(args.threads)
    print(f"torch threads: {torch.get_num_threads()}", flush=True)
    names = args.models or list(MODELS)
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        raise ValueError(f"unknown --models {unknown}; known: {list(MODELS)}")

    x_train, x_test, _, _ = load_digits(dtype=torch.float32)
    num_draws = 1 if args.quick else EVAL_DRAWS
    if args.quick:
        x_train, x_test = x_train[:256], x_test[:64]
    old_dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    try:
        results = run_all(names, x_train, x_test, args.steps, args.seeds, num_draws)
    finally:
        torch.set_default_dtype(old_dtype)
    print_table(results, x_test.shape[0], num_draws, args.steps, args.seeds)
    report = {
        "command": [sys.executable, *sys.argv] if argv is None else ["bench_maf_quality", *argv],
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
        },
        "versions": _versions(),
        "protocol": {
            "data": "sklearn digits, stratified 1437/360 split, seed 0",
            "preprocessing": f"uniform dequantization, logit alpha=0.05, {DIGITS_LEVELS} levels",
            "layers": NUM_LAYERS,
            "hidden": list(HIDDEN),
            "optimizer": f"Adam lr {LR}, cosine decay over {args.steps} steps",
            "batch_size": BATCH,
            "eval_draws": num_draws,
            "seeds": args.seeds,
            "dtype": "float32",
        },
        "results": results,
    }
    write_results(
        args.out,
        json.loads(json.dumps({"protocol": report["protocol"], "models": results}, default=str)),
        title="MAF quality at equal budget: pyrogen against Pyro, nflows and zuko",
        script=__file__,
        argv=argv,
        description=__doc__.split("\nRun:")[0],
        reduced=f"--quick: {args.steps} steps, 256/64 images, one seed" if args.quick else "",
    )
    print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
