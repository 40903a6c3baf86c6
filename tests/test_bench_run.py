"""The benchmark harness: the registry interface is checked, every registered module's cases
run at tiny sizes in one process, and the record holds every row, ratio and target."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks import harness, run


def test_check_case_fills_in_ours_and_rejects_bad_cases():
    case = harness.check_case({"case": "c", "library": "pyrogen compiled", "fn": lambda: None})
    assert case["ours"] is True
    assert harness.check_case({"case": "c", "library": "Pyro", "fn": print})["ours"] is False
    with pytest.raises(ValueError, match="missing"):
        harness.check_case({"case": "c", "fn": print})
    with pytest.raises(ValueError, match="unknown"):
        harness.check_case({"case": "c", "library": "x", "fn": print, "speed": 1})
    with pytest.raises(TypeError, match="callable"):
        harness.check_case({"case": "c", "library": "x", "fn": 3})


def test_time_cases_round_robin_ratios_and_targets():
    calls = []

    def make(name, n):
        def fn():
            calls.append(name)
            sum(range(n))

        return fn

    cases = [
        {"case": "c", "library": "pyrogen", "fn": make("ours", 10), "target": 2.0},
        {"case": "c", "library": "peer", "fn": make("peer", 200_000)},
    ]
    rows = harness.time_cases(cases, repeats=3, log=None)
    assert calls == ["ours", "peer"] * 4  # one warm-up, then round-robin
    ours, peer = rows
    assert ours["ratio"] == 1.0 and peer["ratio"] == peer["ms"] / ours["ms"]
    assert len(ours["ms_all"]) == 3
    (summary,) = harness.summarize(rows)
    assert summary["fastest_other"] == "peer"
    assert summary["met"] == (summary["speedup"] >= 2.0)


@pytest.mark.slow
def test_run_quick_every_module(tmp_path):
    out = tmp_path / "all.json"
    threads = torch.get_num_threads()
    results = run.main(["--quick", "--threads", "1", "--no-compile", "--out", str(out)])
    assert torch.get_num_threads() == threads
    rows = results["runs"]["threads=1"]["rows"]
    cases = {r["case"] for r in rows}
    for name in ["MAF log_prob fwd+bwd d=4", "RealNVP log_prob fwd+bwd d=4", "MAF sample d=4",
                 "IAF inverse d=4", "PixelCNN sample 8x8 n=2",
                 "AutoFlow SVI step D=3"]:  # fmt: skip
        assert name in cases
    libraries = {r["library"] for r in rows if r["case"] == "RealNVP log_prob fwd+bwd d=4"}
    assert libraries == {"pyrogen", "Pyro", "zuko", "nflows", "normflows", "pyrogen matmul floor"}
    assert all(r["ms"] > 0 for r in rows)
    record = json.loads(out.read_text())
    assert (
        record["results"]["runs"]["threads=1"]["summary"] == results["runs"]["threads=1"]["summary"]
    )
    assert {s["target"] for s in record["results"]["runs"]["threads=1"]["summary"]} >= {
        1.0, 3.0, 4.0, 10.0
    }  # fmt: skip


def test_cuda_request_without_a_gpu_is_an_error():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(SystemExit):
        run.main(["--quick", "--device", "cuda"])


def test_runs_as_a_script_from_the_repository_root(tmp_path):
    # the command a results record shows is ``python benchmarks/run.py ...``
    root = Path(run.__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, "benchmarks/run.py", "--help"],
        cwd=root,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": ""},
    )
    assert done.returncode == 0, done.stderr
    assert "--threads" in done.stdout
