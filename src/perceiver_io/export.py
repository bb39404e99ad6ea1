"""Export to ``torch.export`` programs and ONNX (through the dynamo-based exporter).

Supported models (the exported graph returns the ``logits`` tensor, not the output dataclass):

* :class:`~perceiver_io.models.MaskedLanguageModel`: ``input_ids (B, L)`` int64 [, ``input_mask (B, L)`` bool]
  -> ``logits (B, L, vocab_size)``; batch and sequence length (up to ``max_seq_len``) dynamic.
* :class:`~perceiver_io.models.TextClassifier`: as above -> ``logits (B, num_classes)``.
* :class:`~perceiver_io.models.ImageClassifier`: ``images (B, C, H, W)`` float -> ``logits (B, num_classes)``;
  batch dynamic, image size fixed to the example's.

Example::

    from perceiver_io.export import export_program, export_onnx

    program = export_program(model)  # example inputs built from the config
    logits = program.module()(input_ids, input_mask)
    export_onnx(model, "mlm.onnx")
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn
from torch.export import Dim, ExportedProgram

from perceiver_io.models.classifier import ImageClassifier, TextClassifier
from perceiver_io.models.mlm import MaskedLanguageModel

__all__ = [
    "ImageLogits",
    "TextLogits",
    "export_onnx",
    "export_program",
    "input_names",
    "logits_module",
    "supported_models",
]

_TEXT_MODELS = (MaskedLanguageModel, TextClassifier)
_SUPPORTED = (MaskedLanguageModel, TextClassifier, ImageClassifier)
_EXTERNAL_DATA_BYTES = 1 << 30  # above this, ONNX weights go to a separate ``.data`` file by default


def supported_models() -> tuple[type[nn.Module], ...]:
    """The model classes that :func:`export_program` and :func:`export_onnx` accept."""
    return _SUPPORTED


class TextLogits(nn.Module):
    """``forward(input_ids, input_mask=None)`` -> ``model(...).logits`` (exportable; no dataclass output)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: Tensor, input_mask: Tensor | None = None) -> Tensor:
        return self.model(input_ids, input_mask, chunk_size=None).logits


class ImageLogits(nn.Module):
    """``forward(images)`` -> ``model(images).logits`` (exportable; no dataclass output)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: Tensor) -> Tensor:
        return self.model(images, chunk_size=None).logits


def logits_module(model: nn.Module) -> TextLogits | ImageLogits:
    """Wrap a supported model so that calling it returns only the logits tensor."""
    _check_supported(model)
    return ImageLogits(model) if isinstance(model, ImageClassifier) else TextLogits(model)


def _check_supported(model: nn.Module) -> None:
    if not isinstance(model, _SUPPORTED):
        names = ", ".join(c.__name__ for c in _SUPPORTED)
        raise TypeError(f"export supports {names}; got {type(model).__name__}")


def input_names(model: nn.Module, with_mask: bool = True) -> list[str]:
    """Graph input names: ``["input_ids", "input_mask"]`` (text) or ``["images"]`` (images)."""
    _check_supported(model)
    if isinstance(model, ImageClassifier):
        return ["images"]
    return ["input_ids", "input_mask"] if with_mask else ["input_ids"]


def _default_inputs(model: nn.Module) -> tuple[Tensor, ...]:
    """Example inputs from the config: batch 2, full length / the configured image shape."""
    device = next(model.parameters()).device
    if isinstance(model, _TEXT_MODELS):
        length = model.config.text.max_seq_len
        ids = torch.randint(6, model.config.text.vocab_size, (2, length), device=device)
        return ids, torch.ones(2, length, dtype=torch.bool, device=device)
    c = model.config.image
    dtype = next(model.parameters()).dtype
    shape = (2, c.num_frames, c.num_image_channels) if c.num_frames is not None else (2, c.num_image_channels)
    return (torch.randn(*shape, *c.image_shape, device=device, dtype=dtype),)


def _normalize_inputs(model: nn.Module, example_inputs: Tensor | Sequence[Tensor] | None) -> tuple[Tensor, ...]:
    if example_inputs is None:
        return _default_inputs(model)
    if isinstance(example_inputs, Tensor):
        example_inputs = (example_inputs,)
    inputs = tuple(example_inputs)
    if not all(isinstance(x, Tensor) for x in inputs):
        raise TypeError("example_inputs must be a tensor or a tuple of tensors")
    expected = 2 if isinstance(model, _TEXT_MODELS) else 1
    if not 1 <= len(inputs) <= expected:
        names = " [, input_mask]" if expected == 2 else ""
        first = "input_ids" if expected == 2 else "images"
        raise ValueError(f"example_inputs for {type(model).__name__} must be ({first}{names}), got {len(inputs)}")
    return inputs


def _widen(x: Tensor, dim: int) -> Tensor:
    """Repeat ``x`` along ``dim`` to size 2: a size-1 example would be specialised to 1 by ``torch.export``."""
    return torch.cat([x, x], dim=dim) if x.shape[dim] == 1 else x


def _prepare(
    model: nn.Module,
    example_inputs: Tensor | Sequence[Tensor] | None,
    dynamic_batch: bool,
    dynamic_length: bool | None,
) -> tuple[nn.Module, tuple[Tensor, ...], dict[str, dict[int, Any]] | None, list[str]]:
    _check_supported(model)
    inputs = _normalize_inputs(model, example_inputs)
    is_text = isinstance(model, _TEXT_MODELS)
    if dynamic_length is None:
        dynamic_length = is_text
    if dynamic_length and not is_text:
        raise ValueError(
            f"dynamic_length is only supported for text models; {type(model).__name__} has a fixed image size "
            "(its position features depend on it)"
        )
    if dynamic_batch:
        inputs = tuple(_widen(x, 0) for x in inputs)
    if dynamic_length:
        inputs = tuple(_widen(x, 1) for x in inputs)
    names = input_names(model, with_mask=len(inputs) == 2)
    shapes: dict[int, Any] = {}
    if dynamic_batch:
        shapes[0] = Dim("batch", min=1)
    if dynamic_length:
        shapes[1] = Dim("length", min=1, max=model.config.text.max_seq_len)
    # the wrappers' forward parameters carry the graph input names
    dynamic_shapes = {a: dict(shapes) for a in names} if shapes else None
    return logits_module(model), inputs, dynamic_shapes, names


@contextmanager
def _eval_mode(wrapper: nn.Module):
    """Trace in inference mode (no dropout); every submodule's training flag is restored afterwards."""
    flags = [(m, m.training) for m in wrapper.modules()]
    wrapper.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        for m, training in flags:
            m.training = training


def export_program(
    model: nn.Module,
    example_inputs: Tensor | Sequence[Tensor] | None = None,
    dynamic_batch: bool = True,
    dynamic_length: bool | None = None,
    strict: bool = False,
) -> ExportedProgram:
    """``torch.export`` a supported model; the program returns the logits tensor.

    Args:
        model: a :class:`MaskedLanguageModel`, :class:`TextClassifier` or :class:`ImageClassifier`.
        example_inputs: ``(input_ids[, input_mask])`` or ``(images,)`` (a single tensor is accepted);
            default: built from the config (batch 2, ``max_seq_len`` / ``image_shape``). Exporting
            without ``input_mask`` gives a program that takes ``input_ids`` only.
        dynamic_batch: make dimension 0 of every input dynamic.
        dynamic_length: make the sequence length dynamic (``1..max_seq_len``); default: True for
            text models. Not available for images.
        strict: passed to :func:`torch.export.export`.

    The model is traced in eval mode. Call the result as ``program.module()(*inputs)``.
    """
    wrapper, inputs, dynamic_shapes, _ = _prepare(model, example_inputs, dynamic_batch, dynamic_length)
    with _eval_mode(wrapper):
        return torch.export.export(wrapper, inputs, dynamic_shapes=dynamic_shapes, strict=strict)


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike,
    example_inputs: Tensor | Sequence[Tensor] | None = None,
    dynamic_batch: bool = True,
    dynamic_length: bool | None = None,
    opset_version: int | None = None,
    external_data: bool | None = None,
    optimize: bool = True,
    verbose: bool = False,
) -> torch.onnx.ONNXProgram:
    """Export a supported model to an ONNX file at ``path`` with the dynamo-based exporter.

    Inputs are named ``input_ids`` / ``input_mask`` (text) or ``images``; the output is ``logits``.
    Dynamic axes as in :func:`export_program`. ``external_data`` (default: only for models over
    1 GiB of weights) writes the weights to ``<path>.data`` beside the graph; ``verbose`` shows the
    exporter's progress. Returns the ``ONNXProgram`` (already saved).
    """
    wrapper, inputs, dynamic_shapes, names = _prepare(model, example_inputs, dynamic_batch, dynamic_length)
    if external_data is None:
        size = sum(p.numel() * p.element_size() for p in model.parameters())
        size += sum(b.numel() * b.element_size() for b in model.buffers())
        external_data = size > _EXTERNAL_DATA_BYTES
    path = os.fspath(path)
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise FileNotFoundError(f"directory for the ONNX file does not exist: {parent}")
    with _eval_mode(wrapper), warnings.catch_warnings():
        # both inputs share the batch/length dims; the exporter warns that it names each axis once
        warnings.filterwarnings("ignore", message=r".*The axis name: .* will not be used")
        program = torch.onnx.export(
            wrapper,
            inputs,
            path,
            dynamo=True,
            input_names=names,
            output_names=["logits"],
            dynamic_shapes=dynamic_shapes,
            opset_version=opset_version,
            external_data=external_data,
            optimize=optimize,
            verbose=verbose,
        )
    if program is None:  # pragma: no cover - only the legacy exporter returns None
        raise RuntimeError("torch.onnx.export did not return an ONNXProgram")
    return program
