"""Bad input to the distributions: parameters, hyper-parameters, values, samplers."""

from __future__ import annotations

import torch
from torch import nn

from pyrogen import targets
from pyrogen.distributions import (
    MADE,
    BernoulliRBM,
    BoltzmannMachine,
    DeepBeliefNet,
    DeepBoltzmannMachine,
    EnergyBasedDistribution,
    GaussianBernoulliRBM,
    MADENetwork,
    PixelCNN,
    annealed_importance_sampling,
    salakhutdinov_schedule,
)
from pyrogen.nn import PixelCNNNetwork
from tests.bad_input.table import (
    COUNT,
    COUNT0,
    INF,
    NAN,
    Case,
    Lazy,
    hyper,
    other_dtype,
)

CASES: list[Case] = []
add = CASES.extend


def rbm(**kw):
    return BernoulliRBM(0.1 * torch.randn(4, 3), torch.zeros(4), torch.zeros(3), **kw)


def gbrbm(scale=None, **kw):
    scale = torch.ones(4) if scale is None else scale
    return GaussianBernoulliRBM(0.1 * torch.randn(4, 3), torch.zeros(4), torch.zeros(3), scale, **kw)  # fmt: skip


def bm(weight=None, **kw):
    w = torch.tensor([[0.0, 0.5, 0.0], [0.5, 0.0, -0.2], [0.0, -0.2, 0.0]]) if weight is None else weight  # fmt: skip
    return BoltzmannMachine(w, torch.zeros(3), **kw)


def dbm(**kw):
    ws = [0.1 * torch.randn(4, 3), 0.1 * torch.randn(3, 2)]
    return DeepBoltzmannMachine(ws, [torch.zeros(4), torch.zeros(3), torch.zeros(2)], **kw)


def ebm(**kw):
    return EnergyBasedDistribution(lambda x: (x**2).sum(-1) / 2, (2,), **{"num_steps": 5, **kw})


def made(**kw):
    return MADE(MADENetwork(3, [8], **kw))


def pixelcnn(context_dim=0):
    net = PixelCNNNetwork(hidden_channels=4, num_layers=1, context_dim=context_dim)
    return net


_LOG_Z = [("nan", NAN, ValueError), ("inf", INF, ValueError), ("str", "1.0", TypeError),
          ("shape", torch.zeros(5), ValueError)]  # fmt: skip

# -- parameters -----------------------------------------------------------------------------
_WEIGHTS = [("1d", torch.zeros(4), ValueError), ("list", [[0.0] * 3] * 4, (TypeError, ValueError)),
            ("int", torch.zeros(4, 3, dtype=torch.long), TypeError),
            ("nan", torch.full((4, 3), NAN), ValueError)]  # fmt: skip
add(hyper("BernoulliRBM", lambda v: BernoulliRBM(v, torch.zeros(4), torch.zeros(3)), "weight", _WEIGHTS))  # fmt: skip
_VB = [("shape", torch.zeros(5), ValueError), ("dtype", Lazy(lambda: torch.zeros(4, dtype=other_dtype())), TypeError),
       ("str", "0", TypeError), ("inf", torch.full((4,), INF), ValueError)]  # fmt: skip
add(hyper("BernoulliRBM", lambda v: BernoulliRBM(torch.zeros(4, 3), v, torch.zeros(3)), "visible_bias", _VB))  # fmt: skip
add(hyper("BernoulliRBM", lambda v: BernoulliRBM(torch.zeros(4, 3), torch.zeros(4), v), "hidden_bias", [("shape", torch.zeros(4), ValueError), ("nan", torch.full((3,), NAN), ValueError)]))  # fmt: skip
add(hyper("BernoulliRBM", lambda v: rbm(num_gibbs_steps=v), "num_gibbs_steps", COUNT))
add(hyper("BernoulliRBM", lambda v: rbm(log_partition=v), "log_partition", _LOG_Z))
_SCALES = [("zero", torch.zeros(4), ValueError), ("negative", -torch.ones(4), ValueError),
           ("inf", torch.full((4,), INF), ValueError), ("nan", torch.full((4,), NAN), ValueError),
           ("shape", torch.ones(3), ValueError)]  # fmt: skip
add(hyper("GaussianBernoulliRBM", lambda v: gbrbm(v), "scale", _SCALES))
add(hyper("BoltzmannMachine", lambda v: bm(temperature=v), "temperature"))
add(hyper("BoltzmannMachine", lambda v: bm(num_gibbs_steps=v), "num_gibbs_steps", COUNT))
add(hyper("BoltzmannMachine", lambda v: bm(log_partition=v), "log_partition", _LOG_Z))
add(hyper("BoltzmannMachine", lambda v: bm(v), "weight", [
    ("asymmetric", torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]), ValueError),
    ("diagonal", torch.eye(3), ValueError), ("shape", torch.zeros(3, 4), ValueError)]))  # fmt: skip
add(hyper("BoltzmannMachine", lambda v: BoltzmannMachine(torch.zeros(3, 3), v), "bias", [("str", "b", (TypeError, ValueError)), ("scalar", torch.tensor(0.0), ValueError)]))  # fmt: skip
add(hyper("DeepBoltzmannMachine", lambda v: dbm(num_gibbs_steps=v), "num_gibbs_steps", COUNT))
add(hyper("DeepBoltzmannMachine", lambda v: dbm(num_mean_field_steps=v), "num_mean_field_steps", COUNT))  # fmt: skip
add(hyper("DeepBoltzmannMachine", lambda v: dbm(log_partition=v), "log_partition", _LOG_Z[:3]))
add(hyper("DeepBoltzmannMachine", lambda v: DeepBoltzmannMachine(v, [torch.zeros(4), torch.zeros(3), torch.zeros(2)]), "weights", [
    ("one", [torch.zeros(4, 3)], ValueError), ("mismatch", [torch.zeros(4, 3), torch.zeros(2, 2)], ValueError)]))  # fmt: skip
add(hyper("DeepBeliefNet", lambda v: DeepBeliefNet(v), "layers", [("empty", [], ValueError), ("str", ["rbm"], (TypeError, ValueError)), ("mismatch", [rbm(), rbm()], ValueError)]))  # fmt: skip
add(hyper("DeepBeliefNet.sample", lambda v: DeepBeliefNet([rbm()]).sample((2,), num_gibbs_steps=v), "num_gibbs_steps", COUNT))  # fmt: skip
add(hyper("EnergyBased", lambda v: EnergyBasedDistribution(v, (2,)), "energy_fn", [("str", "quadratic", TypeError), ("none", None, TypeError)]))  # fmt: skip
add(hyper("EnergyBased", lambda v: ebm(num_steps=v), "num_steps", COUNT))
add(hyper("EnergyBased", lambda v: ebm(step_size=v), "step_size"))
add(hyper("EnergyBased", lambda v: ebm(init_scale=v), "init_scale"))
add(hyper("EnergyBased", lambda v: ebm(log_partition=v), "log_partition", _LOG_Z[:3]))
add(hyper("EnergyBased", lambda v: EnergyBasedDistribution(lambda x: x.sum(-1), v), "event_shape", [("str", "ab", (TypeError, ValueError)), ("negative", (-1,), ValueError), ("empty", (), ValueError)]))  # fmt: skip
add(hyper("EnergyBased.markov_chain", lambda v: ebm().markov_chain(torch.zeros(3, 2), v), "num_steps", COUNT0))  # fmt: skip
add(hyper("EnergyBased.markov_chain", lambda v: ebm().markov_chain(v, 2), "value", [
    ("width", torch.zeros(3, 3), ValueError), ("int", torch.zeros(3, 2, dtype=torch.long), TypeError),
    ("nan", torch.full((3, 2), NAN), ValueError), ("list", [[0.0, 0.0]], TypeError)]))  # fmt: skip
CASES.append(Case("EnergyBased-energy_fn-shape", lambda: EnergyBasedDistribution(lambda x: x, (2,), num_steps=2).sample((3,)), ValueError, "energy_fn"))  # fmt: skip
add(hyper("MADENetwork", lambda v: MADENetwork(v, [8]), "input_dim", COUNT))
add(hyper("MADENetwork", lambda v: MADENetwork(3, [8], num_categories=v), "num_categories", [("one", 1, ValueError), *COUNT]))  # fmt: skip
add(hyper("MADENetwork", lambda v: MADENetwork(3, [8], num_masks=v), "num_masks", COUNT))
add(hyper("MADENetwork", lambda v: MADENetwork(3, [8], context_dim=v), "context_dim", COUNT0))
add(hyper("MADE-dist", lambda v: MADE(v), "network", [("str", "made", TypeError), ("torch", nn.Linear(3, 3), TypeError)]))  # fmt: skip
add(hyper("MADE-dist", lambda v: MADE(MADENetwork(3, [8], num_masks=2), mask_index=v), "mask_index", [("large", 2, ValueError), ("negative", -1, ValueError), ("str", "a", TypeError), ("float", 0.5, TypeError), ("bool", True, TypeError), ("float-tensor", torch.tensor(1.0), TypeError), ("1d-tensor", torch.tensor([1]), TypeError), ("large-tensor", torch.tensor(2), ValueError)]))  # fmt: skip
add(hyper("MADE-dist", lambda v: MADE(MADENetwork(3, [8]), v), "context", [("unexpected", torch.zeros(2), ValueError)]))  # fmt: skip
add(hyper("MADE-dist", lambda v: MADE(MADENetwork(3, [8], context_dim=2), v), "context", [
    ("missing", None, ValueError), ("width", torch.zeros(3), ValueError), ("str", "c", TypeError),
    ("int", torch.zeros(2, dtype=torch.long), TypeError)]))  # fmt: skip
add(hyper("PixelCNN", lambda v: PixelCNN(v, (1, 4, 4)), "network", [("str", "net", TypeError)]))
add(hyper("PixelCNN", lambda v: PixelCNN(pixelcnn(), v), "image_shape", [("2d", (4, 4), ValueError), ("channels", (2, 4, 4), ValueError), ("zero", (1, 0, 4), ValueError)]))  # fmt: skip
add(hyper("PixelCNN", lambda v: PixelCNN(pixelcnn(3), (1, 4, 4), v), "context", [("missing", None, ValueError), ("width", torch.zeros(2), ValueError), ("nan", torch.full((3,), NAN), ValueError), ("inf", torch.full((3,), INF), ValueError)]))  # fmt: skip

# -- values: log_prob and friends -----------------------------------------------------------
_BINARY = [("fraction", lambda n: torch.full((2, n), 0.5), ValueError),
           ("two", lambda n: torch.full((2, n), 2.0), ValueError),
           ("negative", lambda n: -torch.ones(2, n), ValueError),
           ("nan", lambda n: torch.full((2, n), NAN), ValueError),
           ("width", lambda n: torch.zeros(2, n + 1), ValueError),
           ("list", lambda n: [[0.0] * n], TypeError),
           ("scalar", lambda n: torch.tensor(0.0), ValueError)]  # fmt: skip
_BINARY_DISTS = {"BernoulliRBM": (rbm, 4), "BoltzmannMachine": (bm, 3), "DBM": (dbm, 4),
                 "MADE-dist": (made, 3)}  # fmt: skip
for key, (make, n) in _BINARY_DISTS.items():
    for label, value, error in _BINARY:
        CASES.append(Case(f"{key}.log_prob-value-{label}", lambda m=make, v=value, n=n: m().log_prob(v(n)), error, "value"))  # fmt: skip
    for label, value, error in _BINARY[:5]:
        CASES.append(Case(f"{key}.unnormalized_log_prob-value-{label}", lambda m=make, v=value, n=n: getattr(m(), "unnormalized_log_prob", m().log_prob)(v(n)), error, "value"))  # fmt: skip
for label, value, error in _BINARY[3:]:
    CASES.append(Case(f"GaussianBernoulliRBM.log_prob-value-{label}", lambda v=value: gbrbm().unnormalized_log_prob(v(4)), error, "value"))  # fmt: skip
    CASES.append(Case(f"EnergyBased.log_prob-value-{label}", lambda v=value: ebm(log_partition=1.0).log_prob(v(2)), error, "value"))  # fmt: skip
# the DBM's variational bounds take values as log_prob does
for label, value, error in _BINARY:
    CASES.append(Case(f"DBM.log_likelihood_lower_bound-value-{label}", lambda v=value: dbm().log_likelihood_lower_bound(v(4), 0.0), error, "value"))  # fmt: skip
    CASES.append(Case(f"DBM.variational_free_energy-value-{label}", lambda v=value: dbm().variational_free_energy(v(4)), error, "value"))  # fmt: skip
add(hyper("DBM.log_likelihood_lower_bound", lambda v: dbm().log_likelihood_lower_bound(torch.zeros(2, 4), v), "log_partition", _LOG_Z))  # fmt: skip
# a Markov chain's start state: the right width, in the support
_STARTS = [("width", lambda n: torch.zeros(2, n + 1), ValueError), ("nan", lambda n: torch.full((2, n), NAN), ValueError)]  # fmt: skip
for key, make, n in (("BernoulliRBM", rbm, 4), ("GaussianBernoulliRBM", gbrbm, 4), ("BoltzmannMachine", bm, 3), ("DBM", dbm, 4)):  # fmt: skip
    for label, value, error in _STARTS:
        CASES.append(Case(f"{key}.markov_chain-value-{label}", lambda m=make, v=value, n=n: m().markov_chain(v(n), 1), error, "value"))  # fmt: skip
# complex values: the imaginary part is not dropped silently
for key, make, n in (("BernoulliRBM", rbm, 4), ("GaussianBernoulliRBM", gbrbm, 4), ("MADE", made, 3)):  # fmt: skip
    CASES.append(Case(f"{key}.log_prob-value-complex", lambda m=make, n=n: m().log_prob(torch.zeros(2, n, dtype=torch.complex64)), TypeError, "value"))  # fmt: skip
# +-inf is in Pyro's real support, but the free energy there is inf - inf
CASES.append(Case("GaussianBernoulliRBM.log_prob-value-inf", lambda: gbrbm().unnormalized_log_prob(torch.tensor([[INF, 0.0, 0.0, 0.0]])), ValueError, "value"))  # fmt: skip
_PIXEL_VALUES = [("fraction", torch.full((2, 1, 4, 4), 0.5), ValueError),
                 ("two", torch.full((2, 1, 4, 4), 2.0), ValueError),
                 ("shape", torch.zeros(2, 1, 4, 5), ValueError),
                 ("nan", torch.full((2, 1, 4, 4), NAN), ValueError)]  # fmt: skip
add(hyper("PixelCNN.log_prob", lambda v: PixelCNN(pixelcnn(), (1, 4, 4)).log_prob(v), "value", _PIXEL_VALUES))  # fmt: skip
add(hyper("rbm.attach_log_partition", lambda v: rbm().attach_log_partition(v), "log_partition", _LOG_Z))  # fmt: skip
add(hyper("rbm.log_partition", lambda v: rbm().log_partition(method=v), "method", [("name", "guess", ValueError)]))  # fmt: skip
add(hyper("rbm.expand", lambda v: rbm().expand(v), "batch_shape", [("str", "ab", (TypeError, ValueError))]))  # fmt: skip
add(hyper("rbm.markov_chain", lambda v: rbm().markov_chain(torch.zeros(2, 4), v), "num_steps", COUNT0))  # fmt: skip
add(hyper("ais", lambda v: annealed_importance_sampling(rbm(), num_chains=v, num_betas=10), "num_chains", COUNT))  # fmt: skip
add(hyper("ais", lambda v: annealed_importance_sampling(rbm(), num_chains=4, num_betas=v), "num_betas", [("two", 2, ValueError), *COUNT]))  # fmt: skip
add(hyper("ais", lambda v: annealed_importance_sampling(rbm(), num_chains=4, num_betas=10, data=v), "data", [
    ("two", torch.full((5, 4), 2.0), ValueError), ("width", torch.zeros(5, 3), ValueError),
    ("nan", torch.full((5, 4), NAN), ValueError), ("empty", torch.zeros(0, 4), ValueError)]))  # fmt: skip
add(hyper("ais", lambda v: annealed_importance_sampling(rbm(), num_chains=4, num_betas=10, base_visible_bias=v), "base_visible_bias", [
    ("width", torch.zeros(5), ValueError), ("nan", torch.full((4,), NAN), ValueError),
    ("inf", torch.full((4,), INF), ValueError), ("str", "zero", TypeError)]))  # fmt: skip
add(hyper("salakhutdinov_schedule", lambda v: salakhutdinov_schedule(v, torch.zeros(())), "num_betas", [("two", 2, ValueError), *COUNT]))  # fmt: skip

# -- toy targets ----------------------------------------------------------------------------
add(hyper("Banana", lambda v: targets.Banana(a=v), "a"))
add(hyper("Banana", lambda v: targets.Banana(b=v), "b", [("inf", INF, ValueError), ("nan", NAN, ValueError), ("str", "1", TypeError)]))  # fmt: skip
add(hyper("Ring", lambda v: targets.Ring(radius=v), "radius"))
add(hyper("Ring", lambda v: targets.Ring(scale=v), "scale"))
add(hyper("GaussianMixture", lambda v: targets.GaussianMixture(num_components=v), "num_components", COUNT))  # fmt: skip
add(hyper("GaussianMixture", lambda v: targets.GaussianMixture(radius=v), "radius"))
add(hyper("GaussianMixture", lambda v: targets.GaussianMixture(scale=v), "scale"))
add(hyper("NealsFunnel", lambda v: targets.NealsFunnel(dim=v), "dim", [("one", 1, ValueError), *COUNT]))  # fmt: skip
for key, make in (("Banana", targets.Banana), ("Ring", targets.Ring), ("TwoMoonsEnergy", targets.TwoMoonsEnergy)):  # fmt: skip
    add(hyper(f"{key}.log_prob", lambda v, m=make: m().log_prob(v), "value", [
        ("width", torch.zeros(3, 3), ValueError), ("list", [[0.0, 0.0]], TypeError),
        ("nan", torch.full((3, 2), NAN), ValueError)]))  # fmt: skip
