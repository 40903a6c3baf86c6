"""The data-parallel VAE example runs in its smoke mode: one process, and two under torchrun."""

import json
import math
import os
import socket
import subprocess
import sys

import pytest

from tests.scripts import ROOT, load

EXAMPLE = ROOT / "examples" / "distributed_vae.py"


def check(record: dict, workers: int) -> dict:
    """The record's run metadata and training figures; returns its results."""
    launcher = f"torchrun --nproc_per_node {workers}" if workers > 1 else "python"
    command = record["meta"]["command"]
    assert command.startswith(f"{launcher} ") and "examples/distributed_vae.py" in command
    assert record["meta"]["reduced"].startswith("--smoke")
    run = record["results"]
    assert run["workers"] == workers and run["batch_size"] == 100
    assert run["seeds"] == [0] and list(run["per_seed"]) == ["0"]
    result = run["per_seed"]["0"]
    assert result["steps"] == 3  # 300 smoke images, 100 per step
    assert result["steps_per_second"] > 0 and run["threads_per_worker"] >= 1
    curve = result["test_elbo_curve"]
    assert [p["step"] for p in curve] == [1, 2, 3]
    assert all(math.isfinite(p["test_elbo"]) and p["test_elbo"] < 0 for p in curve)
    spread = run["spread_over_seeds"]
    assert spread["seeds"] == 1 and spread["steps_per_second mean"] == result["steps_per_second"]
    return result


@pytest.mark.slow
def test_distributed_vae_smoke_one_process(tmp_path):
    record = load(EXAMPLE).main(["--smoke", "--out", str(tmp_path)])
    result = check(record, 1)
    assert result["test_log_likelihood"] >= result["test_elbo"] - 5  # K=20 against K=1
    assert json.loads((tmp_path / "distributed_vae_1proc.json").read_text()) == record
    assert (tmp_path / "distributed_vae.png").stat().st_size > 0


@pytest.mark.slow
def test_distributed_vae_smoke_torchrun_two_workers(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
        "--master_addr", "127.0.0.1", "--master_port", str(port),
        str(EXAMPLE), "--smoke", "--eval-samples", "0", "--threads", "1",
        "--out", str(tmp_path),
    ]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "workers 2 (gloo)" in done.stdout
    check(json.loads((tmp_path / "distributed_vae_2proc.json").read_text()), 2)
