"""Task models built on the one path: masked LM, classifiers, original Perceiver, optical flow, multimodal;
their configs, presets and parameter counts."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import perceiver_io
from conftest import TINY_ENCODER, tiny_multimodal
from perceiver_io.adapters import (
    BytesTokenizer,
    ImageAdapterConfig,
    TextAdapterConfig,
)
from perceiver_io.config import ConfigError
from perceiver_io.decoder import DecoderConfig
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
from perceiver_io.models.flow import OpticalFlow, OpticalFlowConfig
from perceiver_io.models.multimodal import MultimodalAutoencoder, MultimodalAutoencoderConfig


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


def _byte_influence(model: MaskedLanguageModel, seq_len: int = 32) -> tuple[float, float]:
    """Mean change of the logits at output p when input byte q changes, for q = p (near) and q = p + L/2 (far)."""
    ids = torch.randint(10, 262, (1, seq_len), generator=torch.Generator().manual_seed(1))
    p = torch.arange(seq_len)
    with torch.no_grad():
        base = model(ids).logits[0]
        change = torch.zeros(seq_len, seq_len)  # (output p, input q)
        for q in range(seq_len):
            x = ids.clone()
            x[0, q] = (x[0, q] - 6 + 37) % 256 + 6
            change[:, q] = (model(x).logits[0] - base).norm(dim=-1)
    return float(change[p, p].mean()), float(change[p, (p + seq_len // 2) % seq_len].mean())


@pytest.mark.parametrize("local_init,num_channels", [(None, 32), (3.0, 32)])
def test_masked_lm_local_init_routes_each_position_to_its_own_output(local_init, num_channels, tmp_path):
    """``local_init`` starts both cross-attentions local: output p depends on input p several times more
    than on a far input. With the paper's random initialisation every input matters about equally."""
    torch.manual_seed(0)
    cfg = MaskedLanguageModelConfig(
        text=TextAdapterConfig(max_seq_len=32, num_channels=num_channels),
        encoder=TINY_ENCODER.replace(num_latents=32),
        decoder=DecoderConfig(num_heads=2),
        local_init=local_init,
    )
    model = MaskedLanguageModel(cfg).eval()
    near, far = _byte_influence(model)
    if local_init is None:
        assert 0.8 < near / far < 1.25
    else:
        assert near / far > 2.0
        attn = model.encoder.cross_attention.attention
        assert torch.equal(attn.q_proj.weight, 3.0 * torch.eye(*attn.q_proj.weight.shape))
        model.save_pretrained(tmp_path)
        loaded = MaskedLanguageModel.from_pretrained(tmp_path)
        assert loaded.config.local_init == 3.0
        state, loaded_state = model.state_dict(), loaded.state_dict()
        assert all(torch.equal(state[k], loaded_state[k]) for k in state)


def _influence(layer: torch.nn.Module, x_q: torch.Tensor, x_kv: torch.Tensor) -> torch.Tensor:
    """``(Q, K)``: how much a cross-attention layer's output row q changes when key row k is perturbed."""
    base = layer(x_q, x_kv)[0]
    out = torch.zeros(x_q.shape[1], x_kv.shape[1])
    gen = torch.Generator().manual_seed(0)
    for k in range(x_kv.shape[1]):
        x = x_kv.clone()
        x[:, k] += torch.randn(x.shape[-1], generator=gen) * x_kv.std()
        out[:, k] = (layer(x_q, x)[0] - base).norm(dim=-1)
    return out


@pytest.mark.parametrize("num_channels", [32, 16])
def test_masked_lm_local_init_latents_read_their_segment(num_channels):
    """With M/N = 8, ``local_init`` starts latent n reading its own segment of 8 bytes (not only the byte at
    its centre, not the whole sequence), and query p reading the latent that holds p (positions are
    measured in latent spacings); also with bytes narrower than the latents."""
    length, n = 64, 8
    torch.manual_seed(0)
    cfg = MaskedLanguageModelConfig(
        text=TextAdapterConfig(max_seq_len=length, num_channels=num_channels),
        encoder=TINY_ENCODER.replace(num_latents=n),
        decoder=DecoderConfig(num_heads=1),
        local_init=3.0,
    )
    model = MaskedLanguageModel(cfg).eval()
    seg = length // n
    with torch.no_grad():
        inputs = model.input_adapter(torch.randint(10, 262, (1, length))).inputs
        latents = model.encoder.latents(1)
        encoder = _influence(model.encoder.cross_attention, latents, inputs)  # (N, L)
        decoder = _influence(model.decoder.cross_attention, model.head.query_builder(1, inputs), latents)  # (L, N)
    centre = (torch.arange(n) + 0.5) * seg
    assert ((encoder.argmax(1) - centre).abs() <= seg).all()  # each latent's strongest input is near its segment
    spread = (encoder / encoder.sum(1, keepdim=True) * (torch.arange(length)[None] - centre[:, None]).abs()).sum(1)
    assert 1.0 < spread.mean() < seg  # the segment (uniform over it: 2), not one byte (0.5), not all 64 bytes (16)
    assert ((decoder.argmax(1) - torch.arange(length) // seg).abs() <= 1).all()


def test_masked_lm_local_init_validation():
    with pytest.raises(ConfigError, match="local_init must be None or a positive"):
        MaskedLanguageModelConfig(local_init=0.0)
    with pytest.raises(ConfigError, match="local_init must be None or a positive scale, got -1"):
        MaskedLanguageModelConfig(local_init=-1)


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


def tiny_flow(**kw) -> OpticalFlow:
    cfg = OpticalFlowConfig().replace(image_size=(6, 8), encoder=TINY_ENCODER, **kw)
    return OpticalFlow(cfg).eval()


def mm_inputs(batch: int = 2) -> dict[str, torch.Tensor]:
    return {
        "image": torch.randn(batch, 2, 3, 8, 8),
        "audio": torch.randn(batch, 64),
        "label": F.one_hot(torch.arange(batch) % 5, 5).float(),
    }


def test_flow_shapes_chunked_and_subsampled():
    model = tiny_flow()
    with torch.no_grad():
        model.decoder.projection.weight.normal_()
    frames = torch.randn(2, 2, 3, 6, 8)
    with torch.no_grad():
        out = model(frames)
        chunked = model(frames, chunk_size=5)
        idx = torch.tensor([0, 9, 47])
        sub = model(frames, query_indices=idx)
    assert out.flow.shape == (2, 6, 8, 2) and out.latents.shape == (2, 8, 32)
    torch.testing.assert_close(chunked.flow, out.flow, atol=1e-5, rtol=1e-5)
    assert sub.flow.shape == (2, 3, 2)
    torch.testing.assert_close(sub.flow, out.flow.reshape(2, -1, 2)[:, idx], atol=1e-5, rtol=1e-5)
    # another image size runs too (positions over its own grid, max_resolution from training)
    assert model(torch.randn(1, 2, 3, 4, 10)).flow.shape == (1, 4, 10, 2)


def test_flow_output_starts_at_zero_and_backprops():
    model = tiny_flow().train()
    out = model(torch.randn(1, 2, 3, 6, 8))
    assert torch.all(out.flow == 0)  # zero-initialised output projection, as the official FlowDecoder
    out.flow.sum().backward()
    assert model.decoder.projection.weight.grad is not None


def test_flow_config_validation_and_json():
    cfg = OpticalFlowConfig()
    assert OpticalFlowConfig.from_json(cfg.to_json()) == cfg
    assert OpticalFlow(OpticalFlowConfig().replace(image_size=(6, 8), num_patch_channels=32, encoder=TINY_ENCODER))
    with pytest.raises(ConfigError, match="decoder.num_query_channels"):
        OpticalFlowConfig().replace(decoder={"num_query_channels": 300})
    with pytest.raises(ConfigError, match="image_size"):
        OpticalFlowConfig().replace(image_size=(368,))
    with pytest.raises(ConfigError, match="rescale_factor"):
        OpticalFlowConfig().replace(rescale_factor=0)


def test_flow_preset():
    assert "optical-flow-perceiver" in perceiver_io.list_models()
    with torch.device("meta"):
        model = perceiver_io.create_model("optical-flow-perceiver")
    assert isinstance(model, OpticalFlow)
    assert model.config.encoder.num_latents == 2048 and len(model.encoder.self_attention) == 24
    assert model.num_parameters() == 41_057_134  # = transformers PerceiverForOpticalFlow (paper: ~27.9M)


def test_flow_save_load_roundtrip(tmp_path):
    model = tiny_flow()
    model.save_pretrained(tmp_path)
    loaded = perceiver_io.from_pretrained(tmp_path)
    frames = torch.randn(1, 2, 3, 6, 8)
    with torch.no_grad():
        torch.testing.assert_close(loaded(frames).flow, model(frames).flow)


def test_multimodal_shapes():
    model = tiny_multimodal()
    with torch.no_grad():
        out = model(mm_inputs())
    assert out.video.shape == out.image.shape == (2, 2, 3, 8, 8)
    assert out.audio.shape == (2, 64)
    assert out.logits.shape == out.label.shape == (2, 5)
    assert out.latents.shape == (2, 8, 32)
    assert model.input_adapter.num_channels == max(4 + 17, 48 + 27, 5) + 4


@pytest.mark.parametrize("positions", ["grid", "index"])
@pytest.mark.parametrize("chunk_size", [1, 7, 100, 1000])
def test_multimodal_chunked_decoding_equals_unchunked(positions, chunk_size):
    model = tiny_multimodal(full_query_positions=positions)
    with torch.no_grad():
        latents = model.encode(mm_inputs())
        full = model.decode(latents)
        chunked = model.decode(latents, chunk_size=chunk_size)
    for name in ("image", "audio", "label"):
        torch.testing.assert_close(getattr(chunked, name), getattr(full, name), atol=1e-5, rtol=1e-5)


def test_multimodal_encodes_once_when_chunked():
    model = tiny_multimodal()
    calls = []
    model.encoder.register_forward_hook(lambda *a: calls.append(1))
    with torch.no_grad():
        model(mm_inputs(), chunk_size=16)
    assert len(calls) == 1


def test_multimodal_subsampled_points_match_full_decoding_with_index_positions():
    model = tiny_multimodal(full_query_positions="index")
    idx = {"image": torch.tensor([0, 5, 77, 127]), "audio": torch.tensor([3, 15])}
    with torch.no_grad():
        latents = model.encode(mm_inputs())
        full = model.decode(latents)
        sub = model.decode(latents, query_indices=idx)
    assert sub.image.shape == (2, 4, 3) and sub.audio.shape == (2, 2 * 4)
    pixels = full.image.permute(0, 1, 3, 4, 2).reshape(2, -1, 3)
    torch.testing.assert_close(sub.image, pixels[:, idx["image"]], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(sub.audio, full.audio.reshape(2, 16, 4)[:, idx["audio"]].reshape(2, -1))
    torch.testing.assert_close(sub.label, full.label, atol=1e-5, rtol=1e-5)


def test_multimodal_label_mask_probability():
    model = tiny_multimodal()  # label always masked (released config): the label input is ignored
    a, b = mm_inputs(), mm_inputs()
    b["label"] = torch.zeros_like(b["label"])
    b["image"], b["audio"] = a["image"], a["audio"]
    with torch.no_grad():
        torch.testing.assert_close(model.encode(a), model.encode(b))
        assert not torch.allclose(
            model.encode(a, mask_probs={"label": 0.0}), model.encode(b, mask_probs={"label": 0.0})
        )


def test_multimodal_training_step():
    model = tiny_multimodal(mask_probs={"label": 0.5}).train()
    inputs = mm_inputs()
    idx = {"image": torch.randperm(128)[:16], "audio": torch.randperm(16)[:4]}
    out = model(inputs, query_indices=idx)
    loss = out.image.abs().mean() + out.audio.abs().mean() + F.cross_entropy(out.logits, inputs["label"].argmax(-1))
    loss.backward()
    assert model.head.padding["image"].grad is not None


def test_multimodal_config_validation_and_json(tmp_path):
    cfg = MultimodalAutoencoderConfig()
    assert MultimodalAutoencoderConfig.from_json(cfg.to_json()) == cfg
    with pytest.raises(ConfigError, match="decoder.num_query_channels"):
        MultimodalAutoencoderConfig().replace(decoder={"num_query_channels": 1000})
    with pytest.raises(ConfigError, match="mask_probs"):
        MultimodalAutoencoderConfig().replace(mask_probs={"video": 0.5})
    with pytest.raises(ConfigError, match="full_query_positions"):
        MultimodalAutoencoderConfig().replace(full_query_positions="linspace")
    with pytest.raises(ConfigError, match="video_shape"):
        MultimodalAutoencoderConfig().replace(video_shape=(16, 222, 224))
    model = tiny_multimodal()
    model.save_pretrained(tmp_path)
    loaded = perceiver_io.from_pretrained(tmp_path)
    inputs = mm_inputs()
    with torch.no_grad():
        torch.testing.assert_close(loaded(inputs).audio, model(inputs).audio)


def test_multimodal_preset():
    assert "multimodal-perceiver" in perceiver_io.list_models()
    with torch.device("meta"):
        model = perceiver_io.create_model("multimodal-perceiver")
    assert isinstance(model, MultimodalAutoencoder)
    assert model.input_adapter.num_channels == 704 and model.head.num_query_channels == 1026
    assert model.decoder.config.num_query_channels == 1026
    assert model.head.sizes() == {"audio": 1920, "image": 16 * 224 * 224, "label": 1}
    assert model.num_parameters() == 19_858_855  # = transformers PerceiverForMultimodalAutoencoding (paper: 20.0M)
