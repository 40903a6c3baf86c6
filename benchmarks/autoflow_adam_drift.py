"""Why AutoFlow's flow needs its readout scaled under plain Adam: a diagnosis on the logistic
regression of ``examples/logistic_regression.py`` (31 latents, float32).

For each ``--output-scale`` (default ``none sqrt``) it fits ``AutoFlow(output_scale=...)`` with
``Trace_ELBO()`` and plain ``pyro.optim.Adam({"lr": lr})`` and prints, every ``--every``
steps:

- the mean loss over the last ``--every`` steps (nats);
- per flow layer, the 99% quantile over 2000 base draws of the MADE's raw log-scale output
  (before the readout scale and the soft bound of 2 nats) and of its raw shift output;
- per flow layer, the rms over the output weights of Adam's normalized step
  ``|m| / sqrt(v)`` (1 when every step agrees in sign; about 0.2 or less when the
  gradient is mostly noise).

Then, at the last step (``--steps``) and for the same fitted guide, a z-test of the
path-derivative gradient against the plain (score-function-included) ELBO gradient: both
are unbiased for the same gradient, so their means over ``--draws`` draws (at least 20
batches of 500 vectorized particles, float64) agree to within their standard errors for a correct
estimator. It prints the largest ``|z|`` and the fraction of parameters with ``|z| > 4``
(about 6e-5 for independent normal ``z``).

The monitoring draws come from their own generator, so they do not change the fit.

Run: ``python benchmarks/autoflow_adam_drift.py [--steps 2500] [--lr 0.01] [--seed 0]
[--output-scale none sqrt] [--every 250] [--draws 20000] [--threads 1]``.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import pyro
import torch
from pyro.infer import SVI, Trace_ELBO

from pyrogen.analysis.report import set_threads
from pyrogen.infer import AutoFlow
from pyrogen.transforms import Autoregressive

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from logistic_regression import load_data, make_model


def layer_stats(guide, optim, generator) -> list[str]:
    """Per autoregressive layer: raw log-scale and shift q99, and Adam's normalized step rms."""
    rows = []
    store = pyro.get_param_store()
    with torch.no_grad():
        x = torch.randn(2000, guide.latent_dim, generator=generator)
        for i, layer in enumerate(guide.flow):
            if isinstance(layer, Autoregressive):
                raw = layer.conditioner(x).movedim(-2, -1)
                shift, log_scale = raw.unbind(-1)
                suffix = f"flow$$${i}.conditioner.output.weight"  # Pyro's module-path separator
                (name,) = [k for k in store.keys() if k.endswith(suffix)]
                param = store._params[name]
                state = optim.optim_objs[param].state[param]
                step = state["exp_avg"].abs() / (state["exp_avg_sq"].sqrt() + 1e-8)
                rows.append(
                    f"L{i}: s {log_scale.abs().quantile(0.99):5.2f} "
                    f"mu {shift.abs().quantile(0.99):5.2f} step {step.pow(2).mean().sqrt():4.2f}"
                )
            x = layer(x)
    return rows


def gradient_z_test(model64, guide, draws: int) -> tuple[float, float]:
    """Max |z| and the fraction of |z| > 4 between the mean path-derivative and plain ELBO
    gradients over ``draws`` draws (float64)."""
    guide = guide.double()
    params = [p for p in guide.parameters() if p.requires_grad]
    means, ses = [], []
    for path_gradient in (True, False):
        guide._path_gradient = path_gradient
        elbo = Trace_ELBO(num_particles=500, vectorize_particles=True, max_plate_nesting=1)
        batches = []
        for _ in range(max(20, draws // 500)):  # 20 batches at least: a usable standard error
            loss = elbo.differentiable_loss(model64, guide)
            grads = torch.autograd.grad(loss, params, allow_unused=True)
            pairs = zip(grads, params, strict=True)
            flat = [torch.zeros_like(p) if g is None else g for g, p in pairs]
            batches.append(torch.cat([g.reshape(-1) for g in flat]))
        stacked = torch.stack(batches)
        means.append(stacked.mean(0))
        ses.append(stacked.std(0) / math.sqrt(len(batches)))
    se = (ses[0] ** 2 + ses[1] ** 2).sqrt()
    live = se > 0  # masked MADE weights and fixed parameters have no gradient either way
    z = (means[0] - means[1])[live] / se[live]
    return float(z.abs().max()), float((z.abs() > 4).double().mean())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=2500)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output-scale", nargs="+", default=["none", "sqrt"])
    parser.add_argument("--every", type=int, default=250)
    parser.add_argument("--draws", type=int, default=20000)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    set_threads(args.threads)
    x, y = load_data(torch.float32)
    model = make_model(x, y)
    model64 = make_model(*load_data(torch.float64))
    for output_scale in args.output_scale:
        pyro.clear_param_store()
        pyro.set_rng_seed(args.seed)
        guide = AutoFlow(model, output_scale=output_scale, progress=False)
        optim = pyro.optim.Adam({"lr": args.lr})
        svi = SVI(model, guide, optim, Trace_ELBO())
        monitor = torch.Generator().manual_seed(1)
        losses = []
        print(f"output_scale={output_scale!r}, plain Adam lr {args.lr}, seed {args.seed}")
        for step in range(1, args.steps + 1):
            losses.append(svi.step())
            if step % args.every == 0 or step == args.steps:
                mean = sum(losses[-args.every :]) / len(losses[-args.every :])
                rows = " | ".join(layer_stats(guide, optim, monitor))
                print(f"  step {step:5d} loss {mean:10.1f}  {rows}", flush=True)
            if not math.isfinite(losses[-1]):
                print(f"  non-finite loss at step {step}")
                break
        z_max, z_frac = gradient_z_test(model64, guide, args.draws)
        print(
            f"  path-derivative vs plain gradient at step {step}: max |z| {z_max:.2f}, "
            f"fraction |z| > 4: {z_frac:.1e}",
            flush=True,
        )


if __name__ == "__main__":
    main()
