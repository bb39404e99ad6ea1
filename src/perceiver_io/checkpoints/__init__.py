"""Saving and loading weights: ``config.json`` + ``model.safetensors``.

Our format: ``config.json`` holds ``{"format": "perceiver-io", "model_class": ..., "config": {...}}``.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_model

from perceiver_io.registry import model_class as registered_class

if TYPE_CHECKING:
    from perceiver_io.models.base import PerceiverModel

__all__ = ["save_pretrained", "from_pretrained", "atomic_write", "file_sha256", "upgrade_state_dict"]

FORMAT = "perceiver-io"
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


def atomic_write(path: Path, write) -> None:
    """Call ``write(tmp_path)`` then rename onto ``path``: readers never see a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in 1 MiB pieces."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def save_pretrained(model: PerceiverModel, directory: str | os.PathLike) -> None:
    """``model.safetensors`` first, then ``config.json`` with its sha256 (each file atomically)."""
    directory = Path(directory)
    meta = {"format": FORMAT, "model_class": type(model).__name__, "config": model.config.to_dict()}

    def write_weights(tmp: str) -> None:
        save_model(model, tmp)
        meta["weights_sha256"] = file_sha256(tmp)

    atomic_write(directory / WEIGHTS_NAME, write_weights)
    atomic_write(directory / CONFIG_NAME, lambda p: Path(p).write_text(json.dumps(meta, indent=2)))


# our state-dict names before output heads existed (saved by earlier versions) -> today's
_LEGACY_PREFIXES = (
    ("query_builder.builders.", None),  # multimodal: handled below
    ("query_builder.padding.", "head.padding."),
    ("query_builder.", "head.query_builder."),
    ("output_adapter.adapters.", "head.heads."),
    ("output_adapter.", "head."),
)


def upgrade_state_dict(state: dict[str, torch.Tensor], expected: set[str]) -> dict[str, torch.Tensor]:
    """Rename keys saved by earlier versions of this library (``query_builder.*``, ``output_adapter.*``,
    the original Perceiver's ``head.*``) to today's names, where today's model expects them."""
    out = {}
    for key, value in state.items():
        new = key
        if key not in expected:
            if key.startswith("query_builder.builders."):  # multimodal per-modality queries
                m, rest = key[len("query_builder.builders.") :].split(".", 1)
                new = f"head.heads.{m}.query_builder.{rest}"
            elif key in ("head.weight", "head.bias"):  # the original Perceiver's pooling head
                new = "head.projection." + key.split(".")[1]
            else:
                for old, repl in _LEGACY_PREFIXES:
                    if repl is not None and key.startswith(old):
                        new = repl + key[len(old) :]
                        break
        out[new if new in expected else key] = value
    return out


def from_pretrained(
    directory: str | os.PathLike, map_location: str | torch.device = "cpu", model_class: type | None = None
) -> PerceiverModel:
    """Load a model directory written by :func:`save_pretrained`; returns it in eval mode.

    ``model_class``: the class to build when ``config.json`` names it (a class of your own that is
    not registered through a preset); otherwise the registry's class of that name.
    """
    directory = Path(directory)
    config_path = directory / CONFIG_NAME
    if not config_path.is_file():
        raise FileNotFoundError(f"no {CONFIG_NAME} in {directory}")
    try:
        meta = json.loads(config_path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{config_path} is not valid JSON: {e}") from None
    if meta.get("format") != FORMAT:
        if "architectures" in meta:  # a transformers checkpoint directory
            from perceiver_io.checkpoints.transformers import load_transformers_checkpoint

            return load_transformers_checkpoint(directory).to(map_location)
        raise ValueError(f'{config_path} is not a perceiver-io config (missing "format": "{FORMAT}")')
    name = meta.get("model_class")
    if model_class is not None and model_class.__name__ == name:
        cls = model_class
    else:
        try:
            cls = registered_class(name)
        except ValueError as e:
            raise ValueError(f"{config_path}: {e}") from None
    model = cls(cls.config_class.from_dict(meta["config"]))
    weights = directory / WEIGHTS_NAME
    if not weights.is_file():
        raise FileNotFoundError(f"no {WEIGHTS_NAME} in {directory}")
    expected = meta.get("weights_sha256")
    actual = file_sha256(weights) if expected is not None else None
    if actual != expected:
        raise ValueError(
            f"{weights} is damaged: its sha256 is {actual}, {config_path.name} recorded {expected}; "
            "save or download the model again"
        )
    try:
        state = load_file(str(weights), device=str(map_location))
    except SafetensorError as e:  # a damaged or foreign file
        raise ValueError(f"{weights} is not a readable safetensors file ({str(e).splitlines()[0]})") from None
    state = upgrade_state_dict(state, set(model.state_dict()))
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:
        if not str(e).startswith("Error(s) in loading state_dict"):
            raise
        details = "; ".join(line.strip() for line in str(e).splitlines()[1:] if line.strip())  # every key, one line
        raise ValueError(f"{weights} does not match {name} as configured in {config_path.name}: {details}") from None
    if missing or unexpected:
        raise ValueError(
            f"{weights} does not match {name}: missing keys {sorted(missing)}, unexpected {sorted(unexpected)}"
        )
    return model.to(map_location).eval()
