"""Distributions for deep generative models: restricted and fully visible Boltzmann machines,
continuous energy-based models, deep belief nets, annealed importance sampling of their
partition functions, and MADE and PixelCNN autoregressive distributions."""

from pyrogen.distributions.annealing import annealed_importance_sampling, salakhutdinov_schedule
from pyrogen.distributions.autoregressive import MADE, MADENetwork
from pyrogen.distributions.base import AISEstimate
from pyrogen.distributions.boltzmann import BoltzmannMachine
from pyrogen.distributions.dbn import DeepBeliefNet
from pyrogen.distributions.energy import EnergyBasedDistribution
from pyrogen.distributions.flow import FlowDistribution
from pyrogen.distributions.pixelcnn import PixelCNN
from pyrogen.distributions.rbm import BernoulliRBM, GaussianBernoulliRBM

__all__ = [
    "MADE",
    "AISEstimate",
    "BernoulliRBM",
    "BoltzmannMachine",
    "DeepBeliefNet",
    "EnergyBasedDistribution",
    "FlowDistribution",
    "GaussianBernoulliRBM",
    "MADENetwork",
    "PixelCNN",
    "annealed_importance_sampling",
    "salakhutdinov_schedule",
]
