"""Analysis of fitted models: ArviZ InferenceData from SVI guides, PSIS diagnostics,
posterior-collapse diagnostics, likelihood units (bits/dim), offline sample-quality metrics
and their feature network."""

from pyrogen.analysis.collapse import active_units, kl_per_dimension
from pyrogen.analysis.features import FeatureClassifier, digits_classifier, fit_feature_classifier
from pyrogen.analysis.kl import KLDiagnostic, kl_diagnostics
from pyrogen.analysis.likelihood import bits_per_dim
from pyrogen.analysis.metrics import (
    KernelDistance,
    PrecisionRecall,
    class_coverage,
    frechet_distance,
    gaussian_frechet_distance,
    inception_score,
    kernel_distance,
    mode_coverage,
    precision_recall,
)
from pyrogen.analysis.ood import ood_auroc, ood_scores
from pyrogen.analysis.plots import save_image_grid
from pyrogen.analysis.posterior import (
    PSISDiagnostic,
    importance_resample,
    psis_khat,
    to_inference_data,
)

__all__ = [
    "FeatureClassifier",
    "KLDiagnostic",
    "KernelDistance",
    "PSISDiagnostic",
    "PrecisionRecall",
    "active_units",
    "bits_per_dim",
    "class_coverage",
    "digits_classifier",
    "fit_feature_classifier",
    "frechet_distance",
    "gaussian_frechet_distance",
    "importance_resample",
    "inception_score",
    "kernel_distance",
    "kl_diagnostics",
    "kl_per_dimension",
    "mode_coverage",
    "ood_auroc",
    "ood_scores",
    "precision_recall",
    "psis_khat",
    "save_image_grid",
    "to_inference_data",
]
