"""Conditioner networks for flows and autoregressive models: MADE, dense nets, masked
convolutions and the PixelCNN network."""

from pyrogen.nn.conv import ConvNet
from pyrogen.nn.masked_conv import MaskedConv2d, PixelCNNNetwork
from pyrogen.nn.networks import MADE, BoundContext, DenseNN, made_degrees

__all__ = [
    "MADE",
    "BoundContext",
    "ConvNet",
    "DenseNN",
    "MaskedConv2d",
    "PixelCNNNetwork",
    "made_degrees",
]
