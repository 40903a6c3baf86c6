"""All bad-input cases, from the tables of each area."""

from __future__ import annotations

from tests.bad_input import (
    cases_analysis,
    cases_distributions,
    cases_infer,
    cases_nn,
    cases_transforms,
    cases_worst,
)
from tests.bad_input.table import Case

AREAS = {
    "transforms": cases_transforms.CASES,
    "nn": cases_nn.CASES,
    "distributions": cases_distributions.CASES,
    "infer": cases_infer.CASES,
    "analysis": cases_analysis.CASES,
    "worst": cases_worst.CASES,
}
ALL: list[Case] = [case for cases in AREAS.values() for case in cases]
