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


def check(result: dict, workers: int) -> None:
    assert result["workers"] == workers and result["batch_size"] == 100
    assert result["steps"] == 3  # 300 smoke images, 100 per step
    assert result["steps_per_second"] > 0
    assert [p["step"] for p in result["curve"]] == [1, 2, 3]
    assert all(math.isfinite(p["test_elbo"]) and p["test_elbo"] < 0 for p in result["curve"])
    for key in ("command", "date_utc", "machine", "versions", "threads_per_worker"):
        assert result[key]


@pytest.mark.slow
def test_distributed_vae_smoke_one_process(tmp_path):
    result = load(EXAMPLE).main(["--smoke", "--out", str(tmp_path)])
    check(result, 1)
    assert result["test_log_likelihood"] >= result["test_elbo"] - 5  # K=20 against K=1
    assert json.loads((tmp_path / "distributed_vae_1proc.json").read_text())["steps"] == 3
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
