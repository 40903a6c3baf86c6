"""Bad input to the inference objects and losses of ``pyrogen.infer``."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from pyro.optim import Adam
from torch import nn

from pyrogen.distributions import BernoulliRBM
from pyrogen.infer import (
    AVB,
    GAN,
    IWAE,
    AnnealedELBO,
    AutoFlow,
    Constant,
    ContrastiveDivergence,
    Cyclical,
    DistributedOptim,
    DistributedSVI,
    FreeBitsELBO,
    LinearWarmup,
    MeanFieldPCD,
    UnnormalizedDensity,
    all_reduce_gradients,
    fit_rbm,
    flow_distribution,
    gradient_penalty,
    load_checkpoint,
    log_likelihood,
    pretrain_dbm,
    sample_and_log_prob,
    samples_model,
    save_checkpoint,
)
from pyrogen.transforms import Planar
from tests.bad_input.table import (
    COUNT,
    COUNT0,
    COUNT2,
    INF,
    NAN,
    NONNEGATIVE,
    POSITIVE,
    Case,
    Lazy,
    hyper,
    other_dtype,
)

CASES: list[Case] = []
add = CASES.extend


def model(x):
    with pyro.plate("data", len(x)):
        z = pyro.sample("z", dist.Normal(torch.zeros(()), 1.0))
        pyro.sample("x", dist.Normal(z, 1.0), obs=x)


def guide(x):
    with pyro.plate("data", len(x)):
        pyro.sample("z", dist.Normal(x / 2, 0.5**0.5))


def model_two_latents(x):
    s = pyro.sample("s", dist.LogNormal(torch.zeros(()), 0.1))
    with pyro.plate("data", len(x)):
        z = pyro.sample("z", dist.Normal(torch.zeros(()), 1.0))
        pyro.sample("x", dist.Normal(z, s), obs=x)


def generator(num):
    with pyro.plate("samples", num):
        z = pyro.sample("z", dist.Normal(torch.zeros(()), 1.0))
    return z.unsqueeze(-1)


def gan(**kw):
    return GAN(generator, nn.Linear(1, 1), Adam({"lr": 1e-3}), Adam({"lr": 1e-3}), **kw)


def rbm_model(data):
    w = pyro.param("w", 0.1 * torch.randn(4, 3))
    with pyro.plate("data", len(data)):
        pyro.sample("v", BernoulliRBM(w, torch.zeros(4), torch.zeros(3)), obs=data)


def empty_guide(data):
    pass


def X():
    return torch.tensor([0.0, 1.0, -0.5])


# -- losses: constructors -------------------------------------------------------------------
add(hyper("IWAE", lambda v: IWAE(v), "num_particles", COUNT))
add(hyper("IWAE", lambda v: IWAE(2, v), "estimator", [("name", "vimco", ValueError)]))
add(hyper("IWAE", lambda v: IWAE(2, max_plate_nesting=v), "max_plate_nesting", [*COUNT0, ("nan", NAN, ValueError)]))  # fmt: skip
_BETA = [("negative", -0.5, ValueError), ("inf", INF, ValueError), ("nan", NAN, ValueError),
         ("str", "1", TypeError), ("bool", True, TypeError)]  # fmt: skip
add(hyper("AnnealedELBO", lambda v: AnnealedELBO(v), "beta", _BETA))
add(hyper("AnnealedELBO", lambda v: AnnealedELBO(1.0, num_particles=v), "num_particles", COUNT))
add(hyper("FreeBitsELBO", lambda v: FreeBitsELBO(v), "free_bits", _BETA))
add(hyper("FreeBitsELBO", lambda v: FreeBitsELBO(0.5, num_particles=v), "num_particles", COUNT))
add(hyper("Constant", lambda v: Constant(v), "value", _BETA))
add(hyper("LinearWarmup", lambda v: LinearWarmup(v), "num_steps", COUNT))
add(hyper("LinearWarmup", lambda v: LinearWarmup(10, start=v), "start", _BETA))
add(hyper("LinearWarmup", lambda v: LinearWarmup(10, end=v), "end", _BETA))
add(hyper("Cyclical", lambda v: Cyclical(v), "period", COUNT))
add(hyper("Cyclical", lambda v: Cyclical(10, ratio=v), "ratio", [*POSITIVE, ("large", 1.5, ValueError)]))  # fmt: skip
add(hyper("Cyclical", lambda v: Cyclical(10, end=v), "end", _BETA))
add(hyper("ContrastiveDivergence", lambda v: ContrastiveDivergence(v), "num_gibbs_steps", COUNT))
add(hyper("ContrastiveDivergence", lambda v: ContrastiveDivergence(persistent=True, num_chains=v), "num_chains", COUNT))  # fmt: skip
add(hyper("ContrastiveDivergence", lambda v: ContrastiveDivergence(replay_buffer=v), "replay_buffer", COUNT0))  # fmt: skip
add(hyper("ContrastiveDivergence", lambda v: ContrastiveDivergence(energy_penalty=v), "energy_penalty", NONNEGATIVE))  # fmt: skip
add(hyper("MeanFieldPCD", lambda v: MeanFieldPCD(v), "num_gibbs_steps", COUNT))
add(hyper("MeanFieldPCD", lambda v: MeanFieldPCD(num_chains=v), "num_chains", COUNT))
add(hyper("GAN", lambda v: gan(loss=v), "loss", [("name", "hinge", ValueError)]))
add(hyper("GAN", lambda v: gan(critic_steps=v), "critic_steps", COUNT))
add(hyper("GAN", lambda v: gan(penalty_weight=v), "penalty_weight", NONNEGATIVE))
add(hyper("GAN", lambda v: GAN(generator, v, Adam({}), Adam({})), "discriminator", [("str", "critic", TypeError)]))  # fmt: skip
add(hyper("GAN", lambda v: GAN(v, nn.Linear(1, 1), Adam({}), Adam({})), "generator", [("str", "gen", TypeError)]))  # fmt: skip
add(hyper("GAN", lambda v: GAN(generator, nn.Linear(1, 1), v, Adam({})), "generator_optim", [("str", "adam", TypeError), ("torch", torch.optim.Adam, TypeError)]))  # fmt: skip
add(hyper("GAN", lambda v: GAN(generator, nn.Linear(1, 1), Adam({}), v), "discriminator_optim", [("str", "adam", TypeError)]))  # fmt: skip
add(hyper("GAN.sample", lambda v: gan().sample(v), "num_samples", COUNT))
add(hyper("AVB", lambda v: AVB(v, Adam({})), "discriminator", [("str", "d", TypeError)]))
add(hyper("AVB", lambda v: AVB(nn.Linear(1, 1), v), "discriminator_optim", [("str", "adam", TypeError)]))  # fmt: skip
add(hyper("AVB", lambda v: AVB(nn.Linear(1, 1), Adam({}), discriminator_steps=v), "discriminator_steps", COUNT0))  # fmt: skip
add(hyper("AVB", lambda v: AVB(nn.Linear(1, 1), Adam({}), num_moment_samples=v), "num_moment_samples", COUNT2))  # fmt: skip
add(hyper("AutoFlow", lambda v: AutoFlow(model, flow=v), "flow", [("name", "glow", ValueError)]))
add(hyper("AutoFlow", lambda v: AutoFlow(model, num_layers=v), "num_layers", COUNT))
add(hyper("AutoFlow", lambda v: AutoFlow(model, log_scale_bound=v), "log_scale_bound"))
add(hyper("AutoFlow", lambda v: AutoFlow(model, init_scale=v), "init_scale"))
add(hyper("AutoFlow", lambda v: AutoFlow(model, num_quantile_draws=v), "num_quantile_draws", COUNT2))  # fmt: skip
add(hyper("AutoFlow", lambda v: AutoFlow(model, activation=v), "activation", [("str", "tanh", TypeError)]))  # fmt: skip
add(hyper("DistributedOptim", lambda v: DistributedOptim(v), "optim", [("str", "adam", TypeError)]))  # fmt: skip
add(hyper("DistributedSVI", lambda v: DistributedSVI(model, guide, Adam({}), IWAE(2), shard_size=v), "shard_size", [("int", 8, TypeError)]))  # fmt: skip
add(hyper("DistributedSVI.step", lambda v: DistributedSVI(model, guide, Adam({}), IWAE(2), shard_size=lambda x: v).step(X()), "weight", POSITIVE))  # fmt: skip
add(hyper("all_reduce_gradients", lambda v: all_reduce_gradients([], loss=1.0, weight=v), "weight", POSITIVE))  # fmt: skip

# -- losses and estimators: calls -----------------------------------------------------------
_DATA = [("empty", torch.zeros(0), ValueError), ("nan", torch.tensor([0.0, NAN]), ValueError),
         ("inf", torch.tensor([INF, 0.0]), ValueError)]  # fmt: skip
for key, make in (("IWAE", lambda: IWAE(3)), ("AnnealedELBO", lambda: AnnealedELBO(0.5)),
                  ("FreeBitsELBO", lambda: FreeBitsELBO(0.1))):  # fmt: skip
    add(hyper(f"{key}.loss", lambda v, m=make: m().loss(model, guide, v), "data", _DATA))
    add(hyper(f"{key}.loss_and_grads", lambda v, m=make: m().loss_and_grads(model, guide, v), "data", _DATA))  # fmt: skip
CASES.append(Case("IWAE.loss-guide-missing-latent", lambda: IWAE(3).loss(model_two_latents, guide, X()), ValueError, "guide"))  # fmt: skip
CASES.append(Case("IWAE.loss_and_grads-guide-missing-latent", lambda: IWAE(3).loss_and_grads(model_two_latents, guide, X()), ValueError, "guide"))  # fmt: skip
add(hyper("log_likelihood", lambda v: log_likelihood(model, guide, X(), num_samples=v), "num_samples", COUNT2))  # fmt: skip
add(hyper("log_likelihood", lambda v: log_likelihood(model, guide, X(), batch_size=v), "batch_size", COUNT))  # fmt: skip
add(hyper("log_likelihood", lambda v: log_likelihood(model, guide, X(), max_plate_nesting=v, num_samples=4), "max_plate_nesting", COUNT0))  # fmt: skip
add(hyper("log_likelihood", lambda v: log_likelihood(model, guide, v, num_samples=4), "data", _DATA))  # fmt: skip
CASES.append(Case("log_likelihood-guide-missing-latent", lambda: log_likelihood(model_two_latents, guide, X(), num_samples=4), ValueError, "guide"))  # fmt: skip
_BINARY = [("empty", torch.zeros(0, 4), ValueError), ("fraction", torch.full((5, 4), 0.5), ValueError, "'v'"),
           ("nan", torch.full((5, 4), NAN), ValueError, "'v'")]  # fmt: skip
add(hyper("ContrastiveDivergence.loss", lambda v: ContrastiveDivergence().loss(rbm_model, empty_guide, v), "data", _BINARY))  # fmt: skip
add(hyper("ContrastiveDivergence.loss_and_grads", lambda v: ContrastiveDivergence(persistent=True).loss_and_grads(rbm_model, empty_guide, v), "data", _BINARY))  # fmt: skip
CASES.append(Case("ContrastiveDivergence.loss_and_grads-replay-binary", lambda: ContrastiveDivergence(replay_buffer=8).loss_and_grads(rbm_model, empty_guide, B()), ValueError, "replay_buffer"))  # fmt: skip
_GAN_DATA = [("empty", torch.zeros(0, 1), ValueError), ("nan", torch.full((4, 1), NAN), ValueError),
             ("list", [[0.0]], TypeError), ("int", torch.zeros(4, 1, dtype=torch.long), TypeError)]  # fmt: skip
for step in ("step", "discriminator_step", "generator_step"):
    add(hyper(f"GAN.{step}", lambda v, s=step: getattr(gan(), s)(v), "data", _GAN_DATA))
add(hyper("gradient_penalty", lambda v: gradient_penalty(nn.Linear(2, 1), torch.zeros(4, 2), v), "fake", [("shape", torch.zeros(3, 2), ValueError), ("list", [[0.0, 0.0]], TypeError)]))  # fmt: skip

add(hyper("gradient_penalty", lambda v: gradient_penalty(nn.Linear(2, 1), v, v), "real", [("empty", torch.zeros(0, 2), ValueError, "N >= 1")]))  # fmt: skip
add(hyper("gradient_penalty", lambda v: gradient_penalty(nn.Linear(2, 1), torch.zeros(4, 2), v), "fake", [("dtype", Lazy(lambda: torch.zeros(4, 2, dtype=other_dtype())), TypeError)]))  # fmt: skip
add(hyper("gradient_penalty", lambda v: gradient_penalty(v, torch.zeros(4, 2), torch.zeros(4, 2)), "discriminator", [("wide", Lazy(lambda: nn.Linear(2, 3)), ValueError)]))  # fmt: skip
add(hyper("GAN.step", lambda v: gan().step(v), "data", [("dtype", Lazy(lambda: torch.zeros(4, 1, dtype=other_dtype())), TypeError)]))  # fmt: skip
add(hyper("GAN.step", lambda v: GAN(generator, v, Adam({}), Adam({})).step(torch.zeros(4, 1)), "discriminator", [("wide", Lazy(lambda: nn.Linear(1, 2)), ValueError)]))  # fmt: skip
CASES.append(Case("GAN-discriminator-stale-param-store", lambda: (gan(), GAN(generator, nn.Linear(2, 1), Adam({}), Adam({}))), ValueError, "discriminator$$$weight"))  # fmt: skip
CASES.append(Case("AVB-discriminator-stale-param-store", lambda: (AVB(nn.Linear(1, 1), Adam({})), AVB(nn.Linear(2, 1), Adam({}))), ValueError, "avb_discriminator$$$weight"))  # fmt: skip


# -- checkpoints ----------------------------------------------------------------------------
def _checkpoint(state) -> str:
    import os
    import tempfile

    path = os.path.join(tempfile.mkdtemp(), "c.pt")
    torch.save(state, path)
    return path


add(hyper("save_checkpoint", lambda v: save_checkpoint(_checkpoint(None), optims=v), "optims", [("optim", Adam({}), TypeError), ("torch", {"svi": torch.optim.Adam}, TypeError, "optims['svi']"), ("key", {1: Adam({})}, TypeError)]))  # fmt: skip
add(hyper("save_checkpoint", lambda v: save_checkpoint(_checkpoint(None), losses=v), "losses", [("list", [IWAE(2)], TypeError)]))  # fmt: skip
add(hyper("save_checkpoint", lambda v: save_checkpoint(_checkpoint(None), extra=v), "extra", [("int", 3, TypeError)]))  # fmt: skip
add(hyper("load_checkpoint", lambda v: load_checkpoint(_checkpoint(v)), "path", [("not-a-checkpoint", {"params": {}}, ValueError, "save_checkpoint")]))  # fmt: skip
add(hyper("load_checkpoint", lambda v: load_checkpoint(_checkpoint({"params": {}, "optims": {}, "workers": [{"losses": {}, "rng": {}}], "world_size": 1, "extra": {}}), optims=v), "optims", [("missing", {"svi": Adam({})}, ValueError, "no optimizer state"), ("optim", Adam({}), TypeError)]))  # fmt: skip
add(hyper("load_checkpoint", lambda v: load_checkpoint(_checkpoint({"params": {"w": v}, "optims": {}, "workers": [{"losses": {}, "rng": {}}], "world_size": 1, "extra": {}})), "w", [("absent", torch.zeros(2), ValueError)]))  # fmt: skip


# -- training helpers -----------------------------------------------------------------------
def B():
    return torch.bernoulli(torch.full((20, 4), 0.5))


_RBM_DATA = [("empty", torch.zeros(0, 4), ValueError), ("fraction", torch.full((5, 4), 0.5), ValueError),
             ("nan", torch.full((5, 4), NAN), ValueError), ("1d", torch.zeros(4), ValueError),
             ("list", [[0.0, 1.0]], TypeError), ("bool", torch.zeros(5, 4, dtype=torch.bool), TypeError)]  # fmt: skip
add(hyper("fit_rbm", lambda v: fit_rbm(v, 2, epochs=1), "data", _RBM_DATA))
add(hyper("fit_rbm", lambda v: fit_rbm(B(), v, epochs=1), "n_hidden", COUNT))
add(hyper("fit_rbm", lambda v: fit_rbm(B(), 2, epochs=v), "epochs", COUNT))
add(hyper("fit_rbm", lambda v: fit_rbm(B(), 2, epochs=1, batch_size=v), "batch_size", COUNT))
add(hyper("fit_rbm", lambda v: fit_rbm(B(), 2, epochs=1, lr=v), "lr"))
add(hyper("fit_rbm", lambda v: fit_rbm(B(), 2, epochs=1, init_scale=v), "init_scale", NONNEGATIVE))
add(hyper("fit_rbm", lambda v: fit_rbm(B(), 2, epochs=1, loss=v), "loss", [("str", "cd", TypeError), ("iwae", IWAE(2), TypeError)]))  # fmt: skip
add(hyper("pretrain_dbm", lambda v: pretrain_dbm(v, [3, 2], epochs=1), "data", _RBM_DATA[:4]))
add(hyper("pretrain_dbm", lambda v: pretrain_dbm(B(), v, epochs=1), "hidden_sizes", [("one", [3], ValueError), ("zero", [3, 0], ValueError), ("str", ["a", 2], (TypeError, ValueError))]))  # fmt: skip
add(hyper("pretrain_dbm", lambda v: pretrain_dbm(B(), [3, 2], epochs=v), "epochs", COUNT))
add(hyper("pretrain_dbm", lambda v: pretrain_dbm(B(), [3, 2], epochs=1, lr=v), "lr"))

# -- KL helpers -----------------------------------------------------------------------------
add(hyper("UnnormalizedDensity", lambda v: UnnormalizedDensity(v, (2,)), "log_density", [("str", "p", TypeError)]))  # fmt: skip
add(hyper("UnnormalizedDensity", lambda v: UnnormalizedDensity(lambda x: x.sum(-1), v), "event_shape", [("negative", (-1,), ValueError), ("str", "ab", (TypeError, ValueError))]))  # fmt: skip
add(hyper("flow_distribution", lambda v: flow_distribution(Planar(2), v), "input_dim", COUNT))
add(hyper("flow_distribution", lambda v: flow_distribution(v, 2), "flow", [("str", "maf", TypeError)]))  # fmt: skip
add(hyper("sample_and_log_prob", lambda v: sample_and_log_prob(v), "distribution", [("str", "normal", TypeError)]))  # fmt: skip
add(hyper("samples_model", lambda v: samples_model(Planar(2), v), "data", [("1d", torch.zeros(4), ValueError), ("int", torch.zeros(4, 2, dtype=torch.long), ValueError), ("empty", torch.zeros(0, 2), ValueError), ("nan", torch.full((4, 2), NAN), ValueError)]))  # fmt: skip
add(hyper("samples_model", lambda v: samples_model(Planar(2), torch.zeros(4, 2), batch_size=v), "batch_size", [*COUNT, ("large", 5, ValueError)]))  # fmt: skip
