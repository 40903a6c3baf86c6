"""pyrogen: deep generative models (flows, energy-based, autoregressive) as Pyro citizens."""

from pyrogen import analysis, distributions, flows, infer, nn, transforms

__version__ = "0.1.0"
__all__ = [
    "__version__",
    "analysis",
    "distributions",
    "flows",
    "infer",
    "nn",
    "transforms",
]
