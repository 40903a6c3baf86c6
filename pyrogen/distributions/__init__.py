"""Distributions for deep generative models: restricted, fully visible and deep Boltzmann
machines, continuous energy-based models and the one contract they share
(:class:`EnergyModel`), deep belief nets, annealed importance sampling of partition
functions, MADE and PixelCNN autoregressive distributions, and flow densities over images."""

from pyrogen.distributions.annealing import (
    AnnealingPath,
    BipartitePath,
    annealed_importance_sampling,
    salakhutdinov_schedule,
)
from pyrogen.distributions.autoregressive import MADE, MADENetwork
from pyrogen.distributions.base import AISEstimate
from pyrogen.distributions.boltzmann import BoltzmannMachine
from pyrogen.distributions.dbm import DeepBoltzmannMachine
from pyrogen.distributions.dbn import DeepBeliefNet
from pyrogen.distributions.energy import EnergyBasedDistribution
from pyrogen.distributions.energy_model import EnergyModel
from pyrogen.distributions.flow import FlowDistribution
from pyrogen.distributions.image import ImageFlow
from pyrogen.distributions.pixelcnn import PixelCNN
from pyrogen.distributions.rbm import BernoulliRBM, GaussianBernoulliRBM

__all__ = [
    "MADE",
    "AISEstimate",
    "AnnealingPath",
    "BernoulliRBM",
    "BipartitePath",
    "BoltzmannMachine",
    "DeepBeliefNet",
    "DeepBoltzmannMachine",
    "EnergyBasedDistribution",
    "EnergyModel",
    "FlowDistribution",
    "GaussianBernoulliRBM",
    "ImageFlow",
    "MADENetwork",
    "PixelCNN",
    "annealed_importance_sampling",
    "salakhutdinov_schedule",
]
