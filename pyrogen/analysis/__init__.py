"""Analysis of fitted models: ArviZ InferenceData from SVI guides, PSIS diagnostics,
posterior-collapse diagnostics."""

from pyrogen.analysis.collapse import active_units, kl_per_dimension
from pyrogen.analysis.posterior import (
    PSISDiagnostic,
    importance_resample,
    psis_khat,
    to_inference_data,
)

__all__ = [
    "PSISDiagnostic",
    "active_units",
    "importance_resample",
    "kl_per_dimension",
    "psis_khat",
    "to_inference_data",
]
