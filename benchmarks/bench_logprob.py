"""Flow training steps: ``log_prob`` forward and backward of MAF and RealNVP in pyrogen, Pyro,
zuko, nflows and normflows, the same architecture and parameter count in every library.

Cases (batch 1024, d = 16 and 64): MAF with 5 layers over MADEs with hidden sizes [256, 256],
reversals (or the library's permutation) between them; RealNVP with 8 affine coupling layers
whose conditioner is an MLP [256, 256] on the passed-through half. Every library runs the same
net: three (masked) linear layers with biases and a ReLU after each of the two hidden ones
(normflows' MLP uses ``LeakyReLU(0.0)``, the same function), and the same number of network
parameters (normflows' ``DiagGaussian`` base adds its ``2 d`` trainable loc and log-scale).
normflows' MADE applies no nonlinearity after its initial layer, so its MAF case inserts the
missing ReLU there (without it normflows computes one ReLU per layer less than the others).
The elementwise maps are each library's own (soft or hard bound on the log-scale, sigmoid
scale). One call is
``(-flow.log_prob(x).mean()).backward()`` on a fresh copy of ``x`` (Pyro's identity-keyed
caches would otherwise serve a freed graph). pyrogen is timed eagerly and compiled
(:func:`pyrogen.flows.compile`, a ``torch.compile`` of the distribution's ``log_prob``; its
compile time is printed as a note). Peers that are not installed are left out. A
``pyrogen matmul floor`` row (for reference, no target) times only the networks' dense
arithmetic: the same linear layers, biases and ReLUs chained layer to layer (each layer's
input is the previous network's first outputs, so the backward pass computes the same
input gradients), with no masks, no elementwise maps and no log-determinant. A library that
runs these networks can be at most that much faster than the floor lets it.

Registry entry (:mod:`benchmarks.harness`): ``cases(quick, device)``. Run them with
``python -m benchmarks.run --only logprob``.
"""

from __future__ import annotations

import time

import pyro.distributions as dist
import pyro.distributions.transforms as T
import torch
from pyro.nn import AutoRegressiveNN
from pyro.nn import DenseNN as PyroDenseNN

from pyrogen import flows

MAF_LAYERS, NVP_LAYERS, HIDDEN = 5, 8, [256, 256]


def _base(d, device):
    return dist.Normal(torch.zeros(d, device=device), 1.0).to_event(1)


def maf_models(d: int, device: str) -> dict:
    """``{library: zero-argument builder of a module/distribution with .log_prob}``."""

    def pyrogen_():
        f = flows.maf(d, num_layers=MAF_LAYERS, hidden_dims=HIDDEN).to(device)
        return dist.TransformedDistribution(_base(d, device), f), f

    def pyro_():
        parts, modules = [], torch.nn.ModuleList()
        for i in range(MAF_LAYERS):
            layer = T.AffineAutoregressive(AutoRegressiveNN(d, HIDDEN)).to(device)
            modules.append(layer)
            parts.append(layer.inv)
            if i < MAF_LAYERS - 1:
                parts.append(T.Permute(torch.arange(d - 1, -1, -1, device=device)))
        return dist.TransformedDistribution(_base(d, device), parts), modules

    def zuko_():
        import zuko

        flow = zuko.flows.MAF(d, 0, transforms=MAF_LAYERS, hidden_features=HIDDEN).to(device)
        return _Lazy(flow), flow

    def nflows_():
        from nflows.flows import MaskedAutoregressiveFlow

        # MADE [256, 256]: an input layer and one plain (non-residual) block
        flow = MaskedAutoregressiveFlow(d, 256, MAF_LAYERS, num_blocks_per_layer=1,
                                        use_residual_blocks=False).to(device)  # fmt: skip
        return flow, flow

    def normflows_():
        import normflows as nf

        layers = []
        for _ in range(MAF_LAYERS):
            made = nf.flows.MaskedAffineAutoregressive(
                d, 256, num_blocks=1, use_residual_blocks=False
            )
            # normflows' MADE applies no nonlinearity after its initial layer (nflows' does):
            # add the ReLU, so that the net is MADE [256, 256] with two ReLUs as elsewhere
            net = made.autoregressive_net
            net.initial_layer = torch.nn.Sequential(net.initial_layer, torch.nn.ReLU())
            layers += [nf.flows.Reverse(made), nf.flows.Permute(d, mode="swap")]
        flow = nf.NormalizingFlow(nf.distributions.DiagGaussian(d), layers).to(device)
        return flow, flow

    return {"pyrogen": pyrogen_, "Pyro": pyro_, "zuko": zuko_, "nflows": nflows_,
            "normflows": normflows_}  # fmt: skip


def realnvp_models(d: int, device: str) -> dict:
    """As :func:`maf_models`, for RealNVP."""
    split = d // 2

    def pyrogen_():
        f = flows.realnvp(d, num_layers=NVP_LAYERS, hidden_dims=HIDDEN).to(device)
        return dist.TransformedDistribution(_base(d, device), f), f

    def pyro_():
        parts, modules = [], torch.nn.ModuleList()
        for i in range(NVP_LAYERS):
            net = PyroDenseNN(split, HIDDEN, [d - split, d - split])
            layer = T.AffineCoupling(split, net).to(device)
            modules.append(layer)
            parts.append(layer)
            if i < NVP_LAYERS - 1:
                parts.append(T.Permute(torch.arange(d - 1, -1, -1, device=device)))
        return dist.TransformedDistribution(_base(d, device), parts), modules

    def zuko_():
        import zuko

        flow = zuko.flows.RealNVP(d, 0, transforms=NVP_LAYERS, hidden_features=HIDDEN)
        return _Lazy(flow.to(device)), flow

    def nflows_():
        from nflows.distributions import StandardNormal
        from nflows.flows import Flow
        from nflows.nn.nets import MLP
        from nflows.transforms import AffineCouplingTransform, CompositeTransform

        mask = torch.arange(d) >= split  # 1 = transformed (nflows' convention)
        layers = []
        for i in range(NVP_LAYERS):
            m = mask if i % 2 == 0 else ~mask

            def net(n_in, n_out):
                return _NoContext(MLP((n_in,), (n_out,), HIDDEN))

            layers.append(AffineCouplingTransform(m.int(), net))
        flow = Flow(CompositeTransform(layers), StandardNormal((d,))).to(device)
        return flow, flow

    def normflows_():
        import normflows as nf

        layers = []
        for _ in range(NVP_LAYERS):
            net = nf.nets.MLP([split, *HIDDEN, 2 * (d - split)], init_zeros=True)
            layers += [nf.flows.AffineCouplingBlock(net), nf.flows.Permute(d, mode="swap")]
        flow = nf.NormalizingFlow(nf.distributions.DiagGaussian(d), layers).to(device)
        return flow, flow

    return {"pyrogen": pyrogen_, "Pyro": pyro_, "zuko": zuko_, "nflows": nflows_,
            "normflows": normflows_}  # fmt: skip


class _NoContext(torch.nn.Module):
    """nflows' ``MLP`` called as a coupling network (``net(x, context)``)."""

    def __init__(self, net) -> None:
        super().__init__()
        self.net = net

    def forward(self, x, context=None):
        return self.net(x)


class _Lazy:
    """A zuko lazy flow called once per ``log_prob`` (as a zuko user writes ``flow().log_prob``)."""

    def __init__(self, flow) -> None:
        self.flow = flow

    def log_prob(self, x):
        return self.flow().log_prob(x)


def _perturb(module) -> None:
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.01 * torch.randn_like(p))


def floor_fn(family: str, d: int, x: torch.Tensor):
    """The ``matmul floor`` of a case: forward and backward through the dense networks alone
    (MAF: ``MAF_LAYERS`` nets ``d -> 256 -> 256 -> 2 d``; RealNVP: ``NVP_LAYERS`` nets
    ``d // 2 -> 256 -> 256 -> 2 (d - d // 2)``), each fed the first outputs of the last."""
    n_in, n_out, layers = (d, 2 * d, MAF_LAYERS) if family == "MAF" else (
        d // 2, 2 * (d - d // 2), NVP_LAYERS)  # fmt: skip
    nets = torch.nn.ModuleList(
        torch.nn.Sequential(
            torch.nn.Linear(n_in, HIDDEN[0]),
            torch.nn.ReLU(),
            torch.nn.Linear(HIDDEN[0], HIDDEN[1]),
            torch.nn.ReLU(),
            torch.nn.Linear(HIDDEN[1], n_out),
        )
        for _ in range(layers)
    ).to(x.device)

    def fn():
        h = x[..., :n_in].clone()
        for net in nets:
            h = net(h)[..., :n_in]
        h.mean().neg().backward()

    return fn


def step_fn(model, x):
    """One training step's arithmetic: ``-mean log_prob`` forward and backward."""

    def fn():
        model.log_prob(x.clone()).mean().neg().backward()

    return fn


def cases(quick: bool = False, device: str = "cpu", compile: bool = True) -> list[dict]:
    """The registry entry (see :mod:`benchmarks.harness`): every library's step per case,
    and pyrogen compiled where ``torch.compile`` works (``compile=False``: eager only)."""
    dims, n = ([4], 32) if quick else ([16, 64], 1024)
    out = []
    for family, models in [("MAF", maf_models), ("RealNVP", realnvp_models)]:
        for d in dims:
            torch.manual_seed(0)
            x = torch.randn(n, d, device=device)
            name = f"{family} log_prob fwd+bwd d={d}"
            for library, build in models(d, device).items():
                try:
                    model, params = build()
                except ImportError:
                    continue
                _perturb(params)
                out.append({"case": name, "library": library, "fn": step_fn(model, x),
                            "target": 1.0 if library == "pyrogen" else None})  # fmt: skip
                if library == "pyrogen" and compile:
                    row = _compiled_row(name, model, x)
                    if row is not None:
                        out.append(row)
            out.append({"case": name, "library": "pyrogen matmul floor",
                        "fn": floor_fn(family, d, x)})  # fmt: skip
    return [{k: v for k, v in c.items() if v is not None} for c in out]


def _compiled_row(name, model, x) -> dict | None:
    try:
        log_prob = flows.compile(model)
        start = time.perf_counter()
        log_prob(x.clone()).mean().neg().backward()  # compiles forward and backward
        seconds = time.perf_counter() - start
    except Exception as e:  # no working compiler here: the eager rows only
        print(f"{name}: torch.compile unavailable ({type(e).__name__}: {e})")
        return None

    def fn():
        log_prob(x.clone()).mean().neg().backward()

    note = f"{name}: pyrogen compiled in {seconds:.1f} s (first call, fwd+bwd)"
    return {"case": name, "library": "pyrogen compiled", "fn": fn, "target": 1.2, "note": note}
