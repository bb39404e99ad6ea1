"""The benchmark scripts run end to end (tiny sizes; timings are not checked)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 400  # seconds: a hung benchmark (e.g. a distributed job that never connects) fails, not stalls


def test_scaling_benchmark_smoke(tmp_path):
    cmd = [
        sys.executable, str(ROOT / "bench" / "scaling.py"), "--quick", "--min-log2", "6", "--max-log2", "7",
        "--fit-min-log2", "6", "--o-sweep-m", "64", "--latents", "8", "--width", "16", "--heads", "2",
        "--depth", "1", "--channels", "8", "--out", str(tmp_path / "scaling.png"),
    ]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=TIMEOUT).stdout
    summary = json.loads(out.strip().splitlines()[-1])
    assert {"perceiver_time_slope_M", "transformer_time_slope_M", "perceiver_time_slope_O"} <= set(summary)
    assert (tmp_path / "scaling.png").stat().st_size > 0


def test_attention_kernels_benchmark_smoke():
    cmd = [sys.executable, str(ROOT / "bench" / "attention_kernels.py"), "--quick", "--reps", "1"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=TIMEOUT).stdout
    summary = json.loads(out.strip().splitlines()[-1])
    assert {"peak_fp32", "peak_bf16"} <= set(summary)
    rows = [v for k, v in summary.items() if "/" in k]
    assert len(rows) == 4 and all({"sdpa_gflops", "matmuls_gflops", "sdpa_fraction_of_peak"} <= set(v) for v in rows)


def test_ab_benchmark_smoke():
    cmd = [sys.executable, str(ROOT / "bench" / "ab.py"), "--quick", "--config", "imagenet", "--mode", "train"]
    out = subprocess.run(cmd + ["--rounds", "1"], capture_output=True, text=True, check=True, timeout=TIMEOUT).stdout
    summary = json.loads(out.strip().splitlines()[-1])
    assert {"hf_s", "ours_s", "speedup_vs_hf"} <= set(summary)


def test_flow_default_benchmark_smoke():
    cmd = [sys.executable, str(ROOT / "bench" / "flow_default.py"), "--quick", "--reps", "1"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=TIMEOUT).stdout
    summary = json.loads(out.strip().splitlines()[-1])
    assert {"this/default", "this/none", "this/16384", "fourier_grid"} <= set(summary)
    assert summary["fourier_grid"]["bit_identical"] is True


def test_mlm_diagnosis_smoke():
    variants = "baseline,transformer,copy_objective,aux_warmup,mixed_masking,local_init,no_decoder_mlp"
    cmd = [sys.executable, str(ROOT / "bench" / "mlm_diagnosis.py"), "--quick", "--jobs", "1", "--only", variants]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=TIMEOUT).stdout
    summary = json.loads(out.strip().splitlines()[-1])
    rows = {r["name"]: r for r in summary["variants"]}
    assert set(rows) == set(variants.split(","))
    assert all(0 <= r["accuracy"] <= 1 and 0 <= r["copy_accuracy"] <= 1 for r in rows.values())
    assert rows["no_decoder_mlp"]["mflops"] < rows["baseline"]["mflops"]  # the mutated model is counted


def test_mlm_diagnosis_init_widths_narrow_as_the_local_init_scale_grows():
    variants = "local_init_a0.5,local_init_a1.5,local_init_a6"
    cmd = [sys.executable, str(ROOT / "bench" / "mlm_diagnosis.py"), "--init-widths", "--only", variants]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=TIMEOUT).stdout
    widths = json.loads(out.strip().splitlines()[-1])["init_widths"]
    for side in ("encoder_inputs_per_latent", "decoder_latents_per_query"):
        w = [widths[v][side] for v in variants.split(",")]
        assert 64 >= w[0] > w[1] > w[2] >= 1


def test_clm_step_time_smoke():
    cmd = [sys.executable, str(ROOT / "bench" / "clm_step_time.py"), "--quick", "--configs", "32x2,64x1"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=TIMEOUT).stdout
    summary = json.loads(out.strip().splitlines()[-1])
    assert [(r["context"], r["batch_size"]) for r in summary["rows"]] == [(32, 2), (64, 1)]
    assert all(r["step_seconds"] > 0 for r in summary["rows"])


def test_fsdp_memory_benchmark_smoke():
    cmd = [sys.executable, str(ROOT / "bench" / "fsdp_memory.py"), "--model", "test-language-perceiver", "--steps", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=TIMEOUT, env=env).stdout
    summary = json.loads(out.strip().splitlines()[-1])
    # FSDP over 2 ranks owns half of DDP's parameter + gradient + AdamW bytes (up to padding of odd sizes)
    assert summary["fsdp_state_mib"] == pytest.approx(summary["ddp_state_mib"] / 2, rel=0.05)


def test_hip_vs_flat_benchmark_smoke():
    cmd = [sys.executable, str(ROOT / "bench" / "hip_vs_flat.py"), "--quick", "--threads", "1"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=TIMEOUT).stdout
    summary = json.loads(out.strip().splitlines()[-1])
    rows = summary["scaling"]
    assert {r["model"] for r in rows} == {"hip-cpu", "flat-cpu"} and len(rows) == 4
    assert all(r["step_s"] > 0 and r["peak_rss_mib"] > 0 and r["fwd_gflops"] > 0 for r in rows)


def test_flow_pixel_mlp_smoke():
    cmd = [sys.executable, str(ROOT / "bench" / "flow_pixel_mlp.py"), "--quick"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=TIMEOUT).stdout
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["steps"] == 5 and summary["eval_pairs"] == 4
    assert summary["epe_mlp"] > 0 and summary["epe_zero"] > 0


def test_flow_wiring_smoke():
    cmd = [sys.executable, str(ROOT / "bench" / "flow_wiring.py"), "--quick"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=TIMEOUT).stdout
    rows = json.loads(out.strip().splitlines()[-1])["rows"]
    sources = ("global", "local", "procedural", "procedural-clean")
    models = ("mlp", "perceiver", "perceiver-qres", "perceiver-qres-noattn", "perceiver-qres-zeroattn")
    assert {(r["source"], r["model"]) for r in rows} == {(s, m) for s in sources for m in models}
    assert all(r["epe"] > 0 and r["epe_zero"] > 0 for r in rows)
