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
from pathlib import Path

import torch

__all__ = ["CONVERTERS", "load_transformers_checkpoint", "read_state_dict"]

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
    known = [a for a in archs if a in CONVERTERS]
    if not known:
        raise ValueError(
            f"{directory / 'config.json'}: unsupported architectures {archs}; supported: {sorted(CONVERTERS)}"
        )
    module_name, fn_name = CONVERTERS[known[0]].split(":")
    convert = getattr(importlib.import_module(module_name), fn_name)
    return convert(hf_config, read_state_dict(directory)).eval()
