"""The two-directions and outlier-detection examples run in their smoke modes."""

import json
import math

import pytest

from tests.scripts import ROOT, load


@pytest.mark.slow
def test_two_directions_smoke(tmp_path):
    example = load(ROOT / "examples" / "two_directions.py")
    results = example.main(["--smoke", "--out", str(tmp_path)])
    assert set(results) == {"banana", "ring", "funnel", "mixture", "two moons"}
    for per_fit in results.values():
        assert set(per_fit) == {"MAF/forward", "MAF/reverse", "IAF/forward", "IAF/reverse"}
        for r in per_fit.values():
            assert math.isfinite(r["forward_kl"]) and math.isfinite(r["reverse_kl"])
            assert 0 < r["ess_fraction"] <= 1 and r["seconds_per_step"] > 0
    assert results["mixture"]["MAF/reverse"]["modes_covered"] in range(5)
    assert (tmp_path / "two_directions.png").stat().st_size > 0
    record = json.loads((tmp_path / "two_directions.json").read_text())
    assert {"command", "date", "machine", "versions", "results"} <= set(record)


@pytest.mark.slow
def test_outlier_detection_smoke(tmp_path):
    example = load(ROOT / "examples" / "outlier_detection.py")
    record = example.main(["--smoke", "--out", str(tmp_path)])
    assert set(record["auroc"]) == {"MAF", "PixelCNN", "VAE"}
    for per_set in record["auroc"].values():
        assert set(per_set) == {
            "uniform noise",
            "Bernoulli noise",
            "inverted",
            "rotated 90",
            "sklearn digits",
        }
        for r in per_set.values():
            assert set(r) == {"log_likelihood", "likelihood_ratio", "typicality", "typicality_M10"}
            assert all(0 <= v <= 1 for v in r.values())
    assert (tmp_path / "outlier_detection.png").stat().st_size > 0
