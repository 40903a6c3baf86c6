"""The contrastive-divergence benchmark runs in its quick mode: pyrogen's closed-form and traced
paths, the SVI floor and scikit-learn are all timed, and the JSON report is written."""

import json

import torch

from tests.scripts import ROOT, load


def test_bench_cd_quick(tmp_path):
    bench = load(ROOT / "benchmarks" / "bench_cd.py")
    out = tmp_path / "cd.json"
    threads = torch.get_num_threads()
    try:
        report = bench.main(["--quick", "--threads", str(threads), "--out", str(out)])
    finally:
        torch.set_num_threads(threads)
    assert [r["batch"] for r in report["rows"]] == [10, 100]
    for row in report["rows"]:
        for key in ("pyrogen", "pyrogen_traced", "svi_floor", "sklearn"):
            assert row[f"{key}_s_per_epoch"] > 0
    assert json.loads(out.read_text())["results"]["rows"] == report["rows"]
    names = [c["name"] for c in bench.table()]
    assert len(names) == 2 and all(callable(c["fn_peer"]) for c in bench.table())
