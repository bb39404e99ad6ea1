"""Modality adapters: raw inputs -> ``(B, M, C)`` arrays (input side) and decoder rows -> results (output side)."""

from perceiver_io.adapters.image import (
    ClassificationOutputAdapter,
    ConvDownsample,
    ImageAdapterConfig,
    ImageInputAdapter,
    space_to_depth,
)
from perceiver_io.adapters.text import (
    VOCAB_SIZE,
    BytesTokenizer,
    TextAdapterConfig,
    TextInputAdapter,
    TiedEmbeddingDecoder,
)

__all__ = [
    "BytesTokenizer",
    "TextAdapterConfig",
    "TextInputAdapter",
    "TiedEmbeddingDecoder",
    "VOCAB_SIZE",
    "ImageAdapterConfig",
    "ImageInputAdapter",
    "ConvDownsample",
    "ClassificationOutputAdapter",
    "space_to_depth",
]
