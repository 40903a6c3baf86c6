"""Distributions for deep generative models: restricted and fully visible Boltzmann machines,
continuous energy-based models, deep belief nets, and annealed importance sampling of their
partition functions."""

from pyrogen.distributions.annealing import annealed_importance_sampling, salakhutdinov_schedule
from pyrogen.distributions.base import AISEstimate
from pyrogen.distributions.boltzmann import BoltzmannMachine
from pyrogen.distributions.dbn import DeepBeliefNet
from pyrogen.distributions.energy import EnergyBasedDistribution
from pyrogen.distributions.rbm import BernoulliRBM, GaussianBernoulliRBM

__all__ = [
    "AISEstimate",
    "BernoulliRBM",
    "BoltzmannMachine",
    "DeepBeliefNet",
    "EnergyBasedDistribution",
    "GaussianBernoulliRBM",
    "annealed_importance_sampling",
    "salakhutdinov_schedule",
]
