"""Learnable bijections (Pyro ``TransformModule`` s) with exact inverses and log-determinants."""

from pyrogen.transforms.actnorm import ActNorm
from pyrogen.transforms.autoregressive import (
    ConditionalInverseAutoregressive,
    ConditionalMaskedAutoregressive,
    InverseAutoregressive,
    MaskedAutoregressive,
)
from pyrogen.transforms.base import Bijector, ConditionalBijector
from pyrogen.transforms.coupling import AffineCoupling, ConditionalAffineCoupling, soft_bound
from pyrogen.transforms.image import ImageCoupling, MultiScale
from pyrogen.transforms.linear import Invertible1x1Conv, LULinear, Permute
from pyrogen.transforms.planar import Planar
from pyrogen.transforms.squeeze import Squeeze

__all__ = [
    "ActNorm",
    "AffineCoupling",
    "Bijector",
    "ConditionalAffineCoupling",
    "ConditionalBijector",
    "ConditionalInverseAutoregressive",
    "ConditionalMaskedAutoregressive",
    "ImageCoupling",
    "InverseAutoregressive",
    "Invertible1x1Conv",
    "LULinear",
    "MaskedAutoregressive",
    "MultiScale",
    "Permute",
    "Planar",
    "Squeeze",
    "soft_bound",
]
