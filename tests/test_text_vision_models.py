"""Bytes tokenizer, text/image adapters, the masked LM, classifiers and the original Perceiver."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import perceiver_io
from perceiver_io.adapters import (
    BytesTokenizer,
    ImageAdapterConfig,
    ImageInputAdapter,
    TextAdapterConfig,
    TextInputAdapter,
)
from perceiver_io.adapters.image import ConvDownsample
from perceiver_io.config import ConfigError
from perceiver_io.decoder import DecoderConfig
from perceiver_io.encoder import EncoderConfig
from perceiver_io.layers.spatial import same_padding, space_to_depth
from perceiver_io.models import (
    ImageClassifier,
    ImageClassifierConfig,
    MaskedLanguageModel,
    MaskedLanguageModelConfig,
    Perceiver,
    PerceiverConfig,
    TextClassifier,
    TextClassifierConfig,
)

TINY_ENCODER = EncoderConfig(
    num_latents=8,
    num_latent_channels=32,
    num_blocks=2,
    num_self_attends_per_block=2,
    num_cross_attention_heads=1,
    num_self_attention_heads=4,
)

# --------------------------------------------------------------------------------------------
# tokenizer


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


# --------------------------------------------------------------------------------------------
# adapters


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


# --------------------------------------------------------------------------------------------
# models


def _tiny_mlm() -> MaskedLanguageModel:
    torch.manual_seed(0)
    return MaskedLanguageModel(
        MaskedLanguageModelConfig(
            text=TextAdapterConfig(max_seq_len=32, num_channels=16),
            encoder=TINY_ENCODER.replace(
                num_cross_attention_heads=2, cross_attention_qk_channels=8, self_attention_qk_channels=8
            ),
            decoder=DecoderConfig(num_query_channels=16, num_heads=8, num_qk_channels=16, num_v_channels=16),
        )
    ).eval()


def test_masked_lm_shapes_stages_and_chunks():
    model = _tiny_mlm()
    ids = torch.randint(0, 262, (2, 20))
    mask = torch.ones(2, 20, dtype=torch.bool)
    mask[1, 15:] = False
    with torch.no_grad():
        out = model(ids, mask)
        assert out.logits.shape == (2, 20, 262) and out.latents.shape == (2, 8, 32)
        latents = model.encode(ids, mask)
        adapted = model.adapt(ids)
        assert torch.allclose(model.decode(latents, inputs=adapted).logits, out.logits, atol=1e-6)
        assert torch.allclose(model.decode(latents, inputs=adapted, chunk_size=7).logits, out.logits, atol=1e-5)
        assert model.decode(latents).logits.shape == (2, 32, 262)  # without inputs: every position
        idx = torch.tensor([3, 17])
        assert torch.allclose(model.decode(latents, query_indices=idx).logits, out.logits[:, idx], atol=1e-5)
    # tied decoder: logits = hidden · Eᵀ + b
    assert model.head.bias.shape == (262,)
    assert sum(p is model.input_adapter.token_embedding.weight for p in model.parameters()) == 1
    with pytest.raises(ValueError, match="input_mask"):
        model(ids, torch.ones(2, 19, dtype=torch.bool))
    filled = model.fill_mask("ab[MASK]d")
    assert len(filled.encode("utf-8", errors="replace")) >= 1 and filled.startswith("ab") and filled.endswith("d")


def test_masked_lm_config_validation():
    with pytest.raises(ConfigError, match="num_query_channels"):
        MaskedLanguageModelConfig(
            text=TextAdapterConfig(num_channels=64), decoder=DecoderConfig(num_query_channels=768)
        )
    assert MaskedLanguageModelConfig(text=TextAdapterConfig(num_channels=64))  # the query width is derived
    with pytest.raises(ConfigError, match="num_output_channels"):
        MaskedLanguageModelConfig(decoder=DecoderConfig(num_query_channels=768, num_output_channels=10))


def test_image_classifier_and_save_load(tmp_path):
    torch.manual_seed(0)
    config = ImageClassifierConfig(
        image=ImageAdapterConfig(image_shape=(16, 16), prep_type="conv", spatial_downsample=4, num_bands=4),
        encoder=TINY_ENCODER,
        decoder=DecoderConfig(num_query_channels=32),
        num_classes=7,
    )
    assert ImageClassifierConfig.from_json(config.to_json()) == config
    model = ImageClassifier(config).eval()
    images = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        out = model(images)
    assert out.logits.shape == (3, 7) and out.latents.shape == (3, 8, 32)
    model.save_pretrained(tmp_path)
    loaded = perceiver_io.from_pretrained(tmp_path)
    assert isinstance(loaded, ImageClassifier) and loaded.config == config
    with torch.no_grad():
        assert torch.equal(loaded(images).logits, out.logits)
    with pytest.raises(ConfigError, match="num_classes"):
        config.replace(decoder={"num_output_channels": 3})


def test_text_classifier():
    model = TextClassifier(
        TextClassifierConfig(
            text=TextAdapterConfig(max_seq_len=16, num_channels=12),
            encoder=TINY_ENCODER,
            decoder=DecoderConfig(num_query_channels=32),
            num_classes=3,
        )
    ).eval()
    ids, mask = BytesTokenizer()(["hi", "hello"])
    with torch.no_grad():
        assert model(ids, mask).logits.shape == (2, 3)


def test_original_perceiver():
    config = PerceiverConfig(
        image=ImageAdapterConfig(image_shape=(8, 8), num_bands=4),
        encoder=TINY_ENCODER.replace(cross_attend_every_block=True),
        num_classes=5,
    )
    assert PerceiverConfig.from_json(config.to_json()) == config
    model = Perceiver(config).eval()
    assert model.encoder.cross_attention_shared is not None
    with torch.no_grad():
        out = model(torch.randn(2, 3, 8, 8))
    assert out.logits.shape == (2, 5)
    assert torch.count_nonzero(out.logits) == 0  # zero-initialised head
    raw = Perceiver(PerceiverConfig(image=None, num_input_channels=6, encoder=TINY_ENCODER, num_classes=2))
    assert raw(torch.randn(2, 10, 6)).logits.shape == (2, 2)
    with pytest.raises(ConfigError, match="num_input_channels"):
        PerceiverConfig(image=None)


# --------------------------------------------------------------------------------------------
# presets and parameter counts

# (preset, transformers class, transformers config, paper's count in millions (PIO Table 1 / Table 7))
PUBLISHED = {
    "language-perceiver": ("PerceiverForMaskedLM", dict(qk_channels=256, v_channels=1280), 201.0),
    "vision-perceiver-fourier": ("PerceiverForImageClassificationFourier", dict(d_model=261), 48.4),
    "vision-perceiver-learned": ("PerceiverForImageClassificationLearned", dict(d_model=512), 62.3),
    "vision-perceiver-conv": ("PerceiverForImageClassificationConvProcessing", dict(d_model=322), 48.6),
}
IMAGENET_HF = dict(
    num_latents=512,
    d_latents=1024,
    num_blocks=8,
    num_self_attends_per_block=6,
    num_cross_attention_heads=1,
    num_self_attention_heads=8,
    num_labels=1000,
    image_size=224,
)
# exact counts of the transformers models with the published configs
EXPECTED_COUNTS = {
    "language-perceiver": 201_108_230,
    "vision-perceiver-fourier": 48_440_627,
    "vision-perceiver-learned": 62_255_848,
    "vision-perceiver-conv": 48_646_522,
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_preset_parameter_counts(name):
    assert name in perceiver_io.list_models()
    config = perceiver_io.get_config(name)
    assert type(config).from_json(config.to_json()) == config
    with torch.device("meta"):
        model = perceiver_io.create_model(name)
    count = model.num_parameters()
    assert count == EXPECTED_COUNTS[name]
    paper = PUBLISHED[name][2]
    assert abs(count / 1e6 - paper) / paper < 0.005  # the paper rounds to 0.1M (language: 201M)


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_preset_parameter_counts_equal_transformers(name):
    transformers = pytest.importorskip("transformers")
    cls_name, extra, _ = PUBLISHED[name]
    hf_config = transformers.PerceiverConfig(**({} if name == "language-perceiver" else IMAGENET_HF), **extra)
    with torch.device("meta"):
        hf = getattr(transformers, cls_name)(hf_config)
    assert hf.num_parameters() == EXPECTED_COUNTS[name]


def test_create_model_overrides():
    model = perceiver_io.create_model(
        "vision-perceiver-fourier",
        image={"image_shape": (8, 8), "num_bands": 4},
        encoder={"num_latents": 4, "num_latent_channels": 16, "num_blocks": 1, "num_self_attends_per_block": 1},
        decoder={"num_query_channels": 16},
        num_classes=3,
    )
    assert model(torch.randn(1, 3, 8, 8)).logits.shape == (1, 3)
