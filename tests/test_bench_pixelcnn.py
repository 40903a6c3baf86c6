"""The PixelCNN sampling benchmark runs in its quick mode and both samplers agree."""

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_bench_pixelcnn_quick(tmp_path):
    path = ROOT / "benchmarks" / "bench_pixelcnn.py"
    spec = importlib.util.spec_from_file_location(path.stem, path)
    bench = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = bench
    spec.loader.exec_module(bench)
    threads = torch.get_num_threads()
    try:
        report = bench.main(["--quick", "--out", str(tmp_path / "pixelcnn.json")])
    finally:
        torch.set_num_threads(threads)
    assert report["identical"]
    assert report["seconds"]["window"] > 0 and report["seconds"]["full image"] > 0
    assert (tmp_path / "pixelcnn.json").exists()
