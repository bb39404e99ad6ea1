"""bench/ar_vs_transformer.py: FLOP counting and matching, the Transformer's causality, failures, end to end."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from perceiver_io.models.perceiver_ar import PerceiverAR, PerceiverARConfig

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "ar_vs_transformer.py"


def _bench():
    spec = importlib.util.spec_from_file_location("ar_vs_transformer", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("ar_vs_transformer", module)
    spec.loader.exec_module(module)
    return module


def _config(**overrides) -> PerceiverARConfig:
    kw = dict(
        max_context_length=24,
        num_latents=8,
        num_input_channels=32,
        num_latent_channels=32,
        num_self_attention_layers=2,
        num_cross_attention_heads=2,
        num_self_attention_heads=2,
        dropout=0.0,
    )
    return PerceiverARConfig(**{**kw, **overrides})


def _run(*argv: str) -> dict:
    out = subprocess.run(
        [sys.executable, str(SCRIPT), *argv], capture_output=True, text=True, check=True, timeout=400
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.parametrize("length", [5, 24])  # shorter than N (every position a latent), a full context
@pytest.mark.parametrize("positions", ["none", "sinusoidal"])
def test_analytic_flops_equal_flop_counter(length, positions):
    b = _bench()
    perceiver = PerceiverAR(_config(absolute_positions=positions))
    assert sum(b.perceiver_ar_flops(perceiver, length).values()) == b.counted_flops(perceiver, length)
    transformer = b.CausalTransformer(
        _config(num_latent_channels=48, num_self_attention_layers=3, absolute_positions=positions)
    )
    analytic = sum(b.transformer_flops(transformer, length).values())
    assert analytic == b.counted_flops(transformer, length) == b.transformer_flops_dims(length, 48, 3)


def test_flop_matching_picks_a_transformer_within_tolerance():
    b = _bench()
    for length, n, width in ((128, 32, 32), (1024, 128, 128), (2048, 256, 256)):
        p = PerceiverAR(_config(max_context_length=length, num_latents=n, num_input_channels=width,
                                num_latent_channels=width, num_self_attention_layers=4))  # fmt: skip
        per_token = sum(b.perceiver_ar_flops(p, length).values()) / n
        m = b.match_transformer(per_token, length, width, tolerance=0.1, min_width=16)
        got = b.transformer_flops_dims(length, m["width"], m["depth"]) / length
        assert m["matched"] and abs(got / per_token - 1) <= 0.1 and m["width"] >= 16
        assert abs(m["flop_error"] - (got / per_token - 1)) < 1e-12
    # nothing within a zero tolerance: the closest pair, flagged
    m = b.match_transformer(per_token, length, width, tolerance=0.0, min_width=16)
    assert not m["matched"] and abs(m["flop_error"]) < 0.05


@pytest.mark.parametrize("training", [False, True])
def test_transformer_is_causal(training):
    b = _bench()
    torch.manual_seed(0)
    model = b.CausalTransformer(_config(dropout=0.1)).train(training)
    with torch.no_grad():
        model.head.projection.weight.normal_()  # zero-initialised: no gradient would flow
    length = 10
    x = model.input_adapter.embed(torch.randint(6, 262, (2, length))).detach().requires_grad_(True)
    padded = torch.ones(2, length, dtype=torch.bool)
    padded[1, :3] = False  # left padding: the boolean-mask path
    for mask in (None, padded):
        for i in range(length):
            torch.manual_seed(i)
            out = model.head.logits(model.encode(x, mask))
            (grad,) = torch.autograd.grad(out[:, i].square().sum(), x)
            assert torch.all(grad[:, i + 1 :] == 0), f"position {i} sees later inputs"
            assert grad[0, : i + 1].abs().sum(-1).gt(0).all()  # its own and every earlier input
            if mask is not None:
                assert torch.all(grad[1, :3] == 0)  # padding is invisible


def test_padded_rows_equal_unpadded_rows():
    b = _bench()
    torch.manual_seed(0)
    model = b.CausalTransformer(_config()).eval()
    ids = torch.randint(6, 262, (1, 7))
    padded = torch.cat([torch.zeros(1, 3, dtype=torch.long), ids], 1)
    with torch.no_grad():
        model.head.projection.weight.normal_()
        a = model(ids).logits  # is_causal kernel
        p = model(padded, padded != 0).logits[:, 3:]  # boolean mask
    torch.testing.assert_close(a, p, atol=1e-5, rtol=1e-5)


def test_perceiver_ar_pytorch_nearest_configuration():
    pytest.importorskip("perceiver_ar_pytorch")
    b = _bench()
    cfg = _config(num_input_channels=64, num_latent_channels=64)  # head width 32: its rotary needs 32
    theirs, why = b.lucidrains_model(cfg)
    assert why == "ok"
    assert len(theirs.layers) == cfg.num_self_attention_layers and theirs.cross_attn_seq_len == 24 - 8
    prompt = torch.randint(6, 262, (1, 24))
    assert theirs(prompt).shape == (1, 8, 262)  # logits for the N latents
    assert b.lucidrains_generate(theirs, prompt, 3).shape == (1, 3)
    assert b.lucidrains_model(_config())[0] is None  # head width 16


@pytest.mark.parametrize(("option", "status"), [("--scaling-timeout=1", "timeout"), ("--memory-limit-gb=0.05", "oom")])
def test_scaling_failures_are_reported_not_skipped(option, status):
    s = _run("--quick", "--sections", "scaling", "--no-count-flops", option)
    rows = s["scaling"]["rows"]
    assert [r["context"] for r in rows] == [128, 256]
    for name in ("perceiver_ar", "transformer"):
        assert rows[0][name]["status"] == status
        assert rows[1][name]["status"] == f"skipped ({status} at context 128)"


def test_quick_end_to_end():
    s = _run("--quick", "--contexts", "128", "--gen-contexts", "128")
    assert {"train", "scaling", "generation", "models", "flop_match", "transformer_depth", "wall_seconds"} <= set(s)
    assert s["flop_match"]["matched"] and 0.9 <= s["flop_match"]["flop_ratio_per_token"] <= 1.1
    for name in ("perceiver_ar", "transformer"):
        m = s["models"][name]
        assert m["flops_per_window"] == m["flops_per_window_counted"]
        t = s["train"]["models"][name]
        assert t["status"] == "ok" and t["steps"] == 8
        assert 0 < t["test"]["bits_per_byte"] < 9 and t["test"]["bits_per_byte_se"] > 0
        assert t["train_tokens_per_s"] > 0 and t["peak_rss_mb"] >= t["rss_at_first_step_mb"] > 0
        assert s["scaling"]["rows"][0][name]["status"] == "ok"
    p, t = s["train"]["models"]["perceiver_ar"], s["train"]["models"]["transformer"]
    assert p["test"]["scored_bytes"] == t["test"]["scored_bytes"]  # the same held-out bytes
    assert t["predicted_tokens_trained"] == 4 * p["predicted_tokens_trained"]  # all 128 positions vs 32 latents
    (g,) = s["generation"]["rows"]
    assert g["cached"]["tokens_per_s"] > 0 and g["uncached"]["tokens_per_s"] > 0
    assert g["cached_uncached_same_tokens"] == 1.0
