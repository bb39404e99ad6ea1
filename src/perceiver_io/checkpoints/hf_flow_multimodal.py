"""Import ``transformers`` ``PerceiverForOpticalFlow`` and ``PerceiverForMultimodalAutoencoding`` checkpoints.

``convert_optical_flow(hf_config, state_dict)`` and ``convert_multimodal(hf_config, state_dict)``
build our model from the checkpoint's ``config.json`` (a dict) and load the renamed weights
strictly: a missing key, an unused key or a shape mismatch raises an error naming the key.

Options set to reproduce ``transformers``: exact (erf) GELU for ``hidden_act="gelu"``, its
attention-dropout probability, the multimodal padding sizes (inputs 4, queries 2), its mask
probabilities (``label: 1.0``), and Fourier query positions ``-1 + 2i/n`` for full decoding
(``full_query_positions="index"``: ``transformers`` only decodes through subsampled points).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from perceiver_io.checkpoints.transformers import (
    encoder_config,
    hf_activation,
    hf_attention_dropout,
    hf_get,
    load_mapped_state_dict,
    perceiver_key,
)
from perceiver_io.decoder import DecoderConfig
from perceiver_io.models.flow import OpticalFlow, OpticalFlowConfig
from perceiver_io.models.multimodal import MultimodalAutoencoder, MultimodalAutoencoderConfig

__all__ = ["convert_optical_flow", "convert_multimodal"]

_DECODER = "perceiver.decoder.decoder"  # transformers' decoder prefix of both models


def convert_optical_flow(hf: dict[str, Any], state_dict: dict[str, Tensor]) -> OpticalFlow:
    """A ``PerceiverForOpticalFlow`` checkpoint -> :class:`OpticalFlow` with its weights."""
    proj = state_dict.get("perceiver.input_preprocessor.conv_after_patches.weight")
    if proj is None:
        raise KeyError("checkpoint is missing key 'perceiver.input_preprocessor.conv_after_patches.weight'")
    num_patch_channels = int(proj.shape[0])
    train_size = tuple(int(v) for v in hf.get("train_size", (368, 496)))
    config = OpticalFlowConfig(
        image_size=train_size,  # type: ignore[arg-type]
        num_patch_channels=num_patch_channels,
        num_frequency_bands=64,
        rescale_factor=100.0,
        encoder=encoder_config(hf),
        decoder=DecoderConfig(
            num_query_channels=num_patch_channels + 2 * (2 * 64 + 1),
            num_output_channels=2,
            num_heads=1,
            shape_for_attention=hf_get(hf, "cross_attention_shape_for_attention"),
            use_query_residual=False,
            activation=hf_activation(hf),  # type: ignore[arg-type]
            attention_dropout=hf_attention_dropout(hf),
            output_init="zeros",
        ),
    )
    model = OpticalFlow(config)
    extra = {
        f"input_adapter.patch_projection.{p}": f"perceiver.input_preprocessor.conv_after_patches.{p}"
        for p in ("weight", "bias")
    }
    load_mapped_state_dict(model, state_dict, lambda k: perceiver_key(k, extra, _DECODER))
    return model.eval()


def _num_labels(hf: dict[str, Any], state_dict: dict[str, Tensor]) -> int:
    w = state_dict.get("perceiver.output_postprocessor.modalities.label.classifier.weight")
    if w is not None:
        return int(w.shape[0])
    return int(hf.get("num_labels") or len(hf.get("id2label") or {}) or 2)


def convert_multimodal(hf: dict[str, Any], state_dict: dict[str, Tensor]) -> MultimodalAutoencoder:
    """A ``PerceiverForMultimodalAutoencoding`` checkpoint -> :class:`MultimodalAutoencoder` with its weights."""
    num_frames = int(hf.get("num_frames", 16))
    image_size = int(hf.get("image_size", 56))
    samples_per_patch = int(hf.get("samples_per_patch", 16))
    num_audio_samples = num_frames * int(hf.get("audio_samples_per_frame", 1920))
    output_shape = [int(v) for v in hf.get("output_shape", (1, 16, 224, 224))]
    if len(output_shape) != 4:
        raise ValueError(f"config.json: output_shape must be (B, T, H, W), got {output_shape}")
    label_key = "perceiver.decoder.modalities.label.decoder.output_position_encodings.position_embeddings"
    label_query = state_dict.get(label_key)
    label_channels = (
        int(label_query.shape[1]) if label_query is not None else int(hf.get("_label_trainable_num_channels", 1024))
    )
    output_channels = int(hf.get("output_num_channels", 512))
    base = MultimodalAutoencoderConfig(
        video_shape=tuple(output_shape[1:]),  # type: ignore[arg-type]
        num_image_channels=3,
        image_patch_size=4,
        image_temporal_patch_size=1,
        image_num_bands=32,
        image_max_resolution=(num_frames, image_size, image_size),
        num_audio_samples=num_audio_samples,
        samples_per_patch=samples_per_patch,
        audio_num_bands=192,
        audio_max_resolution=(num_audio_samples,),
        num_classes=_num_labels(hf, state_dict),
        label_query_channels=label_channels,
        input_min_padding_size=4,
        query_min_padding_size=2,
        mask_probs={"image": 0.0, "audio": 0.0, "label": 1.0},
        full_query_positions="index",
        encoder=encoder_config(hf),
        decoder=DecoderConfig(
            num_query_channels=max(385, 195, label_channels) + 2,
            num_output_channels=output_channels,
            num_heads=1,
            shape_for_attention=hf_get(hf, "cross_attention_shape_for_attention"),
            use_query_residual=False,
            activation=hf_activation(hf),  # type: ignore[arg-type]
            attention_dropout=hf_attention_dropout(hf),
        ),
    )
    model = MultimodalAutoencoder(base)
    keys: dict[str, str] = {}
    for m in ("audio", "image", "label"):
        keys[f"input_adapter.padding.{m}"] = f"perceiver.input_preprocessor.padding.{m}"
        keys[f"input_adapter.mask.{m}"] = f"perceiver.input_preprocessor.mask.{m}"
        keys[f"head.padding.{m}"] = f"perceiver.decoder.padding.{m}"
        for p in ("weight", "bias"):
            keys[f"head.heads.{m}.projection.{p}"] = f"perceiver.output_postprocessor.modalities.{m}.classifier.{p}"
    keys["head.heads.label.query_builder.embedding.embeddings"] = label_key
    load_mapped_state_dict(model, state_dict, lambda k: perceiver_key(k, keys, _DECODER))
    return model.eval()
