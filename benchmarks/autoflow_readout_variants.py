"""Readout variants of AutoFlow's IAF under plain Adam: which is stable at lr 1e-2 and accurate
at lr 1e-3 in 5000 steps?

AutoFlow's default scales each MADE's output by ``1 / sqrt(H)`` (``output_scale="sqrt"``):
stable under plain Adam at lr 1e-2, but at lr 1e-3 it learns the non-centred eight schools'
shape too slowly for 5000 steps. This script fits the variants below, all built like the
default (3 IAF layers, MADE ``[max(32, D)] * 2`` with tanh, log-scale bound 2 nats), on one of
two problems with ``Trace_ELBO()`` and ``pyro.optim.Adam({"lr": lr})``:

- ``logreg``: the logistic regression of ``examples/logistic_regression.py`` (float32).
  Prints the mean of the last 100 losses, the largest loss after step 500 and 250-step means
  (nats); a divergence shows as losses in the thousands.
- ``noncentered``: the non-centred eight schools of ``examples/posteriordb_accuracy.py``
  (float64), scored as that example scores it (largest mean error in reference sds, largest
  relative sd error from 100,000 draws, and whether the target of 0.10 / 10% is met).

Variants (``--variants``):

- ``sqrt``, ``none``: ``AutoFlow(output_scale=...)``.
- ``gain-a<alpha>``: the ``sqrt`` readout times a learned gain ``exp(alpha * theta)`` per layer
  and per output (shift, log-scale), ``theta`` a parameter starting at 0: Adam moves the
  log-gain by about ``alpha * lr`` per step. ``gain-dim-a<alpha>``: one gain per latent and
  output.
- ``floor<delta>``: unscaled readout whose soft bound passes at least ``delta`` of the
  gradient (value unchanged: ``B tanh(s / B) + delta (s - stop_grad(s))``).
- ``plain-gradient``: unscaled readout with ``path_gradient=False``.

Run: ``python benchmarks/autoflow_readout_variants.py {logreg,noncentered} [--variants ...]
[--seeds 0 1 2] [--lr 0.01] [--steps 5000] [--threads 1]``.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
import time
from pathlib import Path

import pyro
import torch
from pyro.infer import SVI, Trace_ELBO

from pyrogen import flows
from pyrogen.analysis.report import set_threads
from pyrogen.infer import AutoFlow
from pyrogen.transforms import Autoregressive, Elementwise

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
import posteriordb_accuracy as pdb
from logistic_regression import load_data, make_model

BOUND = 2.0  # AutoFlow's default log_scale_bound


class GainReadout(Elementwise):
    """``inner`` fed ``scale * exp(alpha * layer.readout_log_gain)`` times its parameters."""

    def __init__(self, inner, layer, scale: float, alpha: float) -> None:
        self.inner, self.layer, self.num_params = inner, [layer], inner.num_params
        self.scale, self.alpha = scale, alpha

    def _params(self, params):
        gain = (self.alpha * self.layer[0].readout_log_gain).exp()
        return params * (self.scale * gain).to(params)

    def forward(self, x, params):
        return self.inner.forward(x, self._params(params))

    def inverse(self, y, params):
        return self.inner.inverse(y, self._params(params))


class FloorAffine(Elementwise):
    """Affine map with the soft-bounded log-scale ``B tanh(s / B)`` whose gradient in ``s`` is
    at least ``delta`` (the value is unchanged)."""

    num_params = 2

    def __init__(self, delta: float) -> None:
        self.delta = delta

    def _unpack(self, params):
        shift, raw = params.unbind(-1)
        log_scale = BOUND * torch.tanh(raw / BOUND) + self.delta * (raw - raw.detach())
        return shift, log_scale

    def forward(self, x, params):
        shift, log_scale = self._unpack(params)
        return x * log_scale.exp() + shift, log_scale

    def inverse(self, y, params):
        shift, log_scale = self._unpack(params)
        return (y - shift) * (-log_scale).exp(), -log_scale


def default_iaf(dim: int):
    return flows.iaf(
        dim,
        num_layers=3,
        hidden_dims=(max(32, dim),) * 2,
        activation=torch.nn.Tanh,
        log_scale_bound=BOUND,
    )


def gain_flow(alpha: float, per_dim: bool):
    def build(dim):
        flow = default_iaf(dim)
        for layer in flow:
            if isinstance(layer, Autoregressive):
                weight = layer.conditioner.output.weight
                shape = (dim, 2) if per_dim else (2,)
                layer.readout_log_gain = torch.nn.Parameter(weight.new_zeros(shape))
                width = float(weight.shape[-1])
                layer.transform = GainReadout(layer.transform, layer, width**-0.5, alpha)
        return flow

    return build


def floor_flow(delta: float):
    def build(dim):
        flow = default_iaf(dim)
        for layer in flow:
            if isinstance(layer, Autoregressive):
                layer.transform = FloorAffine(delta)
        return flow

    return build


def make_guide(variant: str, model):
    if variant in ("sqrt", "none"):
        return AutoFlow(model, output_scale=variant)
    if variant == "plain-gradient":
        return AutoFlow(model, output_scale="none", path_gradient=False)
    match = re.fullmatch(r"gain-(dim-)?a([0-9.]+)", variant)
    if match:
        return AutoFlow(model, flow=gain_flow(float(match[2]), bool(match[1])))
    match = re.fullmatch(r"floor([0-9.]+)", variant)
    if match:
        return AutoFlow(model, flow=floor_flow(float(match[1])))
    raise ValueError(f"unknown variant {variant!r}")


def run_logreg(variant: str, seed: int, lr: float, steps: int) -> str:
    x, y = load_data(torch.float32)
    model = make_model(x, y)
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    svi = SVI(model, make_guide(variant, model), pyro.optim.Adam({"lr": lr}), Trace_ELBO())
    losses = []
    for _ in range(steps):
        losses.append(svi.step())
        if not math.isfinite(losses[-1]) or losses[-1] > 1e6:
            break
    means = [
        sum(losses[i : i + 250]) / len(losses[i : i + 250]) for i in range(0, len(losses), 250)
    ]
    tail = losses[-100:]
    return (
        f"final100 {sum(tail) / len(tail):9.2f}  max>500 {max(losses[500:] or [0]):10.1f}  "
        f"steps {len(losses)}\n    250-step means: " + " ".join(f"{m:.0f}" for m in means)
    )


def run_noncentered(variant: str, seed: int, lr: float, steps: int) -> str:
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        folder, build_model = pdb.POSTERIORS["eight_schools_noncentered"]
        data, reference = pdb.load(folder)
        model = build_model(data)
        pyro.clear_param_store()
        pyro.set_rng_seed(seed)
        guide = make_guide(variant, model)
        pdb.fit(model, guide, steps=steps, optim="adam", lr=lr)
        r = pdb.evaluate(model, guide, reference, draws=4000, moment_draws=100_000)
        met = pdb.meets_target("eight_schools_noncentered", r)
    finally:
        torch.set_default_dtype(old)
    return (
        f"max|mean err| {r['max_abs_mean_error_sd']:.3f}  max|sd err| {r['worst_sd_error']:+.1%}"
        f"  k-hat {r['khat']:.2f}  {'met' if met else 'missed'}"
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("problem", choices=["logreg", "noncentered"])
    parser.add_argument("--variants", nargs="+", default=["sqrt", "gain-a10"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    set_threads(args.threads)
    run = run_logreg if args.problem == "logreg" else run_noncentered
    print(f"{args.problem}, plain Adam lr {args.lr}, {args.steps} steps", flush=True)
    for variant in args.variants:
        for seed in args.seeds:
            t0 = time.perf_counter()
            line = run(variant, seed, args.lr, args.steps)
            print(
                f"{variant:16s} seed {seed}  {line}  ({time.perf_counter() - t0:.0f} s)", flush=True
            )


if __name__ == "__main__":
    main()
