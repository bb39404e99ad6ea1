"""Read + process: learned latents cross-attend to the inputs, then a latent self-attention tower.

``PerceiverEncoder(config, num_input_channels)(inputs (B, M, C), input_mask (B, M)) -> (B, N, D)``.

The processor holds ``num_self_attends_per_block`` self-attention layers and applies them
``num_blocks`` times with shared weights (ImageNet: 8 blocks × 6 layers = 48 layers from 6
weight sets). With ``cross_attend_every_block`` the latents re-attend to the inputs before
every block, as in the original Perceiver (first cross-attention unshared, the rest shared).

With ``latent_input_pooling`` (not in the papers; off by default) each latent starts as its learned
vector plus a linear projection of the mean of its own contiguous segment of the inputs (M/N
consecutive rows): a content- and position-dependent start meant to break the symmetry of a fresh
model, whose nearly uniform cross-attention gives every latent the same average of the inputs. A
probe: it did not shorten the byte MLM's or the optical flow's plateau (docs/bytes_vs_transformer.md §6).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from perceiver_io.config import Config
from perceiver_io.layers.blocks import Activation, CrossAttentionBlock, SelfAttentionBlock
from perceiver_io.layers.position import TrainablePositionEncoding
from perceiver_io.validation import check_dtype, check_finite, check_inputs

__all__ = ["EncoderConfig", "PerceiverEncoder", "segment_means", "tiny_encoder"]


def segment_means(inputs: Tensor, input_mask: Tensor | None, num_segments: int) -> Tensor:
    """``(B, M, C)`` -> ``(B, S, C)``: the mean of each of ``S`` contiguous, near-equal segments of the
    rows (``adaptive_avg_pool1d``'s split; with M < S neighbouring segments share rows), over the
    rows where ``input_mask (B, M)`` is True (a segment with none gives zeros)."""
    x = inputs.transpose(1, 2)
    if input_mask is None:
        return nn.functional.adaptive_avg_pool1d(x, num_segments).transpose(1, 2)
    m = input_mask[:, None, :].to(inputs.dtype)
    total = nn.functional.adaptive_avg_pool1d(x * m, num_segments)
    count = nn.functional.adaptive_avg_pool1d(m, num_segments)
    return (total / count.clamp_min(1e-6)).transpose(1, 2)


@dataclass
class EncoderConfig(Config):
    """Encoder hyperparameters; defaults are the official ``PerceiverEncoder``'s (ImageNet)."""

    num_latents: int = 512
    num_latent_channels: int = 1024
    num_blocks: int = 8
    num_self_attends_per_block: int = 6
    num_cross_attention_heads: int = 1
    num_self_attention_heads: int = 8
    cross_attention_qk_channels: int | None = None
    cross_attention_v_channels: int | None = None
    self_attention_qk_channels: int | None = None
    self_attention_v_channels: int | None = None
    cross_attention_shape_for_attention: Literal["kv", "q"] = "kv"
    cross_attention_widening_factor: int = 1
    self_attention_widening_factor: int = 1
    use_query_residual: bool = True
    cross_attend_every_block: bool = False
    activation: Activation = "gelu_tanh"
    dropout: float = 0.0
    attention_dropout: float = 0.0
    latent_init_scale: float = 0.02
    latent_input_pooling: bool = False
    activation_checkpointing: bool = False

    def validate(self) -> None:
        self._positive(
            "num_latents",
            "num_latent_channels",
            "num_blocks",
            "num_self_attends_per_block",
            "num_cross_attention_heads",
            "num_self_attention_heads",
            "cross_attention_widening_factor",
            "self_attention_widening_factor",
        )
        self._positive(
            "cross_attention_qk_channels",
            "cross_attention_v_channels",
            "self_attention_qk_channels",
            "self_attention_v_channels",
            allow_none=True,
        )
        self._probability("dropout", "attention_dropout")
        self._divisible("cross_attention_qk_channels", self.cross_attention_qk_channels, "num_cross_attention_heads")
        self._divisible("cross_attention_v_channels", self.cross_attention_v_channels, "num_cross_attention_heads")
        qk = self.self_attention_qk_channels or self.num_latent_channels
        self._divisible("self_attention_qk_channels (default num_latent_channels)", qk, "num_self_attention_heads")
        self._divisible(
            "self_attention_v_channels (default qk)", self.self_attention_v_channels or qk, "num_self_attention_heads"
        )


def tiny_encoder(**overrides) -> EncoderConfig:
    """The encoder of the tiny ``test-*`` presets: 8 × 32 latents, 1 block × 2 self-attention layers,
    1 cross-attention head and 4 self-attention heads; ``overrides`` change any field."""
    return EncoderConfig(
        num_latents=8,
        num_latent_channels=32,
        num_blocks=1,
        num_self_attends_per_block=2,
        num_cross_attention_heads=1,
        num_self_attention_heads=4,
    ).replace(**overrides)


class PerceiverEncoder(nn.Module):
    """``(B, M, C)`` inputs -> ``(B, N, D)`` latents."""

    def __init__(self, config: EncoderConfig, num_input_channels: int) -> None:
        super().__init__()
        c = config
        self.config = config
        self.num_input_channels = num_input_channels
        self.latents = TrainablePositionEncoding(c.num_latents, c.num_latent_channels, c.latent_init_scale)
        self.input_pooling = nn.Linear(num_input_channels, c.num_latent_channels) if c.latent_input_pooling else None

        def cross_attention() -> CrossAttentionBlock:
            return CrossAttentionBlock(
                num_q_input_channels=c.num_latent_channels,
                num_kv_input_channels=num_input_channels,
                num_heads=c.num_cross_attention_heads,
                num_qk_channels=c.cross_attention_qk_channels,
                num_v_channels=c.cross_attention_v_channels,
                shape_for_attention=c.cross_attention_shape_for_attention,  # type: ignore[arg-type]
                widening_factor=c.cross_attention_widening_factor,
                use_query_residual=c.use_query_residual,
                activation=c.activation,
                dropout=c.dropout,
                attention_dropout=c.attention_dropout,
            )

        self.cross_attention = cross_attention()
        # The original Perceiver: cross-attend before every block; blocks 2.. share weights.
        self.cross_attention_shared = cross_attention() if c.cross_attend_every_block and c.num_blocks > 1 else None
        self.self_attention = nn.ModuleList(
            SelfAttentionBlock(
                num_channels=c.num_latent_channels,
                num_heads=c.num_self_attention_heads,
                num_qk_channels=c.self_attention_qk_channels,
                num_v_channels=c.self_attention_v_channels,
                widening_factor=c.self_attention_widening_factor,
                activation=c.activation,
                dropout=c.dropout,
                attention_dropout=c.attention_dropout,
            )
            for _ in range(c.num_self_attends_per_block)
        )

    def _run(self, block: nn.Module, *args: Tensor | None) -> Tensor:
        if self.config.activation_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(block, *args, use_reentrant=False)
        return block(*args)

    def forward(self, inputs: Tensor, input_mask: Tensor | None = None) -> Tensor:
        """``inputs (B, M, C)``, ``input_mask (B, M)`` bool (True = real) -> latents ``(B, N, D)``.

        Padded rows (``input_mask`` False) are zeroed before anything reads them, so whatever they
        hold (NaN, Inf, 1e30) cannot reach the latents.
        """
        check_inputs(inputs, input_mask, self.num_input_channels)
        check_dtype("inputs", inputs, self.latents.embeddings.dtype)
        if input_mask is not None:
            inputs = inputs.masked_fill(~input_mask[..., None], 0.0)
        check_finite("inputs", inputs)
        x = self.latents(inputs.shape[0]).to(inputs.dtype)
        if self.input_pooling is not None:
            x = x + self.input_pooling(segment_means(inputs, input_mask, self.config.num_latents))
        x = self._run(self.cross_attention, x, inputs, input_mask)
        for i in range(self.config.num_blocks):
            if i > 0 and self.cross_attention_shared is not None:
                x = self._run(self.cross_attention_shared, x, inputs, input_mask)
            for layer in self.self_attention:
                x = self._run(layer, x)
        return x
