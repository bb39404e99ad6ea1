"""Converters from ``transformers`` Perceiver checkpoints: masked LM, text and image classifiers.

Each converter takes the checkpoint's ``config.json`` as a dict and its state dict, builds the
matching model of this library with the options that reproduce ``transformers`` (exact erf
GELU, its conv/max-pool padding, its fixed Fourier resolutions) and loads every weight
strictly: a missing key, an unexpected key or a shape mismatch raises an error naming the key.

``transformers`` writes only the config values that differ from ``PerceiverConfig``'s
defaults, so missing fields take those defaults (``HF_DEFAULTS`` in :mod:`perceiver_io.checkpoints.transformers`).
Each converter starts from the registered preset of its architecture and replaces only what the
checkpoint's ``config.json`` (or its weights' shapes) determines.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from perceiver_io.adapters.text import TextAdapterConfig
from perceiver_io.checkpoints.transformers import (
    encoder_config,
    hf_decoder_options,
    hf_get,
    load_mapped_state_dict,
    perceiver_key,
)
from perceiver_io.decoder import DecoderConfig
from perceiver_io.models.classifier import ImageClassifier, TextClassifier, TextClassifierConfig
from perceiver_io.models.mlm import MaskedLanguageModel
from perceiver_io.registry import get_config

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
    return DecoderConfig(num_heads=1, widening_factor=1, use_query_residual=True, **hf_decoder_options(hf_config))


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
    base = get_config("language-perceiver")  # the published decoder: 8 heads, qk 256, no residual, tied output
    config = base.replace(
        text=base.text.replace(
            vocab_size=hf_get(hf_config, "vocab_size"),
            max_seq_len=hf_get(hf_config, "max_position_embeddings"),
            num_channels=d_model,
        ),
        encoder=encoder_config(hf_config),
        decoder=base.decoder.replace(num_v_channels=d_model, **hf_decoder_options(hf_config)),
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
    hf_config: dict[str, Any], state_dict: dict[str, Tensor], preset: str, image: dict[str, Any], extra: dict[str, str]
) -> ImageClassifier:
    """The registered ImageNet ``preset`` with the checkpoint's sizes and transformers' ``image`` options."""
    base = get_config(preset)
    config = base.replace(
        image=base.image.replace(image_shape=_image_size(hf_config), **image),
        encoder=encoder_config(hf_config),
        decoder=_classification_decoder_config(hf_config),
        num_classes=_num_classes(hf_config, state_dict),
    )
    model = ImageClassifier(config)
    return load_mapped_state_dict(model, state_dict, lambda k: perceiver_key(k, extra, _DECODER))  # type: ignore[return-value]


def convert_image_fourier(hf_config: dict[str, Any], state_dict: dict[str, Tensor]) -> ImageClassifier:
    """``PerceiverForImageClassificationFourier``: pixels + 2-D Fourier features (64 bands, resolution 224²)."""
    return _image_classifier(hf_config, state_dict, "vision-perceiver-fourier", {"max_resolution": (224, 224)}, {})


def convert_image_learned(hf_config: dict[str, Any], state_dict: dict[str, Tensor]) -> ImageClassifier:
    """``PerceiverForImageClassificationLearned``: 1×1 conv to 256 + learned positions (256, projected to 256)."""
    p = "perceiver.input_preprocessor"
    extra = {
        "input_adapter.conv.weight": f"{p}.convnet_1x1.weight",
        "input_adapter.conv.bias": f"{p}.convnet_1x1.bias",
        "input_adapter.positions.embeddings": f"{p}.position_embeddings.position_embeddings",
        "input_adapter.position_projection.weight": f"{p}.positions_projection.weight",
        "input_adapter.position_projection.bias": f"{p}.positions_projection.bias",
    }
    return _image_classifier(hf_config, state_dict, "vision-perceiver-learned", {}, extra)


def convert_image_conv(hf_config: dict[str, Any], state_dict: dict[str, Tensor]) -> ImageClassifier:
    """``PerceiverForImageClassificationConvProcessing``: conv + max-pool + 2-D Fourier features (resolution 56²).

    transformers pads the 7×7 conv with 3 on every side and the max-pool not at all (55×55 from
    224); ``conv_padding="symmetric"``, ``pool_padding="valid"`` reproduce that.
    """
    image = {"conv_padding": "symmetric", "pool_padding": "valid", "max_resolution": (56, 56)}
    p = "perceiver.input_preprocessor.convnet"
    extra = {"input_adapter.conv.0.conv.weight": f"{p}.conv.weight"}
    for name in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
        extra[f"input_adapter.conv.0.norm.{name}"] = f"{p}.batchnorm.{name}"
    return _image_classifier(hf_config, state_dict, "vision-perceiver-conv", image, extra)
