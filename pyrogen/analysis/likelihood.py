"""Likelihood units: nats per example to bits per dimension."""

from __future__ import annotations

import math

import torch

__all__ = ["bits_per_dim"]


def bits_per_dim(log_prob: torch.Tensor | float, num_dims: int) -> torch.Tensor | float:
    """Convert a log-likelihood per example (nats) to bits per dimension: ``-lp / (D ln 2)``.

    Shapes: any (elementwise); a float gives a float.
    Raises:
        ValueError: ``num_dims`` not a positive int.
    Example:
        >>> bits_per_dim(-64 * math.log(2), 64)
        1.0
    """
    if not isinstance(num_dims, int) or isinstance(num_dims, bool) or num_dims < 1:
        raise ValueError(f"num_dims must be a positive int, got {num_dims!r}")
    return -log_prob / (num_dims * math.log(2.0))
