"""Inference: objectives for ``pyro.infer.SVI`` (IWAE, annealed and free-bits ELBOs,
contrastive divergence, adversarial GAN and AVB training), importance-weighted likelihood
estimation, and autoguides with flows."""

from pyrogen.infer.adversarial import GAN, gradient_penalty
from pyrogen.infer.autoguide import AutoFlow
from pyrogen.infer.avb import AVB
from pyrogen.infer.contrastive import ContrastiveDivergence, fit_rbm
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
    "FreeBitsELBO",
    "KLTerm",
    "LinearWarmup",
    "LogLikelihood",
    "LogWeights",
    "UnnormalizedDensity",
    "density_model",
    "empty_guide",
    "fit_rbm",
    "flow_distribution",
    "flow_guide",
    "gradient_penalty",
    "importance_log_weights",
    "kl_terms",
    "log_likelihood",
    "sample_and_log_prob",
    "samples_model",
]
