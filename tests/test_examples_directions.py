"""The two-directions and outlier-detection examples run in their smoke modes."""

import json
import math

import pytest

from tests.scripts import ROOT, load


@pytest.mark.slow
def test_two_directions_smoke(tmp_path):
    example = load(ROOT / "examples" / "two_directions.py")
    record = example.main(["--smoke", "--seeds", "0", "1", "--out", str(tmp_path)])
    assert json.loads((tmp_path / "two_directions.json").read_text())["meta"] == record["meta"]
    assert record["meta"]["reduced"].startswith("--smoke")
    per_seed = record["results"]["per_seed"]
    assert set(per_seed) == {"0", "1"}
    results = per_seed["0"]
    assert per_seed["1"] != results  # another seed, another fit
    assert set(results) == {"banana", "ring", "funnel", "mixture", "two moons"}
    for per_fit in results.values():
        assert set(per_fit) == {"MAF/forward", "MAF/reverse", "IAF/forward", "IAF/reverse"}
        for r in per_fit.values():
            assert math.isfinite(r["forward_kl"]) and math.isfinite(r["reverse_kl"])
            assert 0 < r["ess_fraction"] <= 1 and r["seconds_per_step"] > 0
    assert results["mixture"]["MAF/reverse"]["modes_covered"] in range(5)
    spread = record["results"]["spread_over_seeds"]["mixture"]["MAF/reverse"]
    values = [per_seed[s]["mixture"]["MAF/reverse"]["reverse_kl"] for s in ("0", "1")]
    assert spread["seeds"] == 2 and spread["reverse_kl mean"] == pytest.approx(sum(values) / 2)
    assert "seconds_per_step mean" not in spread  # timings are not a seed's result
    assert (tmp_path / "two_directions.png").stat().st_size > 0


@pytest.mark.slow
def test_outlier_detection_smoke(tmp_path):
    example = load(ROOT / "examples" / "outlier_detection.py")
    record = example.main(["--smoke", "--out", str(tmp_path)])
    assert json.loads((tmp_path / "outlier_detection.json").read_text())["meta"] == record["meta"]
    assert record["meta"]["reduced"].startswith("--smoke")
    auroc = record["results"]["per_seed"]["0"]["auroc"]
    assert set(auroc) == {"MAF", "PixelCNN", "VAE"}
    spread = record["results"]["auroc_spread_over_seeds"]
    assert spread["VAE"]["inverted"]["typicality mean"] == auroc["VAE"]["inverted"]["typicality"]
    for per_set in auroc.values():
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
