"""Primitives with no task knowledge: attention, blocks, position encodings."""

from perceiver_io.layers.attention import MultiHeadAttention, attend, attend_reference, causal_mask
from perceiver_io.layers.blocks import MLP, CrossAttentionBlock, SelfAttentionBlock
from perceiver_io.layers.position import (
    FourierPositionEncoding,
    RotaryPositionEmbedding,
    TrainablePositionEncoding,
    fourier_features,
    grid_positions,
    index_positions,
)

__all__ = [
    "MultiHeadAttention",
    "attend",
    "attend_reference",
    "causal_mask",
    "MLP",
    "CrossAttentionBlock",
    "SelfAttentionBlock",
    "FourierPositionEncoding",
    "RotaryPositionEmbedding",
    "TrainablePositionEncoding",
    "fourier_features",
    "grid_positions",
    "index_positions",
]
