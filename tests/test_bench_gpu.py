"""``bench/gpu.sh --dry-run``: every step of the GPU run at tiny sizes on the CPU, writing its tables to $OUT."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "gpu.sh"


def test_gpu_script_dry_run_writes_its_tables(tmp_path):
    # one process: the path a single GPU takes (FSDP2 over a one-rank process group)
    env = {**os.environ, "PYTHON": sys.executable, "OUT": str(tmp_path), "NPROC": "1", "OMP_NUM_THREADS": "1"}
    res = subprocess.run(["bash", str(SCRIPT), "--dry-run"], env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, (res.stdout + res.stderr)[-4000:]
    for name in ("device.json", "compare.md", "compare.json", "fsdp.md", "fsdp.log"):
        assert (tmp_path / name).is_file(), name
    summary = json.loads((tmp_path / "compare.json").read_text())
    assert summary and "matmul peak" in (tmp_path / "compare.md").read_text()
    fsdp = json.loads((tmp_path / "fsdp.md").read_text().splitlines()[-1])
    assert fsdp["fsdp_processes"] == 1 and fsdp["steps"] == 3
    assert "[fsdp, sharded]" in (tmp_path / "fsdp.log").read_text()
    assert (tmp_path / "fsdp-run" / "checkpoints" / "step-00000003" / "trainer.pt").is_file()
