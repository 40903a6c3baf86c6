"""The MAF quality benchmark runs end to end in its quick mode and writes its report."""

import json
import math

import pytest
import torch

from tests.scripts import ROOT, load


@pytest.mark.slow
def test_bench_maf_quality_quick(tmp_path):
    bench = load(ROOT / "benchmarks" / "bench_maf_quality.py")
    out = tmp_path / "maf_quality.json"
    threads = torch.get_num_threads()
    # the benchmark runs in float32 and must then restore the default dtype: start from
    # float64 (whatever --dtype is; the test's fixture restores its own) to see the restore
    torch.set_default_dtype(torch.float64)
    report = bench.main(["--quick", "--threads", str(threads), "--out", str(out)])
    assert torch.get_default_dtype() == torch.float64  # restored after the float32 runs
    written = json.loads(out.read_text())
    assert written["results"]["models"].keys() == report["results"].keys()
    assert written["results"]["protocol"]["seeds"] == [0]
    assert written["meta"]["reduced"].startswith("--quick")
    results = report["results"]
    assert set(results) == set(bench.MODELS)
    for name, r in results.items():
        assert math.isfinite(r["test_nats_mean"]), name
        assert r["test_bits_per_dim_mean"] > 0, name
    # the same networks in every library: Pyro, pyrogen, nflows and zuko have equal sizes
    peers = [r["params"] for r in results.values() if r["group"] == "peer"]
    assert len(set(peers)) == 1, peers
    for key in ("command", "date", "machine", "versions", "protocol"):
        assert key in report
    assert report["machine"]["torch_threads"] == threads
