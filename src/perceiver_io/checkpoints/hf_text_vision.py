"""Converters from ``transformers`` Perceiver checkpoints: masked LM, text and image classifiers.

Each converter takes the checkpoint's ``config.json`` as a dict and its state dict, builds the
matching model of this library with the options that reproduce ``transformers`` (exact erf
GELU, its conv/max-pool padding, its fixed Fourier resolutions) and loads every weight
strictly: a missing key, an unexpected key or a shape mismatch raises an error naming the key.

``transformers`` writes only the config values that differ from ``PerceiverConfig``'s
defaults, so missing fields take those defaults (:data:`HF_DEFAULTS`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor, nn

from perceiver_io.adapters.image import ImageAdapterConfig
from perceiver_io.adapters.text import TextAdapterConfig
from perceiver_io.decoder import DecoderConfig
from perceiver_io.encoder import EncoderConfig
from perceiver_io.models.classifier import ImageClassifier, ImageClassifierConfig, TextClassifier, TextClassifierConfig
from perceiver_io.models.mlm import MaskedLanguageModel, MaskedLanguageModelConfig

__all__ = [
    "HF_DEFAULTS",
    "convert_masked_lm",
    "convert_text_classifier",
    "convert_image_fourier",
    "convert_image_learned",
    "convert_image_conv",
    "load_mapped_state_dict",
]

# transformers.PerceiverConfig defaults (fields a saved config.json may omit)
HF_DEFAULTS: dict[str, Any] = {
    "num_latents": 256,
    "d_latents": 1280,
    "d_model": 768,
    "num_blocks": 1,
    "num_self_attends_per_block": 26,
    "num_self_attention_heads": 8,
    "num_cross_attention_heads": 8,
    "qk_channels": None,
    "v_channels": None,
    "cross_attention_shape_for_attention": "kv",
    "self_attention_widening_factor": 1,
    "cross_attention_widening_factor": 1,
    "hidden_act": "gelu",
    "attention_probs_dropout_prob": 0.1,
    "use_query_residual": True,
    "vocab_size": 262,
    "max_position_embeddings": 2048,
    "image_size": 56,
}

_ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "relu": "relu"}

# our sub-module path inside a cross-/self-attention block -> transformers' PerceiverLayer path
_LAYER_KEYS = {
    "q_norm": "attention.self.layernorm1",
    "norm": "attention.self.layernorm1",
    "kv_norm": "attention.self.layernorm2",
    "attention.q_proj": "attention.self.query",
    "attention.k_proj": "attention.self.key",
    "attention.v_proj": "attention.self.value",
    "attention.o_proj": "attention.output.dense",
    "mlp_norm": "layernorm",
    "mlp.0": "mlp.dense1",
    "mlp.2": "mlp.dense2",
}

_TEXT_KEYS = {
    "input_adapter.token_embedding.weight": "perceiver.input_preprocessor.embeddings.weight",
    "input_adapter.position_embedding.embeddings": "perceiver.input_preprocessor.position_embeddings.weight",
}


def _get(hf_config: dict[str, Any], key: str) -> Any:
    value = hf_config.get(key)
    return HF_DEFAULTS[key] if value is None and key not in hf_config else value


def _activation(hf_config: dict[str, Any]) -> str:
    act = _get(hf_config, "hidden_act")
    if act not in _ACTIVATIONS:
        raise ValueError(f"config.json: hidden_act {act!r} is not supported; supported: {sorted(_ACTIVATIONS)}")
    return _ACTIVATIONS[act]


def _dropout(hf_config: dict[str, Any]) -> float:
    return float(_get(hf_config, "attention_probs_dropout_prob") or 0.0)


def _encoder_config(hf_config: dict[str, Any]) -> EncoderConfig:
    """transformers' ``PerceiverEncoder``: one cross-attend, ``num_blocks`` × shared self-attends.

    ``qk_channels``/``v_channels`` apply to the cross- and the self-attention alike.
    """
    g = lambda k: _get(hf_config, k)  # noqa: E731
    return EncoderConfig(
        num_latents=g("num_latents"),
        num_latent_channels=g("d_latents"),
        num_blocks=g("num_blocks"),
        num_self_attends_per_block=g("num_self_attends_per_block"),
        num_cross_attention_heads=g("num_cross_attention_heads"),
        num_self_attention_heads=g("num_self_attention_heads"),
        cross_attention_qk_channels=g("qk_channels"),
        cross_attention_v_channels=g("v_channels"),
        self_attention_qk_channels=g("qk_channels"),
        self_attention_v_channels=g("v_channels"),
        cross_attention_shape_for_attention=g("cross_attention_shape_for_attention"),
        cross_attention_widening_factor=g("cross_attention_widening_factor"),
        self_attention_widening_factor=g("self_attention_widening_factor"),
        use_query_residual=g("use_query_residual"),
        activation=_activation(hf_config),  # type: ignore[arg-type]
        attention_dropout=_dropout(hf_config),
    )


def _classification_decoder_config(hf_config: dict[str, Any]) -> DecoderConfig:
    """transformers' ``PerceiverClassificationDecoder``: 1 query of width ``d_latents``, 1 head, widening 1."""
    return DecoderConfig(
        num_query_channels=_get(hf_config, "d_latents"),
        num_heads=1,
        shape_for_attention=_get(hf_config, "cross_attention_shape_for_attention"),
        widening_factor=1,
        use_query_residual=True,
        activation=_activation(hf_config),  # type: ignore[arg-type]
        attention_dropout=_dropout(hf_config),
    )


def _num_classes(hf_config: dict[str, Any], state_dict: dict[str, Tensor]) -> int:
    key = "perceiver.decoder.decoder.final_layer.weight"
    if key in state_dict:
        return int(state_dict[key].shape[0])
    if hf_config.get("id2label"):
        return len(hf_config["id2label"])
    return int(hf_config.get("num_labels", 2))


def _image_size(hf_config: dict[str, Any]) -> tuple[int, int]:
    size = _get(hf_config, "image_size")
    if isinstance(size, int):
        return (size, size)
    return (int(size[0]), int(size[1]))


def _hf_key(key: str, extra: dict[str, str], decoder_prefix: str) -> str | None:
    """Our state-dict key -> the transformers key, or None if no rule covers it."""
    if key in extra:
        return extra[key]
    if key == "encoder.latents.embeddings":
        return "perceiver.embeddings.latents"
    if key == "query_builder.embedding.embeddings":
        return f"{decoder_prefix}.output_position_encodings.position_embeddings"
    if key.startswith("decoder.projection."):
        return f"{decoder_prefix}.final_layer.{key.rsplit('.', 1)[1]}"
    for ours, theirs in (
        ("encoder.cross_attention.", "perceiver.encoder.cross_attention."),
        ("decoder.cross_attention.", f"{decoder_prefix}.decoding_cross_attention."),
    ):
        if key.startswith(ours):
            rest = key[len(ours) :]
            module, param = rest.rsplit(".", 1)
            return theirs + _LAYER_KEYS[module] + "." + param if module in _LAYER_KEYS else None
    if key.startswith("encoder.self_attention."):
        index, rest = key[len("encoder.self_attention.") :].split(".", 1)
        module, param = rest.rsplit(".", 1)
        if module in _LAYER_KEYS:
            return f"perceiver.encoder.self_attends.{index}.{_LAYER_KEYS[module]}.{param}"
    return None


def load_mapped_state_dict(
    model: nn.Module, state_dict: dict[str, Tensor], to_hf: Callable[[str], str | None], source: str = "checkpoint"
) -> nn.Module:
    """Fill every parameter/buffer of ``model`` from ``state_dict[to_hf(key)]``, strictly.

    Raises ``KeyError`` for a missing checkpoint key, ``ValueError`` for a shape mismatch or for
    checkpoint keys that no model key uses; each message names the key.
    """
    ours = model.state_dict()
    mapped: dict[str, Tensor] = {}
    used: set[str] = set()
    for key, target in ours.items():
        hf = to_hf(key)
        if hf is None:
            raise RuntimeError(f"no transformers key mapping for model key {key!r} (converter bug)")
        if hf not in state_dict:
            raise KeyError(f"{source} is missing {hf!r} (needed for {key!r})")
        value = state_dict[hf]
        if tuple(value.shape) != tuple(target.shape):
            raise ValueError(
                f"{source}: {hf!r} has shape {tuple(value.shape)}, expected {tuple(target.shape)} (for {key!r}); "
                "does config.json match the weights?"
            )
        mapped[key] = value.to(target.dtype) if target.is_floating_point() else value
        used.add(hf)
    unexpected = sorted(set(state_dict) - used)
    if unexpected:
        raise ValueError(f"{source} has keys this model does not use: {unexpected}")
    model.load_state_dict(mapped, strict=True)
    return model.eval()


def convert_masked_lm(hf_config: dict[str, Any], state_dict: dict[str, Tensor]) -> MaskedLanguageModel:
    """``PerceiverForMaskedLM`` (``deepmind/language-perceiver``) -> :class:`MaskedLanguageModel`.

    transformers' decoder hard-codes qk = 256 and 8 heads, v = d_model, no query residual, no final projection.
    """
    d_model = _get(hf_config, "d_model")
    config = MaskedLanguageModelConfig(
        text=TextAdapterConfig(
            vocab_size=_get(hf_config, "vocab_size"),
            max_seq_len=_get(hf_config, "max_position_embeddings"),
            num_channels=d_model,
        ),
        encoder=_encoder_config(hf_config),
        decoder=DecoderConfig(
            num_query_channels=d_model,
            num_output_channels=None,
            num_heads=8,
            num_qk_channels=256,
            num_v_channels=d_model,
            widening_factor=1,
            use_query_residual=False,
            activation=_activation(hf_config),  # type: ignore[arg-type]
            attention_dropout=_dropout(hf_config),
        ),
    )
    model = MaskedLanguageModel(config)
    extra = {**_TEXT_KEYS, "output_adapter.bias": "embedding_decoder.bias"}
    return load_mapped_state_dict(model, state_dict, lambda k: _hf_key(k, extra, "perceiver.decoder"))  # type: ignore[return-value]


def convert_text_classifier(hf_config: dict[str, Any], state_dict: dict[str, Tensor]) -> TextClassifier:
    """``PerceiverForSequenceClassification`` -> :class:`TextClassifier`."""
    config = TextClassifierConfig(
        text=TextAdapterConfig(
            vocab_size=_get(hf_config, "vocab_size"),
            max_seq_len=_get(hf_config, "max_position_embeddings"),
            num_channels=_get(hf_config, "d_model"),
        ),
        encoder=_encoder_config(hf_config),
        decoder=_classification_decoder_config(hf_config),
        num_classes=_num_classes(hf_config, state_dict),
    )
    model = TextClassifier(config)
    return load_mapped_state_dict(model, state_dict, lambda k: _hf_key(k, _TEXT_KEYS, "perceiver.decoder.decoder"))  # type: ignore[return-value]


def _image_classifier(
    hf_config: dict[str, Any], state_dict: dict[str, Tensor], image: ImageAdapterConfig, extra: dict[str, str]
) -> ImageClassifier:
    config = ImageClassifierConfig(
        image=image,
        encoder=_encoder_config(hf_config),
        decoder=_classification_decoder_config(hf_config),
        num_classes=_num_classes(hf_config, state_dict),
    )
    model = ImageClassifier(config)
    return load_mapped_state_dict(model, state_dict, lambda k: _hf_key(k, extra, "perceiver.decoder.decoder"))  # type: ignore[return-value]


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
