"""pyrogen: deep generative models (flows, energy-based, autoregressive) as Pyro citizens."""

from pyrogen import flows, nn, transforms

__version__ = "0.1.0"
__all__ = ["__version__", "flows", "nn", "transforms"]
