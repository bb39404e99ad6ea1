"""Write: output queries ``(B, O, E)`` cross-attend to the latents ``(B, N, D)``, then project.

``PerceiverDecoder(config, num_latent_channels)(latents, queries, query_mask, chunk_size)``
returns ``(B, O, F)``. With ``chunk_size`` the queries are decoded ``chunk_size`` rows at a
time (each query row is independent of the others), so the attention and MLP activations
stay bounded however large O is; the result equals unchunked decoding.

``chunk_size="auto"`` (the default of every model) picks the chunk size by
:func:`auto_chunk_size`: without gradients, at most ``DECODE_BUDGET`` (2^24) attention logits
``heads × chunk × N`` and at most as many query-row values ``chunk × E × widening`` per example
and chunk (64 MiB per fp32 tensor and example), so peak memory does not grow with O. With
gradients enabled it decodes in one piece: autograd keeps every chunk's activations anyway.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from perceiver_io.config import Config, ConfigError
from perceiver_io.layers.blocks import Activation, CrossAttentionBlock
from perceiver_io.layers.init import variance_scaling_
from perceiver_io.queries import LazyQueries
from perceiver_io.validation import check_inputs, check_mask

__all__ = ["DecoderConfig", "PerceiverDecoder", "auto_chunk_size", "DECODE_BUDGET", "ChunkSize"]

DECODE_BUDGET = 2**24  # values per activation tensor per decoded chunk under chunk_size="auto"

ChunkSize = int | Literal["auto"] | None


def auto_chunk_size(num_queries: int, num_latents: int, num_heads: int, num_query_channels: int) -> int | None:
    """The ``chunk_size="auto"`` rule: ``None`` (one piece) when every per-example activation of the
    whole query set fits ``DECODE_BUDGET`` values, else the largest multiple of 256 (at least 256) that
    does. It does not depend on the batch size (so ``torch.export`` with a dynamic batch keeps one graph)."""
    per_query = max(num_heads * num_latents, num_query_channels)
    if num_queries * per_query <= DECODE_BUDGET:
        return None
    return max(256, DECODE_BUDGET // per_query // 256 * 256)


@dataclass
class DecoderConfig(Config):
    """Decoder hyperparameters; defaults are the official ``BasicDecoder``'s.

    ``num_query_channels=None`` (default): the width of the model's queries, derived from its
    query builder. ``num_output_channels=None`` means no final projection (``final_project=False``).
    ``attention_init="zeros"`` (not in the papers) starts the cross-attention's output projection at
    zero: with ``use_query_residual`` each row then starts as its own query (+ MLP), and what the
    latents add grows as it trains. It lets a per-pixel flow decoder learn from its queries where
    the default does not (docs/results.md §5).
    """

    num_query_channels: int | None = None
    num_output_channels: int | None = None
    num_heads: int = 1
    num_qk_channels: int | None = None
    num_v_channels: int | None = None
    shape_for_attention: Literal["kv", "q"] = "kv"
    widening_factor: int = 1
    use_query_residual: bool = False
    activation: Activation = "gelu_tanh"
    dropout: float = 0.0
    attention_dropout: float = 0.0
    output_init: Literal["variance_scaling", "zeros"] = "variance_scaling"
    attention_init: Literal["default", "zeros"] = "default"

    def validate(self) -> None:
        self._positive("num_heads", "widening_factor")
        self._positive(
            "num_query_channels", "num_output_channels", "num_qk_channels", "num_v_channels", allow_none=True
        )
        self._probability("dropout", "attention_dropout")
        self._divisible("num_qk_channels", self.num_qk_channels, "num_heads")
        self._divisible("num_v_channels", self.num_v_channels, "num_heads")


class PerceiverDecoder(nn.Module):
    """Queries ``(B, O, E)`` × latents ``(B, N, D)`` -> outputs ``(B, O, F)``."""

    def __init__(self, config: DecoderConfig, num_latent_channels: int, num_query_channels: int | None = None) -> None:
        """``num_query_channels``: the width of the queries the model builds; it fills
        ``config.num_query_channels`` when that is ``None`` and must equal it otherwise."""
        super().__init__()
        if config.num_query_channels is None:
            if num_query_channels is None:
                raise ConfigError("DecoderConfig.num_query_channels must be set: this model's query width is not known")
            config = config.replace(num_query_channels=num_query_channels)
        elif num_query_channels is not None and config.num_query_channels != num_query_channels:
            raise ConfigError(
                f"DecoderConfig.num_query_channels ({config.num_query_channels}) must equal the width of the "
                f"model's queries ({num_query_channels}); leave it None to derive it"
            )
        c = config
        self.config = config
        self.num_latent_channels = num_latent_channels
        self.cross_attention = CrossAttentionBlock(
            num_q_input_channels=c.num_query_channels,
            num_kv_input_channels=num_latent_channels,
            num_heads=c.num_heads,
            num_qk_channels=c.num_qk_channels,
            num_v_channels=c.num_v_channels,
            shape_for_attention=c.shape_for_attention,
            widening_factor=c.widening_factor,
            use_query_residual=c.use_query_residual,
            activation=c.activation,
            dropout=c.dropout,
            attention_dropout=c.attention_dropout,
        )
        if c.attention_init == "zeros":
            nn.init.zeros_(self.cross_attention.attention.o_proj.weight)
            if self.cross_attention.attention.o_proj.bias is not None:
                nn.init.zeros_(self.cross_attention.attention.o_proj.bias)
        self.projection: nn.Module = nn.Identity()
        if c.num_output_channels is not None:
            self.projection = nn.Linear(c.num_query_channels, c.num_output_channels)
            nn.init.zeros_(self.projection.bias)
            if c.output_init == "zeros":
                nn.init.zeros_(self.projection.weight)
            else:
                variance_scaling_(self.projection.weight)

    @property
    def num_output_channels(self) -> int:
        return self.config.num_output_channels or self.config.num_query_channels

    def _decode(self, latents: Tensor, queries: Tensor) -> Tensor:
        return self.projection(self.cross_attention(queries, latents))

    def forward(
        self,
        latents: Tensor,
        queries: Tensor | LazyQueries,
        query_mask: Tensor | None = None,
        chunk_size: ChunkSize = "auto",
        row_fn: Callable[[Tensor], Tensor] | None = None,
    ) -> Tensor:
        """Decode ``queries`` (a tensor or :class:`LazyQueries`) against ``latents``.

        Args:
            latents: ``(B, N, D)``.
            queries: ``(B, O, E)``, or lazily built queries for huge O.
            query_mask: ``(B, O)`` bool; ``False`` rows give zero outputs.
            chunk_size: decode at most this many queries at once (``None``: all at once; ``"auto"``:
                :func:`auto_chunk_size` without gradients, all at once with them).
            row_fn: a row-wise map ``(B, n, C) -> (B, n, C')`` applied to each decoded chunk (e.g.
                an output projection), so that only its narrower result is kept for all queries.
        """
        check_inputs(latents, None, self.num_latent_channels, name="latents")
        batch_size = latents.shape[0]
        if isinstance(queries, LazyQueries):
            num_queries = queries.num_queries
            get = queries.build
        else:
            check_inputs(queries, None, self.config.num_query_channels, name="queries")
            if queries.shape[0] != batch_size:
                raise ValueError(
                    f"queries have batch size {queries.shape[0]}, latents {batch_size}: pass (B, O, E) queries "
                    "with the latents' batch size"
                )
            num_queries = queries.shape[1]
            get = lambda s, e: queries[:, s:e]  # noqa: E731
        check_mask("query_mask", query_mask, batch_size, num_queries)
        if chunk_size == "auto":
            chunk_size = None
            if not torch.is_grad_enabled():
                c = self.config
                width = c.num_query_channels * c.widening_factor
                chunk_size = auto_chunk_size(num_queries, latents.shape[1], c.num_heads, width)
        elif chunk_size is not None and (
            not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size <= 0
        ):
            raise ValueError(f"chunk_size must be a positive integer, 'auto' or None, got {chunk_size!r}")

        dtype = self.cross_attention.q_norm.weight.dtype  # built queries (fp32 features) follow a bf16/fp16 model

        def decode(start: int, end: int) -> Tensor:
            q = get(start, end)
            rows = self._decode(latents, q if q.dtype == dtype else q.to(dtype))
            return rows if row_fn is None else row_fn(rows)

        if chunk_size is None or chunk_size >= num_queries:
            out = decode(0, num_queries)
        elif torch.is_grad_enabled():
            out = torch.cat([decode(s, min(s + chunk_size, num_queries)) for s in range(0, num_queries, chunk_size)], 1)
        else:  # inference: write chunks into one preallocated array, no concatenation copy
            out = None
            for s in range(0, num_queries, chunk_size):
                e = min(s + chunk_size, num_queries)
                piece = decode(s, e)
                if out is None:
                    out = piece.new_empty(batch_size, num_queries, piece.shape[-1])
                out[:, s:e] = piece
        if query_mask is not None:
            out = out.masked_fill(~query_mask[..., None], 0.0)
        return out
