"""``to_inference_data``: guide draws in vectorized batches against one draw at a time.

Case: the breast-cancer Bayesian logistic regression of ``examples/logistic_regression.py``
(31 latents, 569 observations, float64) with pyrogen's ``AutoFlow`` (constructor defaults,
built but not trained: the cost does not depend on the fit), 1000 guide draws
(``--quick``: 50). Rows: ``pyrogen`` (``vectorize=None``, the default: batches of up to 1000
draws in a particle plate) and ``pyrogen, one draw at a time`` (``vectorize=False``, what
every draw cost before), each giving the same groups (posterior, predictive, per-observation
log-likelihood, ``lp``/``log_q``). Registered in ``python -m benchmarks.run`` as
``inference_data``: ``python -m benchmarks.run --only inference_data --repeats 3``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pyro
import torch

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "logistic_regression.py"


def _example():
    spec = importlib.util.spec_from_file_location("logistic_regression_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cases(quick: bool = False, device: str = "cpu") -> list[dict]:
    """Two rows (``pyrogen`` vectorized, target 10x faster than one draw at a time; and the
    one-draw-at-a-time reference). CPU only (the example's data and model live there)."""
    from pyrogen.analysis import to_inference_data
    from pyrogen.infer import AutoFlow

    example = _example()
    x, y = example.load_data(torch.float64)
    model = example.make_model(x, y)
    cls = type("AutoFlow_inference_data_bench", (AutoFlow,), {})
    guide = cls(model, progress=False)
    with torch.no_grad():
        guide()
    draws = 50 if quick else 1000
    case = f"to_inference_data, logistic regression D=31, AutoFlow, {draws} draws"

    def run(vectorize):
        def fn():
            with torch.no_grad():
                to_inference_data(
                    model, guide, num_samples=draws, progress=False, vectorize=vectorize
                )

        return fn

    pyro.get_param_store()  # the guide's parameters stay in the store for the timed calls
    return [
        {"case": case, "library": "pyrogen", "fn": run(None), "target": 10.0},
        {
            "case": case,
            "library": "pyrogen, one draw at a time",
            "ours": False,
            "fn": run(False),
            "note": "the reference row is pyrogen itself with vectorize=False",
        },
    ]
