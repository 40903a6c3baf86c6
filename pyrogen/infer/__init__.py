"""Inference: objectives for ``pyro.infer.SVI`` (IWAE, annealed and free-bits ELBOs,
contrastive divergence, mean-field training of deep Boltzmann machines, adversarial GAN and
AVB training), importance-weighted likelihood estimation, and autoguides with flows."""

from pyrogen.infer.adversarial import GAN, gradient_penalty
from pyrogen.infer.autoguide import AutoFlow
from pyrogen.infer.avb import AVB
from pyrogen.infer.checkpoint import load_checkpoint, save_checkpoint
from pyrogen.infer.contrastive import ContrastiveDivergence, fit_rbm
from pyrogen.infer.dbm import MeanFieldPCD, pretrain_dbm
from pyrogen.infer.distributed import (
    DistributedOptim,
    DistributedSVI,
    all_reduce_gradients,
    broadcast_parameters,
    is_main_process,
    synchronize_errors,
)
from pyrogen.infer.elbo import AnnealedELBO, FreeBitsELBO, KLTerm, kl_terms
from pyrogen.infer.importance import (
    LogLikelihood,
    LogWeights,
    importance_log_weights,
    log_likelihood,
)
from pyrogen.infer.iwae import IWAE
from pyrogen.infer.kl import (
    UnnormalizedDensity,
    density_model,
    empty_guide,
    flow_distribution,
    flow_guide,
    sample_and_log_prob,
    samples_model,
)
from pyrogen.infer.schedules import Constant, Cyclical, LinearWarmup

__all__ = [
    "AVB",
    "GAN",
    "IWAE",
    "AnnealedELBO",
    "AutoFlow",
    "Constant",
    "ContrastiveDivergence",
    "Cyclical",
    "DistributedOptim",
    "DistributedSVI",
    "FreeBitsELBO",
    "KLTerm",
    "LinearWarmup",
    "LogLikelihood",
    "LogWeights",
    "MeanFieldPCD",
    "UnnormalizedDensity",
    "all_reduce_gradients",
    "broadcast_parameters",
    "density_model",
    "empty_guide",
    "fit_rbm",
    "flow_distribution",
    "flow_guide",
    "gradient_penalty",
    "importance_log_weights",
    "is_main_process",
    "kl_terms",
    "load_checkpoint",
    "log_likelihood",
    "pretrain_dbm",
    "sample_and_log_prob",
    "samples_model",
    "save_checkpoint",
    "synchronize_errors",
]
