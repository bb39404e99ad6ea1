"""Optical flow and multimodal autoencoder: adapters, shapes, chunked decoding, configs, presets."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import perceiver_io
from perceiver_io.adapters.audio import AudioHead, AudioInputAdapter
from perceiver_io.adapters.flow import flow_image_config
from perceiver_io.adapters.image import ImageInputAdapter
from perceiver_io.adapters.label import LabelInputAdapter
from perceiver_io.adapters.multimodal import MultimodalInputAdapter, split_modalities
from perceiver_io.adapters.video import VideoHead, video_image_config
from perceiver_io.config import ConfigError
from perceiver_io.layers.spatial import patches_for_flow, space_to_depth
from perceiver_io.models.flow import OpticalFlow, OpticalFlowConfig
from perceiver_io.models.multimodal import MultimodalAutoencoder, MultimodalAutoencoderConfig

TINY_ENCODER = {
    "num_latents": 8,
    "num_latent_channels": 32,
    "num_self_attends_per_block": 2,
    "num_self_attention_heads": 4,
}


def tiny_flow(**kw) -> OpticalFlow:
    cfg = OpticalFlowConfig().replace(image_size=(6, 8), encoder=TINY_ENCODER, **kw)
    return OpticalFlow(cfg).eval()


def tiny_multimodal(**kw) -> MultimodalAutoencoder:
    cfg = MultimodalAutoencoderConfig().replace(
        video_shape=(2, 8, 8),
        image_max_resolution=(2, 2, 2),
        num_audio_samples=64,
        samples_per_patch=4,
        audio_num_bands=8,
        image_num_bands=4,
        num_classes=5,
        label_query_channels=16,
        encoder=TINY_ENCODER,
        decoder={"num_query_channels": 29, "num_output_channels": 12},
        **kw,
    )
    model = MultimodalAutoencoder(cfg).eval()
    with torch.no_grad():  # the flow/video projections start at zero or tiny: make outputs informative
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model


def mm_inputs(batch: int = 2) -> dict[str, torch.Tensor]:
    return {
        "image": torch.randn(batch, 2, 3, 8, 8),
        "audio": torch.randn(batch, 64),
        "label": F.one_hot(torch.arange(batch) % 5, 5).float(),
    }


# -- adapters ---------------------------------------------------------------------------------------


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


# -- optical flow -----------------------------------------------------------------------------------


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


# -- multimodal -------------------------------------------------------------------------------------


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
