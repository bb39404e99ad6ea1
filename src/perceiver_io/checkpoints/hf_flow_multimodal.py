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
    hf_decoder_options,
    load_mapped_state_dict,
    perceiver_key,
)
from perceiver_io.models.flow import OpticalFlow
from perceiver_io.models.multimodal import MultimodalAutoencoder
from perceiver_io.registry import get_config

__all__ = ["convert_optical_flow", "convert_multimodal"]

_DECODER = "perceiver.decoder.decoder"  # transformers' decoder prefix of both models


def convert_optical_flow(hf: dict[str, Any], state_dict: dict[str, Tensor]) -> OpticalFlow:
    """A ``PerceiverForOpticalFlow`` checkpoint -> :class:`OpticalFlow` with its weights."""
    proj = state_dict.get("perceiver.input_preprocessor.conv_after_patches.weight")
    if proj is None:
        raise KeyError("checkpoint is missing key 'perceiver.input_preprocessor.conv_after_patches.weight'")
    num_patch_channels = int(proj.shape[0])
    train_size = tuple(int(v) for v in hf.get("train_size", (368, 496)))
    base = get_config("optical-flow-perceiver")
    config = base.replace(
        image_size=train_size,
        num_patch_channels=num_patch_channels,
        encoder=encoder_config(hf),
        decoder=base.decoder.replace(**hf_decoder_options(hf)),
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
    preset = get_config("multimodal-perceiver")  # padding sizes 4/2, mask probabilities, bands and patches
    base = preset.replace(
        video_shape=tuple(output_shape[1:]),
        image_max_resolution=(num_frames, image_size, image_size),
        num_audio_samples=num_audio_samples,
        samples_per_patch=samples_per_patch,
        audio_max_resolution=(num_audio_samples,),
        num_classes=_num_labels(hf, state_dict),
        label_query_channels=label_channels,
        full_query_positions="index",
        encoder=encoder_config(hf),
        decoder=preset.decoder.replace(num_output_channels=output_channels, **hf_decoder_options(hf)),
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
