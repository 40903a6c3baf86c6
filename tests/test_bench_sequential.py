"""The sequential-direction benchmark runs in its quick mode: every peer library is timed, the
degree-blocked IAF inverse agrees with the D-pass fixed point, and the JSON report is written."""

import json

import pytest
import torch

from tests.scripts import ROOT, load


@pytest.mark.slow
def test_bench_sequential_quick(tmp_path):
    bench = load(ROOT / "benchmarks" / "bench_sequential.py")
    out = tmp_path / "sequential.json"
    threads = torch.get_num_threads()
    try:
        report = bench.main(["--quick", "--threads", str(threads), "--out", str(out)])
    finally:
        torch.set_num_threads(threads)
    libraries = {r["library"] for r in report["rows"] if r["case"].startswith("MAF sample")}
    assert libraries == {"pyrogen", "Pyro", "zuko", "nflows", "normflows"}
    assert all(r["ms"] > 0 for r in report["rows"])
    tol = 1e-10 if torch.get_default_dtype() == torch.float64 else 1e-4
    assert report["iaf_inverse_max_abs_error"] < tol
    written = json.loads(out.read_text())
    assert written["results"]["rows"] == report["rows"] and written["meta"]["reduced"]
