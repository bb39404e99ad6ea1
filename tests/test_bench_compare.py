"""Smoke test of ``bench/compare.py`` at tiny sizes, in-process (< 30 s)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("transformers")
pytest.importorskip("perceiver_pytorch")

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "compare.py"


def test_compare_quick_runs_and_prints_json_summary():
    cmd = [
        sys.executable,
        str(SCRIPT),
        "--quick",
        "--inprocess",
        "--no-compile",
        "--only",
        "a:infer+train:fp32,c:infer:fp32,d:infer:fp32,e:infer:fp32",
        "--batch",
        "1",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    summary = json.loads(lines[-1])
    assert "PARITY FAILED" not in proc.stdout
    assert set(summary["parity_max_abs_diff"]) == {"language", "flow", "multimodal"}
    assert all(d <= 1e-4 for d in summary["parity_max_abs_diff"].values())
    res = summary["results"]
    assert {"language/b1/infer/fp32", "language/b1/train/fp32", "flow/b1/infer/fp32"} <= set(res)
    assert res["language/b1/infer/fp32"]["speedup_vs_hf"] > 0
    assert "speedup_vs_lucid" in res["flow/b1/infer/fp32"]
    assert "speedup_vs_hf" in res["multimodal/b1/infer/fp32"]
    assert summary["peak_gflops"]["fp32"] > 0
