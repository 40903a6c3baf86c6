"""Learnable bijections (Pyro ``TransformModule`` s) with exact inverses and log-determinants.

Structures (:class:`Coupling`, :class:`Autoregressive`) produce the parameters of an
elementwise map (:class:`Affine`, :class:`Additive`, :class:`RationalQuadraticSpline`);
the named layers (:class:`AffineCoupling`, :class:`MaskedAutoregressive` ...) are those
structures with the affine map.
"""
# ruff: noqa: F403 - each module lists its public names in __all__

from pyrogen.transforms import autoregressive, base, coupling, elementwise, image, linear, planar
from pyrogen.transforms.autoregressive import *
from pyrogen.transforms.base import *
from pyrogen.transforms.coupling import *
from pyrogen.transforms.elementwise import *
from pyrogen.transforms.image import *
from pyrogen.transforms.linear import *
from pyrogen.transforms.planar import *

_MODULES = (autoregressive, base, coupling, elementwise, image, linear, planar)
__all__ = sorted({name for module in _MODULES for name in module.__all__})
