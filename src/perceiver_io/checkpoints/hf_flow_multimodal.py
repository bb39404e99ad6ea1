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

from perceiver_io.decoder import DecoderConfig
from perceiver_io.encoder import EncoderConfig
from perceiver_io.models.base import PerceiverModel
from perceiver_io.models.flow import OpticalFlow, OpticalFlowConfig
from perceiver_io.models.multimodal import MultimodalAutoencoder, MultimodalAutoencoderConfig

__all__ = ["convert_optical_flow", "convert_multimodal", "encoder_config", "load_mapped_state_dict"]

_ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "relu": "relu"}


def _activation(hf: dict[str, Any]) -> str:
    act = hf.get("hidden_act", "gelu")
    if act not in _ACTIVATIONS:
        raise ValueError(f"config.json: unsupported hidden_act {act!r}; supported: {sorted(_ACTIVATIONS)}")
    return _ACTIVATIONS[act]


def _dropout(hf: dict[str, Any]) -> float:
    p = float(hf.get("attention_probs_dropout_prob", 0.1))
    return p if p < 1.0 else 0.0


def encoder_config(hf: dict[str, Any]) -> EncoderConfig:
    """Our :class:`EncoderConfig` from a ``PerceiverConfig`` dict (qk/v widths shared by both attentions)."""
    return EncoderConfig(
        num_latents=hf.get("num_latents", 256),
        num_latent_channels=hf.get("d_latents", 1280),
        num_blocks=hf.get("num_blocks", 1),
        num_self_attends_per_block=hf.get("num_self_attends_per_block", 26),
        num_cross_attention_heads=hf.get("num_cross_attention_heads", 8),
        num_self_attention_heads=hf.get("num_self_attention_heads", 8),
        cross_attention_qk_channels=hf.get("qk_channels"),
        cross_attention_v_channels=hf.get("v_channels"),
        self_attention_qk_channels=hf.get("qk_channels"),
        self_attention_v_channels=hf.get("v_channels"),
        cross_attention_shape_for_attention=hf.get("cross_attention_shape_for_attention", "kv"),
        cross_attention_widening_factor=hf.get("cross_attention_widening_factor", 1),
        self_attention_widening_factor=hf.get("self_attention_widening_factor", 1),
        use_query_residual=hf.get("use_query_residual", True),
        activation=_activation(hf),  # type: ignore[arg-type]
        attention_dropout=_dropout(hf),
    )


def _layer_keys(ours: str, theirs: str, cross: bool) -> dict[str, str]:
    """Our block ``ours`` <- a ``transformers`` ``PerceiverLayer`` at ``theirs`` (weights and biases)."""
    names = {
        "attention.q_proj": "attention.self.query",
        "attention.k_proj": "attention.self.key",
        "attention.v_proj": "attention.self.value",
        "attention.o_proj": "attention.output.dense",
        "mlp_norm": "layernorm",
        "mlp.0": "mlp.dense1",
        "mlp.2": "mlp.dense2",
    }
    if cross:
        names.update({"q_norm": "attention.self.layernorm1", "kv_norm": "attention.self.layernorm2"})
    else:
        names["norm"] = "attention.self.layernorm1"
    return {f"{ours}.{a}.{p}": f"{theirs}.{b}.{p}" for a, b in names.items() for p in ("weight", "bias")}


def _encoder_keys(model: PerceiverModel) -> dict[str, str]:
    keys = {"encoder.latents.embeddings": "perceiver.embeddings.latents"}
    keys.update(_layer_keys("encoder.cross_attention", "perceiver.encoder.cross_attention", cross=True))
    for i in range(len(model.encoder.self_attention)):
        keys.update(_layer_keys(f"encoder.self_attention.{i}", f"perceiver.encoder.self_attends.{i}", cross=False))
    return keys


def _decoder_keys() -> dict[str, str]:
    keys = _layer_keys("decoder.cross_attention", "perceiver.decoder.decoder.decoding_cross_attention", cross=True)
    for p in ("weight", "bias"):
        keys[f"decoder.projection.{p}"] = f"perceiver.decoder.decoder.final_layer.{p}"
    return keys


def load_mapped_state_dict(model: PerceiverModel, state_dict: dict[str, Tensor], keys: dict[str, str]) -> None:
    """Load ``state_dict[keys[ours]]`` into each of our parameters ``ours``, strictly.

    Raises ``KeyError`` naming our key and the checkpoint key if either side lacks it, ``ValueError``
    naming both for a shape mismatch or for checkpoint keys that nothing uses.
    """
    ours = model.state_dict()
    unmapped = sorted(set(ours) - set(keys))
    if unmapped:
        raise KeyError(f"no checkpoint key mapped to model parameter(s) {unmapped}")
    new = {}
    for name, hf_name in keys.items():
        if name not in ours:
            raise KeyError(f"mapping names {name!r}, which {type(model).__name__} does not have")
        if hf_name not in state_dict:
            raise KeyError(f"checkpoint is missing key {hf_name!r} (for {name!r})")
        value = state_dict[hf_name]
        if tuple(value.shape) != tuple(ours[name].shape):
            raise ValueError(
                f"checkpoint key {hf_name!r} has shape {tuple(value.shape)}, but {name!r} in "
                f"{type(model).__name__} expects {tuple(ours[name].shape)}"
            )
        new[name] = value.to(ours[name].dtype)
    unused = sorted(set(state_dict) - set(keys.values()))
    if unused:
        raise ValueError(f"checkpoint has key(s) that {type(model).__name__} does not use: {unused}")
    model.load_state_dict(new, strict=True)


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
            shape_for_attention=hf.get("cross_attention_shape_for_attention", "kv"),
            use_query_residual=False,
            activation=_activation(hf),  # type: ignore[arg-type]
            attention_dropout=_dropout(hf),
            output_init="zeros",
        ),
    )
    model = OpticalFlow(config)
    keys = _encoder_keys(model) | _decoder_keys()
    for p in ("weight", "bias"):
        keys[f"input_adapter.patch_projection.{p}"] = f"perceiver.input_preprocessor.conv_after_patches.{p}"
    load_mapped_state_dict(model, state_dict, keys)
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
            shape_for_attention=hf.get("cross_attention_shape_for_attention", "kv"),
            use_query_residual=False,
            activation=_activation(hf),  # type: ignore[arg-type]
            attention_dropout=_dropout(hf),
        ),
    )
    model = MultimodalAutoencoder(base)
    keys = _encoder_keys(model) | _decoder_keys()
    for m in ("audio", "image", "label"):
        keys[f"input_adapter.padding.{m}"] = f"perceiver.input_preprocessor.padding.{m}"
        keys[f"input_adapter.mask.{m}"] = f"perceiver.input_preprocessor.mask.{m}"
        keys[f"query_builder.padding.{m}"] = f"perceiver.decoder.padding.{m}"
        for p in ("weight", "bias"):
            keys[f"output_adapter.adapters.{m}.projection.{p}"] = (
                f"perceiver.output_postprocessor.modalities.{m}.classifier.{p}"
            )
    keys["query_builder.builders.label.embedding.embeddings"] = label_key
    load_mapped_state_dict(model, state_dict, keys)
    return model.eval()
