"""Learnable bijections (Pyro ``TransformModule`` s) with exact inverses and log-determinants.

Structures (:class:`Coupling`, :class:`Autoregressive`) produce the parameters of an
elementwise map (:class:`Affine`, :class:`Additive`, :class:`RationalQuadraticSpline`);
the named layers (:class:`AffineCoupling`, :class:`MaskedAutoregressive` ...) are those
structures with the affine map.
"""
# ruff: noqa: F401 - the imports are the public names, listed in __all__

from pyrogen.transforms.actnorm import ActNorm
from pyrogen.transforms.autoregressive import (
    Autoregressive,
    ConditionalAutoregressive,
    ConditionalInverseAutoregressive,
    ConditionalMaskedAutoregressive,
    InverseAutoregressive,
    MaskedAutoregressive,
)
from pyrogen.transforms.base import (
    Bijector,
    Compose,
    Conditional,
    ConditionalBijector,
    ConditionalCompose,
    Conditioned,
)
from pyrogen.transforms.coupling import (
    AffineCoupling,
    ConditionalAffineCoupling,
    ConditionalCoupling,
    Coupling,
    ImageCoupling,
)
from pyrogen.transforms.elementwise import (
    Additive,
    Affine,
    Elementwise,
    RationalQuadraticSpline,
    soft_bound,
)
from pyrogen.transforms.image import MultiScale
from pyrogen.transforms.linear import Invertible1x1Conv, LULinear, Permute, QRLinear
from pyrogen.transforms.planar import Planar
from pyrogen.transforms.squeeze import Squeeze

__all__ = """
ActNorm Additive Affine AffineCoupling Autoregressive Bijector Compose Conditional
ConditionalAffineCoupling ConditionalAutoregressive ConditionalBijector ConditionalCompose
ConditionalCoupling ConditionalInverseAutoregressive ConditionalMaskedAutoregressive
Conditioned Coupling Elementwise ImageCoupling InverseAutoregressive Invertible1x1Conv
LULinear MaskedAutoregressive MultiScale Permute Planar QRLinear RationalQuadraticSpline
Squeeze soft_bound
""".split()
