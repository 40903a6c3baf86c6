"""Likelihood units: nats per example to bits per dimension."""

from __future__ import annotations

import math
import numbers

import torch

from pyrogen.util import check_count

__all__ = ["bits_per_dim"]


def bits_per_dim(log_prob: torch.Tensor | float, num_dims: int) -> torch.Tensor | float:
    """Convert a log-likelihood per example (nats) to bits per dimension: ``-lp / (D ln 2)``.

    Shapes: any (elementwise); a float gives a float.
    Raises:
        ValueError: ``num_dims`` not a positive int; a NaN ``log_prob``.
        TypeError: ``log_prob`` neither a number nor a tensor.
    Example:
        >>> bits_per_dim(-64 * math.log(2), 64)
        1.0
    """
    check_count(num_dims, "num_dims")
    if not isinstance(log_prob, torch.Tensor):
        if isinstance(log_prob, bool) or not isinstance(log_prob, numbers.Real):
            raise TypeError(f"log_prob must be a number or a tensor, got {log_prob!r}")
        if math.isnan(log_prob):
            raise ValueError("log_prob is nan")
    elif bool(torch.isnan(log_prob).any()):
        raise ValueError("log_prob contains nan")
    return -log_prob / (num_dims * math.log(2.0))
