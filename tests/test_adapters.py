"""Adapters (input side and modality heads): bytes tokenizer, text, images/video/flow, audio, label, multimodal."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from perceiver_io.adapters import (
    BytesTokenizer,
    ImageAdapterConfig,
    ImageInputAdapter,
    TextAdapterConfig,
    TextInputAdapter,
)
from perceiver_io.adapters.audio import AudioHead, AudioInputAdapter
from perceiver_io.adapters.flow import flow_image_config
from perceiver_io.adapters.image import ConvDownsample
from perceiver_io.adapters.label import LabelInputAdapter
from perceiver_io.adapters.multimodal import MultimodalInputAdapter, split_modalities
from perceiver_io.adapters.video import VideoHead, video_image_config
from perceiver_io.config import ConfigError
from perceiver_io.layers.spatial import patches_for_flow, same_padding, space_to_depth


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_tokenizer_round_trips_any_text(text):
    tok = BytesTokenizer()
    ids = tok.encode(text)
    assert all(6 <= i < 262 for i in ids) or "[MASK]" in text
    assert tok.decode(ids) == text
    assert tok.decode(tok.encode(text, add_special_tokens=True)) == "[CLS]" + text + "[SEP]"
    assert tok.decode(tok.encode(text, parse_mask=False)) == text


def test_tokenizer_ids_and_specials():
    tok = BytesTokenizer()
    assert (tok.pad_id, tok.bos_id, tok.eos_id, tok.mask_id, tok.cls_id, tok.sep_id) == (0, 1, 2, 3, 4, 5)
    assert tok.vocab_size == 262
    assert tok.encode("a") == [ord("a") + 6]
    assert tok.encode("é") == [0xC3 + 6, 0xA9 + 6]
    assert tok.encode("a[MASK][MASK]b") == [ord("a") + 6, 3, 3, ord("b") + 6]
    assert tok.encode("[MASK]", parse_mask=False) == [b + 6 for b in b"[MASK]"]
    assert tok.decode([4, ord("x") + 6, 3, 5, 0], skip_special_tokens=True) == "x"
    assert tok.mask_span("hello world", 5, 11) == "hello" + "[MASK]" * 6
    with pytest.raises(ValueError, match="token id"):
        tok.decode([262])


def test_tokenizer_batch():
    tok = BytesTokenizer()
    ids, mask = tok(["ab", "abcd"])
    assert ids.shape == mask.shape == (2, 6) and ids.dtype == torch.long and mask.dtype == torch.bool
    assert ids[0].tolist() == [4, 97 + 6, 98 + 6, 5, 0, 0]
    assert mask.sum(1).tolist() == [4, 6]
    ids, mask = tok("abcdef", max_length=4)
    assert ids.shape == (1, 4)
    ids, _ = tok("a", max_length=8, pad_to_max_length=True)
    assert ids.shape == (1, 8)


def test_text_adapter_shapes_and_errors():
    adapter = TextInputAdapter(TextAdapterConfig(max_seq_len=16, num_channels=8))
    x = adapter(torch.randint(0, 262, (3, 10)))
    assert x.inputs.shape == (3, 10, 8) and x.index_shape == (10,)
    expected = adapter.token_embedding.weight[5] + adapter.position_embedding.embeddings[2]
    assert torch.allclose(adapter(torch.full((1, 3), 5)).inputs[0, 2], expected)
    with pytest.raises(ValueError, match="max_seq_len"):
        adapter(torch.zeros(1, 17, dtype=torch.long))
    with pytest.raises(ValueError, match=r"input_ids must be in \[0, 262\)"):
        adapter(torch.full((1, 4), 262))
    with pytest.raises(TypeError, match="integer"):
        adapter(torch.zeros(1, 4))
    with pytest.raises(ValueError, match="input_ids"):
        adapter(torch.zeros(4, dtype=torch.long))


@pytest.mark.parametrize(
    "kwargs, images_shape, expected",
    [
        (dict(prep_type="pixels"), (2, 3, 12, 10), (2, 120, 3 + 2 + 2 * 2 * 64)),
        (dict(prep_type="pixels", spatial_downsample=2, num_bands=4), (2, 3, 12, 10), (2, 30, 3 + 2 + 16)),
        (dict(prep_type="conv1x1", out_channels=16, num_bands=4), (2, 3, 12, 10), (2, 120, 16 + 2 + 16)),
        (dict(prep_type="conv", spatial_downsample=4, out_channels=8, num_bands=4), (2, 3, 16, 16), (2, 16, 26)),
        (dict(prep_type="conv", spatial_downsample=16, out_channels=8, num_bands=4), (2, 3, 32, 32), (2, 4, 26)),
        (dict(prep_type="patches", spatial_downsample=2, num_bands=4), (2, 3, 12, 10), (2, 30, 12 + 2 + 16)),
        (
            dict(prep_type="patches", spatial_downsample=2, num_bands=4, conv_after_patching=True, out_channels=5),
            (2, 3, 12, 10),
            (2, 30, 5 + 18),
        ),
        (
            dict(prep_type="patches", spatial_downsample=2, temporal_downsample=2, num_frames=4, num_bands=4),
            (2, 4, 3, 12, 10),
            (2, 2 * 6 * 5, 24 + 3 + 24),
        ),
        (  # temporal patches of size T: the single frame axis is squeezed (optical flow)
            dict(prep_type="patches", spatial_downsample=1, temporal_downsample=2, num_frames=2, num_bands=4),
            (2, 2, 3, 12, 10),
            (2, 120, 6 + 18),
        ),
        (
            dict(prep_type="pixels", position_encoding="trainable", num_position_channels=7),
            (2, 3, 12, 10),
            (2, 120, 10),
        ),
        (
            dict(prep_type="conv1x1", out_channels=6, position_encoding="trainable", project_pos_dim=6),
            (2, 3, 12, 10),
            (2, 120, 12),
        ),
        (
            dict(prep_type="conv1x1", out_channels=6, num_bands=4, project_pos_dim=6, concat_or_add_pos="add"),
            (2, 3, 12, 10),
            (2, 120, 6),
        ),
    ],
)
def test_image_adapter_shapes(kwargs, images_shape, expected):
    video = len(images_shape) == 5
    config = ImageAdapterConfig(image_shape=images_shape[-2:], **kwargs)
    adapter = ImageInputAdapter(config)
    images = torch.randn(images_shape)
    adapted = adapter(images)
    out, feats = adapted.inputs, adapter.features(images)
    assert adapted.index_shape == tuple(feats.shape[1:-1]) == config.index_dims()
    feats = feats.reshape(feats.shape[0], -1, feats.shape[-1])
    assert out.shape == expected
    assert adapter.num_channels == expected[-1] == config.num_channels()
    assert feats.shape[:2] == expected[:2] and feats.shape[-1] == config.feature_channels()
    assert expected[1] == torch.Size(config.index_dims()).numel()
    assert ImageAdapterConfig.from_json(config.to_json()) == config
    assert (config.num_frames is not None) == video


def test_image_adapter_pixels_row_major_and_fourier_features():
    config = ImageAdapterConfig(image_shape=(4, 5), prep_type="pixels", num_bands=3, max_resolution=(224, 224))
    images = torch.randn(1, 3, 4, 5)
    out = ImageInputAdapter(config)(images).inputs
    assert torch.equal(out[0, :, :3], images[0].permute(1, 2, 0).reshape(20, 3))
    pos = out[0, :, 3:5]  # (y, x) in [-1, 1], row-major
    assert torch.allclose(pos[0], torch.tensor([-1.0, -1.0])) and torch.allclose(pos[-1], torch.tensor([1.0, 1.0]))
    assert torch.allclose(pos[1], torch.tensor([-1.0, -0.5]))


def test_space_to_depth_channel_order():
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)
    y = space_to_depth(x, spatial_block_size=2)
    assert y.shape == (2, 2, 2, 12)
    # block (0, 0) of image 0: channels last within (dh, dw, c)
    expected = torch.stack([x[0, c, dh, dw] for dh in range(2) for dw in range(2) for c in range(3)])
    assert torch.equal(y[0, 0, 0], expected)


@pytest.mark.parametrize("size", [32, 33, 56, 57, 224])
def test_conv_downsample_sizes_match_config(size):
    for conv_padding, pool_padding in (("same", "same"), ("symmetric", "valid"), ("same", "valid")):
        layer = ConvDownsample(3, 4, conv_padding=conv_padding, pool_padding=pool_padding)
        out = layer(torch.randn(1, 3, size, size))
        config = ImageAdapterConfig(
            image_shape=(size, size), prep_type="conv", spatial_downsample=4, pool_padding=pool_padding
        )
        assert tuple(out.shape[-2:]) == config.index_dims()
    assert ImageAdapterConfig(prep_type="conv", spatial_downsample=4).index_dims() == (56, 56)
    assert ImageAdapterConfig(prep_type="conv", spatial_downsample=4, pool_padding="valid").index_dims() == (55, 55)
    assert same_padding(224, 7, 2) == (2, 3) and same_padding(112, 3, 2) == (0, 1)


def test_image_adapter_errors():
    adapter = ImageInputAdapter(ImageAdapterConfig(image_shape=(8, 8), num_bands=2))
    with pytest.raises(ValueError, match=r"images must have shape \(B, 3, H, W\)"):
        adapter(torch.randn(1, 8, 8, 3))
    with pytest.raises(ValueError, match="images"):
        adapter(torch.randn(3, 8, 8))
    with pytest.raises(TypeError, match="floating point"):
        adapter(torch.zeros(1, 3, 8, 8, dtype=torch.uint8))
    learned = ImageInputAdapter(ImageAdapterConfig(image_shape=(8, 8), position_encoding="trainable"))
    with pytest.raises(ValueError, match=r"learned positions cover a \(8, 8\) grid"):
        learned(torch.randn(1, 3, 9, 8))
    with pytest.raises(ConfigError, match="prep_type"):
        ImageAdapterConfig(prep_type="sparkles")
    with pytest.raises(ConfigError, match="power of 4"):
        ImageAdapterConfig(prep_type="conv", spatial_downsample=2)
    with pytest.raises(ConfigError, match="add"):
        ImageAdapterConfig(concat_or_add_pos="add")
    with pytest.raises(ConfigError, match="divisible"):
        ImageAdapterConfig(image_shape=(9, 8), prep_type="patches", spatial_downsample=2)


def test_patches_for_flow_order_and_zero_padding():
    frames = torch.randn(2, 2, 3, 5, 6)
    p = patches_for_flow(frames)
    assert p.shape == (2, 2, 27, 5, 6)
    padded = F.pad(frames, (1, 1, 1, 1))
    for kh in range(3):
        for kw in range(3):
            for c in range(3):
                torch.testing.assert_close(p[:, :, (kh * 3 + kw) * 3 + c], padded[:, :, c, kh : kh + 5, kw : kw + 6])
    assert torch.all(p[:, :, 0, 0, :] == 0)  # top-left neighbour of the first row is padding


def test_space_to_depth_layout():
    x = torch.arange(2 * 4 * 3 * 4 * 6, dtype=torch.float32).reshape(2, 4, 3, 4, 6)
    y = space_to_depth(x, temporal_block_size=2, spatial_block_size=2)
    assert y.shape == (2, 2, 2, 3, 2 * 2 * 2 * 3)
    # block (t=1, h=0, w=2): value (dt=1, dh=1, dw=0, c=2)
    assert y[0, 1, 0, 2, ((1 * 2 + 1) * 2 + 0) * 3 + 2] == x[0, 3, 2, 1, 4]
    with pytest.raises(ValueError, match="divisible"):
        space_to_depth(torch.zeros(1, 3, 3, 5, 5), 2, 2)


def test_flow_input_adapter_width_and_errors():
    adapter = ImageInputAdapter(flow_image_config((6, 8)))
    assert adapter.num_channels == 322
    frames = torch.randn(1, 2, 3, 6, 8)
    out = adapter(frames)
    assert out.inputs.shape == (1, 48, 322) and out.index_shape == (6, 8)
    torch.testing.assert_close(adapter(patches_for_flow(frames)).inputs, out.inputs)  # patches accepted as input
    with pytest.raises(ValueError, match=r"images must have shape \(B, 2, 3 or 27, H, W\)"):
        adapter(torch.randn(1, 3, 3, 6, 8))


def test_audio_video_label_adapters():
    audio = AudioInputAdapter(64, 4, 8)
    assert audio.num_channels == 4 + 17
    for a in (torch.randn(2, 64), torch.randn(2, 1, 64), torch.randn(2, 64, 1)):
        assert audio(a).inputs.shape == (2, 16, 21)
    with pytest.raises(ValueError, match="divisible by samples_per_patch"):
        audio(torch.randn(2, 63))
    with pytest.raises(ValueError, match="must have 64 samples"):
        audio(torch.randn(2, 68))
    head = AudioHead(16, 8, (64,), 12, 4)
    assert head.arrange(head.projection(torch.randn(2, 16, 12))).shape == (2, 64)
    video = ImageInputAdapter(video_image_config((2, 8, 8), 3, 4, 1, 4))
    assert video(torch.randn(2, 2, 3, 8, 8)).inputs.shape == (2, 2 * 2 * 2, 48 + 27)
    with pytest.raises(ValueError, match=r"images must have shape \(B, 2, 3, H, W\)"):
        video(torch.randn(2, 3, 3, 8, 8))  # wrong number of frames
    out = VideoHead((2, 8, 8), 4, (2, 8, 8), 12)
    assert out.arrange(out.projection(torch.randn(2, 128, 12))).shape == (2, 2, 3, 8, 8)
    assert out.arrange(torch.randn(2, 5, 3), subsampled=True).shape == (2, 5, 3)
    label = LabelInputAdapter(5)
    torch.testing.assert_close(label(torch.tensor([1, 3])).inputs, F.one_hot(torch.tensor([1, 3]), 5).float()[:, None])
    with pytest.raises(ValueError, match=r"\(B, 5\)"):
        label(torch.zeros(2, 4))


def test_multimodal_input_adapter_padding_order_and_masking():
    adapters = {"label": LabelInputAdapter(5), "audio": AudioInputAdapter(64, 4, 8)}
    mm = MultimodalInputAdapter(adapters, min_padding_size=3, mask_probs={"label": 0.0})
    assert mm.modalities == ["audio", "label"] and mm.num_channels == 21 + 3
    inputs = {"audio": torch.randn(2, 64), "label": F.one_hot(torch.tensor([0, 4]), 5).float()}
    adapted = mm(inputs)
    x, sizes = adapted.inputs, adapted.sizes
    assert x.shape == (2, 17, 24) and sizes == {"audio": 16, "label": 1}
    parts = split_modalities(x, sizes)
    torch.testing.assert_close(parts["label"][:, :, :5], inputs["label"][:, None])
    torch.testing.assert_close(parts["label"][0, 0, 5:], mm.padding["label"][0])
    masked = mm(inputs, mask_probs={"label": 1.0}).inputs
    torch.testing.assert_close(split_modalities(masked, sizes)["label"][:, 0], mm.mask["label"].expand(2, -1))
    torch.testing.assert_close(split_modalities(masked, sizes)["audio"], parts["audio"])
    with pytest.raises(ValueError, match=r"missing \['label'\]"):
        mm({"audio": inputs["audio"]})
    with pytest.raises(ValueError, match="no mask token"):
        mm(inputs, mask_probs={"audio": 0.5})
