"""Converters from ``transformers`` Perceiver checkpoints: masked LM, text and image classifiers.

Each converter takes the checkpoint's ``config.json`` as a dict and its state dict, builds the
matching model of this library with the options that reproduce ``transformers`` (exact erf
GELU, its conv/max-pool padding, its fixed Fourier resolutions) and loads every weight
strictly: a missing key, an unexpected key or a shape mismatch raises an error naming the key.

``transformers`` writes only the config values that differ from ``PerceiverConfig``'s
defaults, so missing fields take those defaults (``HF_DEFAULTS`` in :mod:`perceiver_io.checkpoints.transformers`).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from perceiver_io.adapters.image import ImageAdapterConfig
from perceiver_io.adapters.text import TextAdapterConfig
from perceiver_io.checkpoints.transformers import (
    encoder_config,
    hf_activation,
    hf_attention_dropout,
    hf_get,
    load_mapped_state_dict,
    perceiver_key,
)
from perceiver_io.decoder import DecoderConfig
from perceiver_io.models.classifier import ImageClassifier, ImageClassifierConfig, TextClassifier, TextClassifierConfig
from perceiver_io.models.mlm import MaskedLanguageModel, MaskedLanguageModelConfig

__all__ = [
    "convert_masked_lm",
    "convert_text_classifier",
    "convert_image_fourier",
    "convert_image_learned",
    "convert_image_conv",
]

_DECODER = "perceiver.decoder.decoder"  # transformers' prefix of a decoder wrapped by another decoder

_TEXT_KEYS = {
    "input_adapter.token_embedding.weight": "perceiver.input_preprocessor.embeddings.weight",
    "input_adapter.position_embedding.embeddings": "perceiver.input_preprocessor.position_embeddings.weight",
}


def _classification_decoder_config(hf_config: dict[str, Any]) -> DecoderConfig:
    """transformers' ``PerceiverClassificationDecoder``: 1 query of width ``d_latents``, 1 head, widening 1."""
    return DecoderConfig(
        num_query_channels=hf_get(hf_config, "d_latents"),
        num_heads=1,
        shape_for_attention=hf_get(hf_config, "cross_attention_shape_for_attention"),
        widening_factor=1,
        use_query_residual=True,
        activation=hf_activation(hf_config),  # type: ignore[arg-type]
        attention_dropout=hf_attention_dropout(hf_config),
    )


def _num_classes(hf_config: dict[str, Any], state_dict: dict[str, Tensor]) -> int:
    key = "perceiver.decoder.decoder.final_layer.weight"
    if key in state_dict:
        return int(state_dict[key].shape[0])
    if hf_config.get("id2label"):
        return len(hf_config["id2label"])
    return int(hf_config.get("num_labels", 2))


def _image_size(hf_config: dict[str, Any]) -> tuple[int, int]:
    size = hf_get(hf_config, "image_size")
    if isinstance(size, int):
        return (size, size)
    return (int(size[0]), int(size[1]))


def convert_masked_lm(hf_config: dict[str, Any], state_dict: dict[str, Tensor]) -> MaskedLanguageModel:
    """``PerceiverForMaskedLM`` (``deepmind/language-perceiver``) -> :class:`MaskedLanguageModel`.

    transformers' decoder hard-codes qk = 256 and 8 heads, v = d_model, no query residual, no final projection.
    """
    d_model = hf_get(hf_config, "d_model")
    config = MaskedLanguageModelConfig(
        text=TextAdapterConfig(
            vocab_size=hf_get(hf_config, "vocab_size"),
            max_seq_len=hf_get(hf_config, "max_position_embeddings"),
            num_channels=d_model,
        ),
        encoder=encoder_config(hf_config),
        decoder=DecoderConfig(
            num_query_channels=d_model,
            num_output_channels=None,
            num_heads=8,
            num_qk_channels=256,
            num_v_channels=d_model,
            widening_factor=1,
            use_query_residual=False,
            activation=hf_activation(hf_config),  # type: ignore[arg-type]
            attention_dropout=hf_attention_dropout(hf_config),
        ),
    )
    model = MaskedLanguageModel(config)
    extra = {**_TEXT_KEYS, "head.bias": "embedding_decoder.bias"}
    return load_mapped_state_dict(model, state_dict, lambda k: perceiver_key(k, extra, "perceiver.decoder"))  # type: ignore[return-value]


def convert_text_classifier(hf_config: dict[str, Any], state_dict: dict[str, Tensor]) -> TextClassifier:
    """``PerceiverForSequenceClassification`` -> :class:`TextClassifier`."""
    config = TextClassifierConfig(
        text=TextAdapterConfig(
            vocab_size=hf_get(hf_config, "vocab_size"),
            max_seq_len=hf_get(hf_config, "max_position_embeddings"),
            num_channels=hf_get(hf_config, "d_model"),
        ),
        encoder=encoder_config(hf_config),
        decoder=_classification_decoder_config(hf_config),
        num_classes=_num_classes(hf_config, state_dict),
    )
    model = TextClassifier(config)
    return load_mapped_state_dict(model, state_dict, lambda k: perceiver_key(k, _TEXT_KEYS, _DECODER))  # type: ignore[return-value]


def _image_classifier(
    hf_config: dict[str, Any], state_dict: dict[str, Tensor], image: ImageAdapterConfig, extra: dict[str, str]
) -> ImageClassifier:
    config = ImageClassifierConfig(
        image=image,
        encoder=encoder_config(hf_config),
        decoder=_classification_decoder_config(hf_config),
        num_classes=_num_classes(hf_config, state_dict),
    )
    model = ImageClassifier(config)
    return load_mapped_state_dict(model, state_dict, lambda k: perceiver_key(k, extra, _DECODER))  # type: ignore[return-value]


def convert_image_fourier(hf_config: dict[str, Any], state_dict: dict[str, Tensor]) -> ImageClassifier:
    """``PerceiverForImageClassificationFourier``: pixels + 2-D Fourier features (64 bands, resolution 224²)."""
    image = ImageAdapterConfig(
        image_shape=_image_size(hf_config),
        prep_type="pixels",
        spatial_downsample=1,
        position_encoding="fourier",
        num_bands=64,
        max_resolution=(224, 224),
    )
    return _image_classifier(hf_config, state_dict, image, {})


def convert_image_learned(hf_config: dict[str, Any], state_dict: dict[str, Tensor]) -> ImageClassifier:
    """``PerceiverForImageClassificationLearned``: 1×1 conv to 256 + learned positions (256, projected to 256)."""
    image = ImageAdapterConfig(
        image_shape=_image_size(hf_config),
        prep_type="conv1x1",
        spatial_downsample=1,
        out_channels=256,
        position_encoding="trainable",
        num_position_channels=256,
        project_pos_dim=256,
    )
    p = "perceiver.input_preprocessor"
    extra = {
        "input_adapter.conv.weight": f"{p}.convnet_1x1.weight",
        "input_adapter.conv.bias": f"{p}.convnet_1x1.bias",
        "input_adapter.positions.embeddings": f"{p}.position_embeddings.position_embeddings",
        "input_adapter.position_projection.weight": f"{p}.positions_projection.weight",
        "input_adapter.position_projection.bias": f"{p}.positions_projection.bias",
    }
    return _image_classifier(hf_config, state_dict, image, extra)


def convert_image_conv(hf_config: dict[str, Any], state_dict: dict[str, Tensor]) -> ImageClassifier:
    """``PerceiverForImageClassificationConvProcessing``: conv + max-pool + 2-D Fourier features (resolution 56²).

    transformers pads the 7×7 conv with 3 on every side and the max-pool not at all (55×55 from
    224); ``conv_padding="symmetric"``, ``pool_padding="valid"`` reproduce that.
    """
    image = ImageAdapterConfig(
        image_shape=_image_size(hf_config),
        prep_type="conv",
        spatial_downsample=4,
        out_channels=64,
        conv_padding="symmetric",
        pool_padding="valid",
        position_encoding="fourier",
        num_bands=64,
        max_resolution=(56, 56),
    )
    p = "perceiver.input_preprocessor.convnet"
    extra = {"input_adapter.conv.0.conv.weight": f"{p}.conv.weight"}
    for name in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
        extra[f"input_adapter.conv.0.norm.{name}"] = f"{p}.batchnorm.{name}"
    return _image_classifier(hf_config, state_dict, image, extra)
