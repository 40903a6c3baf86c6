"""Conditioner networks for flows and autoregressive models."""

from pyrogen.nn.networks import MADE, BoundContext, DenseNN, made_degrees

__all__ = ["MADE", "BoundContext", "DenseNN", "made_degrees"]
