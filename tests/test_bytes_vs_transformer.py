"""bench/bytes_vs_transformer.py: FLOP counting and FLOP matching, and a tiny end-to-end run."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

from perceiver_io.models.mlm import MaskedLanguageModel
from perceiver_io.tasks.base import DataUnavailable
from perceiver_io.tasks.mlm import demo_mlm_config

ROOT = Path(__file__).resolve().parents[1]


def _bench():
    spec = importlib.util.spec_from_file_location("bytes_vs_transformer", ROOT / "bench" / "bytes_vs_transformer.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("bytes_vs_transformer", module)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("seq_len", [32, 96])
def test_analytic_flops_equal_flop_counter(seq_len):
    b = _bench()
    perceiver = MaskedLanguageModel(demo_mlm_config(seq_len))
    assert sum(b.perceiver_flops(perceiver, seq_len).values()) == b.counted_flops(perceiver, seq_len)
    transformer = b.ByteTransformerMLM(seq_len, width=48, depth=2)
    assert sum(b.transformer_flops_dims(seq_len, 48, 2).values()) == b.counted_flops(transformer, seq_len)


def test_flop_matching_makes_the_long_sequence_transformer_shallow():
    b = _bench()
    depths = {}
    for seq_len in (64, 256):
        target = sum(b.perceiver_flops(MaskedLanguageModel(demo_mlm_config(seq_len)), seq_len).values())
        depth, width = b.match_transformer(target, seq_len, tolerance=0.1, min_width=64)
        got = sum(b.transformer_flops_dims(seq_len, width, depth).values())
        assert abs(got / target - 1) <= 0.1 and width >= 64
        depths[seq_len] = depth
    assert depths[256] < depths[64]


def test_transformer_classifier_shapes():
    b = _bench()
    mlm = b.ByteTransformerMLM(16, width=32, depth=1)
    ids = torch.randint(6, 262, (3, 10))
    mask = torch.ones(3, 10, dtype=torch.bool)
    mask[0, 5:] = False
    assert mlm(ids, mask).logits.shape == (3, 10, 262)
    assert b.ByteTransformerClassifier(mlm)(ids, mask).logits.shape == (3, 2)


def test_end_to_end_tiny(capsys):
    b = _bench()
    argv = ["--seq-len", "48", "--steps", "4", "--ft-steps", "2", "--batch-size", "4", "--eval-windows", "8"]
    argv += ["--max-bytes", "400000", "--ft-seq-len", "32", "--local-init", "3"]
    try:
        summary = b.main(argv)
    except DataUnavailable as e:  # no sentiment data cached and no network
        if "sentiment" not in str(e):
            raise
        pytest.skip(str(e))
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert json.loads(last)["transformer_width"] == summary["transformer_width"]
    for name in ("perceiver_io", "transformer"):
        m = summary["models"][name]
        assert m["flops_per_example"] == m["flops_counted"]
        assert 0 <= m["mlm_accuracy"] <= 1 and 0 <= m["sentiment_accuracy"] <= 1
    assert 0.9 <= summary["flop_ratio_transformer_over_perceiver"] <= 1.1
    assert summary["perceiver_local_init"] == 3 and "local_init 3" in summary["models"]["perceiver_io"]["description"]
