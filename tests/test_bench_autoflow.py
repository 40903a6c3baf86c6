"""The AutoFlow step benchmark runs in its smoke mode: both guides are timed and the JSON record
holds the printed rows."""

import json

from tests.scripts import ROOT, load


def test_bench_autoflow_smoke(tmp_path):
    bench = load(ROOT / "benchmarks" / "bench_autoflow.py")
    out = tmp_path / "autoflow.json"
    import torch

    threads = torch.get_num_threads()
    try:
        results = bench.main(["--smoke", "--threads", "1", "--out", str(out)])
    finally:
        torch.set_num_threads(threads)
    assert {(r["D"], r["guide"]) for r in results["rows"]} == {
        (3, "AutoFlow"),
        (3, "AutoMultivariateNormal"),
    }
    for row in results["rows"]:
        assert row["step_ms"] > 0 and row["setup_s"] >= 0
    reference = next(r for r in results["rows"] if r["guide"] == "AutoMultivariateNormal")
    assert reference["ratio_to_AutoMultivariateNormal"] == 1.0
    assert json.loads(out.read_text())["results"]["rows"] == results["rows"]
