"""The PixelCNN sampling benchmark runs in its quick mode and both samplers agree."""

import json

import pytest
import torch

from tests.scripts import ROOT, load


@pytest.mark.slow
def test_bench_pixelcnn_quick(tmp_path):
    bench = load(ROOT / "benchmarks" / "bench_pixelcnn.py")
    threads = torch.get_num_threads()
    try:
        report = bench.main(["--quick", "--out", str(tmp_path / "pixelcnn.json")])
    finally:
        torch.set_num_threads(threads)
    assert report["identical"]
    assert report["seconds"]["window"] > 0 and report["seconds"]["full image"] > 0
    written = json.loads((tmp_path / "pixelcnn.json").read_text())
    assert written["results"]["identical"] and written["meta"]["reduced"].startswith("--quick")
