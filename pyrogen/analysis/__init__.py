"""Analysis of fitted models: ArviZ InferenceData from SVI guides, PSIS diagnostics."""

from pyrogen.analysis.posterior import (
    PSISDiagnostic,
    importance_resample,
    psis_khat,
    to_inference_data,
)

__all__ = ["PSISDiagnostic", "importance_resample", "psis_khat", "to_inference_data"]
