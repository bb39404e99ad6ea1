"""Import ``transformers`` Perceiver checkpoints (``config.json`` + ``model.safetensors`` or
``pytorch_model.bin``) into this library's models, by mapping state-dict keys.

``transformers`` itself is *not* needed: the checkpoint's ``config.json`` names the
architecture, and one converter per architecture builds our config and renames the weights.
A converter is ``convert(hf_config: dict, state_dict: dict[str, Tensor]) -> PerceiverModel``
(weights loaded, strict), registered in ``CONVERTERS`` as ``"module:function"`` (lazy import).
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from perceiver_io.encoder import EncoderConfig

__all__ = [
    "CONVERTERS",
    "HF_DEFAULTS",
    "encoder_config",
    "hf_decoder_options",
    "hf_get",
    "load_mapped_state_dict",
    "load_transformers_checkpoint",
    "perceiver_key",
    "read_state_dict",
]

# transformers architecture name -> "perceiver_io.<module>:<function>"
CONVERTERS: dict[str, str] = {
    "PerceiverForMaskedLM": "perceiver_io.checkpoints.hf_text_vision:convert_masked_lm",
    "PerceiverForSequenceClassification": "perceiver_io.checkpoints.hf_text_vision:convert_text_classifier",
    "PerceiverForImageClassificationFourier": "perceiver_io.checkpoints.hf_text_vision:convert_image_fourier",
    "PerceiverForImageClassificationLearned": "perceiver_io.checkpoints.hf_text_vision:convert_image_learned",
    "PerceiverForImageClassificationConvProcessing": "perceiver_io.checkpoints.hf_text_vision:convert_image_conv",
    "PerceiverForOpticalFlow": "perceiver_io.checkpoints.hf_flow_multimodal:convert_optical_flow",
    "PerceiverForMultimodalAutoencoding": "perceiver_io.checkpoints.hf_flow_multimodal:convert_multimodal",
}


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

ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "relu": "relu"}

# our sub-module path inside a cross-/self-attention block -> transformers' PerceiverLayer path
LAYER_KEYS = {
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


def hf_get(hf_config: dict[str, Any], key: str) -> Any:
    value = hf_config.get(key)
    return HF_DEFAULTS[key] if value is None and key not in hf_config else value


def hf_activation(hf_config: dict[str, Any]) -> str:
    act = hf_get(hf_config, "hidden_act")
    if act not in ACTIVATIONS:
        raise ValueError(f"config.json: hidden_act {act!r} is not supported; supported: {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[act]


def hf_attention_dropout(hf_config: dict[str, Any]) -> float:
    return float(hf_get(hf_config, "attention_probs_dropout_prob") or 0.0)


def hf_decoder_options(hf_config: dict[str, Any]) -> dict[str, Any]:
    """Decoder fields a transformers ``config.json`` sets (the rest come from the preset)."""
    return {
        "shape_for_attention": hf_get(hf_config, "cross_attention_shape_for_attention"),
        "activation": hf_activation(hf_config),
        "attention_dropout": hf_attention_dropout(hf_config),
    }


def encoder_config(hf_config: dict[str, Any]) -> EncoderConfig:
    """transformers' ``PerceiverEncoder``: one cross-attend, ``num_blocks`` × shared self-attends.

    ``qk_channels``/``v_channels`` apply to the cross- and the self-attention alike.
    """
    g = lambda k: hf_get(hf_config, k)  # noqa: E731
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
        activation=hf_activation(hf_config),  # type: ignore[arg-type]
        attention_dropout=hf_attention_dropout(hf_config),
    )


def perceiver_key(key: str, extra: dict[str, str], decoder_prefix: str) -> str | None:
    """Our state-dict key -> the transformers key, or None if no rule covers it."""
    if key in extra:
        return extra[key]
    if key == "encoder.latents.embeddings":
        return "perceiver.embeddings.latents"
    if key == "head.query_builder.embedding.embeddings":
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
            return theirs + LAYER_KEYS[module] + "." + param if module in LAYER_KEYS else None
    if key.startswith("encoder.self_attention."):
        index, rest = key[len("encoder.self_attention.") :].split(".", 1)
        module, param = rest.rsplit(".", 1)
        if module in LAYER_KEYS:
            return f"perceiver.encoder.self_attends.{index}.{LAYER_KEYS[module]}.{param}"
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


def read_state_dict(directory: Path) -> dict[str, torch.Tensor]:
    """Weights of a checkpoint directory: ``model.safetensors`` (preferred) or ``pytorch_model.bin``."""
    st = directory / "model.safetensors"
    if st.is_file():
        from safetensors.torch import load_file

        return load_file(str(st))
    pt = directory / "pytorch_model.bin"
    if pt.is_file():
        return torch.load(pt, map_location="cpu", weights_only=True)
    raise FileNotFoundError(f"no model.safetensors or pytorch_model.bin in {directory}")


def load_transformers_checkpoint(directory: str | Path):
    """Load a ``transformers`` Perceiver checkpoint directory as the matching model, in eval mode."""
    directory = Path(directory)
    hf_config = json.loads((directory / "config.json").read_text())
    archs = hf_config.get("architectures") or []
    if isinstance(archs, str):
        archs = [archs]
    known = [a for a in archs if a in CONVERTERS]
    if not known:
        raise ValueError(
            f"{directory / 'config.json'}: unsupported architectures {archs}; supported: {sorted(CONVERTERS)}"
        )
    module_name, fn_name = CONVERTERS[known[0]].split(":")
    convert = getattr(importlib.import_module(module_name), fn_name)
    return convert(hf_config, read_state_dict(directory)).eval()
