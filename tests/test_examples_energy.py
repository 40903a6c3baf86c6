"""The energy-model example runs in its smoke mode and its models learn real structure."""

import json
import math

import pytest

from tests.scripts import ROOT, load

UNIFORM = -64 * math.log(2)  # -44.36 nats: the uniform model over 8x8 binary images


@pytest.mark.slow
def test_rbm_digits_smoke(tmp_path):
    example = load(ROOT / "examples" / "rbm_digits.py")
    record = example.main(["--smoke", "--out", str(tmp_path)])
    out = record["per_seed"]["0"]
    written = json.loads((tmp_path / "rbm_digits.json").read_text())
    assert written["results"] == record and written["meta"]["command"].endswith(str(tmp_path))
    spread = record["spread_over_seeds"]["summary"]["DBM 64-100-50 (AIS + bound)"]
    assert (
        spread["seeds"] == 1
        and spread["test_ll mean"] == out["summary"]["DBM 64-100-50 (AIS + bound)"]["test_ll"]
    )
    # one epoch on 200 images already beats the uniform model by far more than the noise
    for name in ("pyrogen CD-1", "pyrogen CD-25", "pyrogen PCD-1", "scikit-learn BernoulliRBM"):
        assert UNIFORM + 10 < out[name]["test_ll"] < 0
    for check in out["ais_check"].values():
        assert abs(check["difference"]) < 5 * check["stderr"] + 0.05
    summary = out["summary"]
    assert {"DBN 64-100-50 (AIS + bound)", "DBM 64-100-50 (AIS + bound)"} <= set(summary)
    for row in summary.values():
        assert UNIFORM + 10 < row["test_ll"] < 0
        assert 0 < row["se"] < 2 and row["train_seconds"] > 0
    assert out["dbm"]["log_partition_stderr"] < 1
    assert math.isfinite(out["ebm_two_moons"]["test_ll"])
    assert (tmp_path / "rbm_digits.png").stat().st_size > 0
    assert (tmp_path / "ebm_two_moons.png").stat().st_size > 0
