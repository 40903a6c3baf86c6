"""Inference: autoguides with flows (and, later, objectives and estimators)."""

from pyrogen.infer.autoguide import AutoFlow

__all__ = ["AutoFlow"]
