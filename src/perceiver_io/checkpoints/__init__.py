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
from safetensors.torch import load_model, save_model

from perceiver_io.registry import model_class

if TYPE_CHECKING:
    from perceiver_io.models.base import PerceiverModel

__all__ = ["save_pretrained", "from_pretrained", "atomic_write", "file_sha256"]

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


def from_pretrained(directory: str | os.PathLike, map_location: str | torch.device = "cpu") -> PerceiverModel:
    """Load a model directory written by :func:`save_pretrained`; returns it in eval mode."""
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
    try:
        cls = model_class(name)
    except ValueError as e:
        raise ValueError(f"{config_path}: {e}") from None
    model = cls(cls.config_class.from_dict(meta["config"]))
    weights = directory / WEIGHTS_NAME
    if not weights.is_file():
        raise FileNotFoundError(f"no {WEIGHTS_NAME} in {directory}")
    expected = meta.get("weights_sha256")
    if expected is not None and file_sha256(weights) != expected:
        raise ValueError(
            f"{weights} is damaged: its sha256 is {file_sha256(weights)}, {config_path.name} recorded {expected}; "
            "save or download the model again"
        )
    try:
        missing, unexpected = load_model(model, weights, strict=False, device=str(map_location))
    except SafetensorError as e:  # a damaged or foreign file
        raise ValueError(f"{weights} is not a readable safetensors file ({str(e).splitlines()[0]})") from None
    except RuntimeError as e:  # shapes that do not match the config: name every key, on one line
        details = "; ".join(line.strip() for line in str(e).splitlines()[1:] if line.strip())
        raise ValueError(f"{weights} does not match {name} as configured in {config_path.name}: {details}") from None
    if missing or unexpected:
        raise ValueError(
            f"{weights} does not match {name}: missing keys {sorted(missing)}, unexpected {sorted(unexpected)}"
        )
    return model.eval()
