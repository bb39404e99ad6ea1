"""Modality adapters. Input side: raw inputs -> :class:`AdaptedInputs` (``(B, M, C)`` rows);
output side: the modality's output head (queries, row function, final step)."""

from perceiver_io.adapters.base import AdaptedInputs, IdentityInputAdapter, InputAdapter
from perceiver_io.adapters.image import ConvDownsample, ImageAdapterConfig, ImageInputAdapter
from perceiver_io.adapters.text import (
    VOCAB_SIZE,
    BytesTokenizer,
    MaskedLanguageHead,
    TextAdapterConfig,
    TextInputAdapter,
)

__all__ = [
    "AdaptedInputs",
    "InputAdapter",
    "IdentityInputAdapter",
    "BytesTokenizer",
    "TextAdapterConfig",
    "TextInputAdapter",
    "MaskedLanguageHead",
    "VOCAB_SIZE",
    "ImageAdapterConfig",
    "ImageInputAdapter",
    "ConvDownsample",
]
