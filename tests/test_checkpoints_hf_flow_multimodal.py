"""Equivalence with ``transformers``: PerceiverForOpticalFlow and PerceiverForMultimodalAutoencoding.

Each test builds the ``transformers`` model with random weights, saves it, loads it with
``perceiver_io.from_pretrained`` and compares outputs on the same random inputs (fp32, ≤ 1e-4).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import perceiver_io
from perceiver_io.layers.spatial import patches_for_flow
from perceiver_io.models.flow import OpticalFlow
from perceiver_io.models.multimodal import MultimodalAutoencoder

transformers = pytest.importorskip("transformers")

ATOL = 1e-4


def _randomize(model: torch.nn.Module) -> None:
    """Give every parameter non-trivial values (the zero-initialised ones too)."""
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.2)


def _save_hf(model, tmp_path):
    model.save_pretrained(tmp_path)
    return tmp_path


# -- optical flow ---------------------------------------------------------------------------------


def _hf_flow(train_size=(8, 12), **kw):
    cfg = transformers.PerceiverConfig(
        num_latents=kw.pop("num_latents", 8),
        d_latents=kw.pop("d_latents", 32),
        d_model=322,
        num_blocks=kw.pop("num_blocks", 2),
        num_self_attends_per_block=kw.pop("num_self_attends_per_block", 2),
        num_self_attention_heads=kw.pop("num_self_attention_heads", 2),
        num_cross_attention_heads=1,
        train_size=list(train_size),
        **kw,
    )
    model = transformers.PerceiverForOpticalFlow(cfg).eval()
    _randomize(model)
    return model


def test_flow_matches_transformers(tmp_path):
    hf = _hf_flow()
    ours = perceiver_io.from_pretrained(_save_hf(hf, tmp_path))
    assert isinstance(ours, OpticalFlow) and not ours.training
    assert ours.config.encoder.activation == "gelu"
    frames = torch.randn(2, 2, 3, 8, 12)
    patches = patches_for_flow(frames)
    with torch.no_grad():
        expected = hf(inputs=patches).logits
        got = ours(frames).flow
        got_patches = ours(patches).flow
        got_chunked = ours(frames, chunk_size=7).flow
    assert expected.shape == got.shape == (2, 8, 12, 2)
    assert (got - expected).abs().max() <= ATOL
    assert (got_patches - expected).abs().max() <= ATOL
    assert (got_chunked - expected).abs().max() <= ATOL


def test_flow_matches_transformers_independent_config(tmp_path):
    """qk/v channels set, 'q' shape for attention, query residual off, 3 blocks: an unrelated config."""
    hf = _hf_flow(
        train_size=(6, 10),
        num_latents=5,
        d_latents=24,
        num_blocks=3,
        num_self_attends_per_block=1,
        num_self_attention_heads=3,
        qk_channels=12,
        v_channels=24,
        cross_attention_shape_for_attention="q",
        self_attention_widening_factor=2,
        cross_attention_widening_factor=3,
        use_query_residual=False,
    )
    ours = perceiver_io.from_pretrained(_save_hf(hf, tmp_path))
    patches = torch.randn(1, 2, 27, 6, 10)
    with torch.no_grad():
        assert (ours(patches).flow - hf(inputs=patches).logits).abs().max() <= ATOL


@pytest.mark.slow
def test_flow_published_config_matches_transformers(tmp_path):
    """The full published flow architecture (2048 × 512 latents, 24 layers, 16 heads) at a reduced image size."""
    hf = _hf_flow(
        train_size=(368, 496),
        num_latents=2048,
        d_latents=512,
        num_blocks=1,
        num_self_attends_per_block=24,
        num_self_attention_heads=16,
        attention_probs_dropout_prob=0.0,
    )
    with torch.no_grad():  # keep activations at a sane scale over 24 layers
        for p in hf.parameters():
            p.mul_(0.25)
    ours = perceiver_io.from_pretrained(_save_hf(hf, tmp_path))
    assert ours.num_parameters() == sum(p.numel() for p in hf.parameters())
    patches = torch.randn(1, 2, 27, 24, 32)
    hf.perceiver.decoder.output_image_shape = (24, 32)  # transformers reshapes to train_size otherwise
    with torch.no_grad():
        expected = hf(inputs=patches).logits
        got = ours(patches).flow
    assert (got - expected).abs().max() <= ATOL


def test_flow_parameter_count_matches_transformers():
    cfg = transformers.PerceiverConfig(
        num_latents=2048,
        d_latents=512,
        d_model=322,
        num_blocks=1,
        num_self_attends_per_block=24,
        num_self_attention_heads=16,
        num_cross_attention_heads=1,
        train_size=[368, 496],
    )
    with torch.device("meta"):
        hf = transformers.PerceiverForOpticalFlow(cfg)
        ours = perceiver_io.create_model("optical-flow-perceiver")
    n = sum(p.numel() for p in hf.parameters())
    assert ours.num_parameters() == n == 41_057_134


# -- multimodal autoencoding ----------------------------------------------------------------------

FRAMES, IMAGE, SPF, SPP, LABELS = 2, 8, 16, 4, 5  # video 2×8×8, audio 2·16 = 32 samples, 5 classes


def _hf_multimodal(**kw):
    cfg = transformers.PerceiverConfig(
        num_latents=kw.pop("num_latents", 6),
        d_latents=kw.pop("d_latents", 32),
        d_model=704,
        num_blocks=kw.pop("num_blocks", 1),
        num_self_attends_per_block=kw.pop("num_self_attends_per_block", 2),
        num_self_attention_heads=kw.pop("num_self_attention_heads", 4),
        num_cross_attention_heads=1,
        num_labels=LABELS,
        image_size=4,
        num_frames=FRAMES,
        audio_samples_per_frame=SPF,
        samples_per_patch=SPP,
        output_shape=[1, FRAMES, IMAGE, IMAGE],
        output_num_channels=kw.pop("output_num_channels", 16),
        **kw,
    )
    model = transformers.PerceiverForMultimodalAutoencoding(cfg).eval()
    _randomize(model)
    return model


def _mm_inputs(batch=1):
    return {
        "image": torch.randn(batch, FRAMES, 3, IMAGE, IMAGE),
        "audio": torch.randn(batch, FRAMES * SPF, 1),
        "label": torch.nn.functional.one_hot(torch.randint(0, LABELS, (batch,)), LABELS).float(),
    }


def _hf_chunked(hf, inputs, nchunks):
    """transformers' evaluation loop: every chunk of points re-runs the encoder."""
    n_img = FRAMES * IMAGE * IMAGE
    n_aud = FRAMES * SPF // SPP
    outs = {"image": [], "audio": [], "label": None}
    for i in range(nchunks):
        sub = {
            "image": torch.arange(n_img // nchunks * i, n_img // nchunks * (i + 1)),
            "audio": torch.arange(n_aud // nchunks * i, n_aud // nchunks * (i + 1)),
            "label": None,
        }
        logits = hf(inputs=inputs, subsampled_output_points=sub).logits
        outs["image"].append(logits["image"])
        outs["audio"].append(logits["audio"])
        outs["label"] = logits["label"]
    return torch.cat(outs["image"], 1), torch.cat(outs["audio"], 1), outs["label"]


def test_multimodal_checkpoint_options(tmp_path):
    hf = _hf_multimodal()
    cfg = json.loads((_save_hf(hf, tmp_path) / "config.json").read_text())
    assert cfg["architectures"] == ["PerceiverForMultimodalAutoencoding"]
    ours = perceiver_io.from_pretrained(tmp_path)
    assert isinstance(ours, MultimodalAutoencoder)
    c = ours.config
    assert (c.input_min_padding_size, c.query_min_padding_size) == (4, 2)
    assert c.mask_probs == {"image": 0.0, "audio": 0.0, "label": 1.0}
    assert c.full_query_positions == "index" and c.encoder.activation == "gelu"
    assert ours.input_adapter.num_channels == SPP + 385 + 4  # audio is the widest modality here
    assert ours.head.num_query_channels == 1024 + 2
    assert ours.num_parameters() == sum(p.numel() for p in hf.parameters())


def test_multimodal_subsampled_matches_transformers(tmp_path):
    hf = _hf_multimodal()
    ours = perceiver_io.from_pretrained(_save_hf(hf, tmp_path))
    inputs = _mm_inputs(batch=2)
    sub = {"image": torch.tensor([0, 3, 17, 64, 127]), "audio": torch.tensor([1, 4, 7]), "label": None}
    with torch.no_grad():
        expected = hf(inputs=inputs, subsampled_output_points=sub).logits
        got = ours(inputs, query_indices=sub)
    assert got.image.shape == expected["image"].shape == (2, 5, 3)
    assert got.audio.shape == expected["audio"].shape == (2, 3 * SPP)
    assert got.label.shape == expected["label"].shape == (2, LABELS)
    for name in ("image", "audio", "label"):
        assert (getattr(got, name) - expected[name]).abs().max() <= ATOL, name


@pytest.mark.parametrize("chunk_size", [None, 37])
def test_multimodal_full_decoding_matches_transformers_chunks(tmp_path, chunk_size):
    """Every point: transformers' chunk loop (encoder per chunk) == ours (encoder once, decode all)."""
    hf = _hf_multimodal(num_blocks=2, qk_channels=16, v_channels=32, self_attention_widening_factor=2)
    ours = perceiver_io.from_pretrained(_save_hf(hf, tmp_path))
    inputs = _mm_inputs()
    with torch.no_grad():
        image, audio, label = _hf_chunked(hf, inputs, nchunks=4)
        latents = ours.encode(inputs)
        got = ours.decode(latents, chunk_size=chunk_size)
    assert got.video.shape == (1, FRAMES, 3, IMAGE, IMAGE)
    ours_image = got.video.permute(0, 1, 3, 4, 2).reshape(1, -1, 3)  # (B, T·H·W, C), pixel order
    assert (ours_image - image).abs().max() <= ATOL
    assert (got.audio - audio).abs().max() <= ATOL
    assert (got.logits - label).abs().max() <= ATOL


def test_multimodal_parameter_count_matches_transformers():
    cfg = transformers.PerceiverConfig(
        num_latents=784,
        d_latents=512,
        d_model=704,
        num_blocks=1,
        num_self_attends_per_block=8,
        num_self_attention_heads=8,
        num_cross_attention_heads=1,
        num_labels=700,
        image_size=56,
        num_frames=16,
        audio_samples_per_frame=1920,
        samples_per_patch=16,
        output_shape=[1, 16, 224, 224],
    )
    with torch.device("meta"):
        hf = transformers.PerceiverForMultimodalAutoencoding(cfg)
        ours = perceiver_io.create_model("multimodal-perceiver")
    n = sum(p.numel() for p in hf.parameters())
    assert ours.num_parameters() == n == 19_858_855


# -- errors -----------------------------------------------------------------------------------


def test_missing_and_mismatched_keys_name_the_key(tmp_path):
    from perceiver_io.checkpoints.hf_flow_multimodal import convert_optical_flow

    hf = _hf_flow()
    hf_config = hf.config.to_dict()
    sd = dict(hf.state_dict())
    key = "perceiver.encoder.self_attends.1.mlp.dense2.weight"
    missing = {k: v for k, v in sd.items() if k != key}
    with pytest.raises(KeyError, match="self_attends.1.mlp.dense2.weight"):
        convert_optical_flow(hf_config, missing)
    bad = dict(sd)
    bad[key] = torch.zeros(3, 3)
    with pytest.raises(ValueError, match=r"self_attends\.1\.mlp\.dense2\.weight.*\(3, 3\)"):
        convert_optical_flow(hf_config, bad)
    extra = dict(sd)
    extra["perceiver.something_else"] = torch.zeros(1)
    with pytest.raises(ValueError, match="something_else"):
        convert_optical_flow(hf_config, extra)
    np.testing.assert_equal(len(sd), len(missing) + 1)
