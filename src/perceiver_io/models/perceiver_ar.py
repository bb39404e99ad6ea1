"""Perceiver AR (Hawthorne et al. 2022, arXiv 2202.07765): long-context autoregressive modelling.

Token ids ``(B, L)`` -> token embeddings ``(B, L, C)`` (positions: rotary in every attention, and
optionally the official fixed sinusoidal embedding added to the token embeddings) -> the last
``N = num_latents`` positions are the latents: each latent's initial state is ``Linear(C -> D)`` of
its own token's embedding -> one causal cross-attention from the latents to every position at or
before them (the latents' own positions included), respecting the input mask -> a causally masked
latent self-attention stack -> final LayerNorm and a zero-initialised ``Linear(D -> vocab_size)``:
logits ``(B, N, V)`` for the latent positions, i.e. the next-token distributions after each of the
last ``N`` tokens.

As the official code (``google-research/perceiver-ar``):

* rotary positions on the first ``rotary_fraction`` (0.5) of each head's query/key channels, with
  positions from the data: ``0..L-1`` over the real tokens of each row (``position_origin="end"``:
  the official terminal-relative positions, last real token 0, earlier tokens 1, 2, ...);
* latent ``i`` sees latent ``j`` iff ``j <= i``; padded latents are never seen (the diagonal always is);
* pre-LayerNorm blocks with separate query/key-value norms in the cross-attention, query residual,
  squared-ReLU MLPs (widening 4), dropout on attention and MLP outputs;
* next-token loss on the latent positions only, with z-loss (``z_loss · logsumexp²``, 1e-4).

Prompts shorter than ``N``: every position is a latent (``min(N, L)`` latents). The latents are the
last ``min(N, L)`` *columns* of the input array, so pad batches on the left (``generate`` converts
right padding itself). ``prefix_dropout`` (training only) removes that fraction of the prefix
positions (those before the latents) from the cross-attention's keys, drawn per example.

Cached generation (:meth:`PerceiverAR.generate`) follows the official ``sample_utils`` semantics,
see :meth:`PerceiverAR.generate`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from perceiver_io.adapters.base import AdaptedInputs, InputAdapter
from perceiver_io.adapters.text import NUM_SPECIAL_TOKENS, PAD_ID, VOCAB_SIZE, BytesTokenizer
from perceiver_io.config import Config, ConfigError
from perceiver_io.generation import (
    GenerationOutput,
    StopSequences,
    check_sampling_args,
    sample_next_token,
)
from perceiver_io.heads import OutputHead
from perceiver_io.layers.blocks import MLP, Activation
from perceiver_io.layers.init import variance_scaling_
from perceiver_io.layers.position import RotaryPositionEmbedding
from perceiver_io.models.base import PerceiverIOBase
from perceiver_io.registry import PretrainedInfo, register_model
from perceiver_io.validation import check_dtype, check_finite, check_inputs, check_mask, check_tensor

__all__ = [
    "PerceiverARConfig",
    "PerceiverAR",
    "PerceiverAROutput",
    "PerceiverAREncoder",
    "PerceiverARCache",
    "KVCache",
    "causal_lm_loss",
    "data_index",
    "rotary_positions",
    "sinusoidal_features",
]


# -- config ------------------------------------------------------------------------------------------


@dataclass
class PerceiverARConfig(Config):
    """Perceiver AR hyperparameters. Defaults: the official configs' widths (1,024 channels, 16 heads,
    widening 4, squared ReLU, rotary on half of each head's channels, dropout 0.1, z-loss 1e-4), 12
    self-attention layers, 1,024 latents, a 4,096-token context and the byte vocabulary (262).

    * ``num_input_channels`` C: token embedding width (keys/values of the cross-attention, whose
      qk and v widths are C, the official ``shape_for_attn='kv'``);
    * ``num_latent_channels`` D: latent width;
    * ``rotary_fraction``: rotated share of each head's query/key channels (0: no rotary);
      ``rotary_max_wavelength``: ``None`` = ``max_context_length`` (the official configs' choice);
    * ``absolute_positions="sinusoidal"``: also add the official fixed sinusoidal embedding of each
      token's position to its embedding (the official copy-task configs use these instead of rotary);
    * ``prefix_dropout``: fraction of the prefix positions dropped from the cross-attention in training.
    """

    vocab_size: int = VOCAB_SIZE
    max_context_length: int = 4096
    num_latents: int = 1024
    num_input_channels: int = 1024
    num_latent_channels: int = 1024
    num_self_attention_layers: int = 12
    num_cross_attention_heads: int = 16
    num_self_attention_heads: int = 16
    cross_attention_widening_factor: int = 4
    self_attention_widening_factor: int = 4
    activation: Activation = "squared_relu"
    dropout: float = 0.1
    attention_dropout: float = 0.0
    prefix_dropout: float = 0.0
    rotary_fraction: float = 0.5
    rotary_max_wavelength: float | None = None
    absolute_positions: Literal["none", "sinusoidal"] = "none"
    position_origin: Literal["start", "end"] = "start"
    z_loss: float = 1e-4
    embedding_init_scale: float = 1.0
    activation_checkpointing: bool = False

    def validate(self) -> None:
        self._positive(
            "vocab_size",
            "max_context_length",
            "num_latents",
            "num_input_channels",
            "num_latent_channels",
            "num_self_attention_layers",
            "num_cross_attention_heads",
            "num_self_attention_heads",
            "cross_attention_widening_factor",
            "self_attention_widening_factor",
        )
        self._probability("dropout", "attention_dropout", "prefix_dropout")
        name = type(self).__name__
        if self.num_latents > self.max_context_length:
            raise ConfigError(
                f"{name}.num_latents ({self.num_latents}) must be <= max_context_length ({self.max_context_length})"
            )
        self._divisible("num_input_channels", self.num_input_channels, "num_cross_attention_heads")
        self._divisible("num_latent_channels", self.num_latent_channels, "num_self_attention_heads")
        if not isinstance(self.rotary_fraction, (int, float)) or not 0.0 <= self.rotary_fraction <= 1.0:
            raise ConfigError(f"{name}.rotary_fraction must be in [0, 1], got {self.rotary_fraction!r}")
        w = self.rotary_max_wavelength
        if w is not None and (not isinstance(w, (int, float)) or w < self.max_context_length):
            raise ConfigError(
                f"{name}.rotary_max_wavelength ({w!r}) must be None or >= max_context_length "
                f"({self.max_context_length}), as in the official code"
            )
        for field in ("z_loss", "embedding_init_scale"):
            v = getattr(self, field)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0.0 <= v < float("inf"):
                raise ConfigError(f"{name}.{field} must be a finite non-negative number, got {v!r}")

    @property
    def max_wavelength(self) -> float:
        return float(self.rotary_max_wavelength or self.max_context_length)


# -- positions and masks -----------------------------------------------------------------------------


def data_index(input_mask: Tensor | None, batch_size: int, length: int, device=None) -> Tensor:
    """``(B, L)`` long: the index of each real token among its row's real tokens (``0, 1, ...``);
    padding repeats its neighbour's index (its value never matters)."""
    if input_mask is None:
        return torch.arange(length, device=device).expand(batch_size, length)
    return (input_mask.long().cumsum(-1) - 1).clamp_min(0)


def rotary_positions(input_mask: Tensor | None, batch_size: int, length: int, origin: str = "start", device=None):
    """``(B, L)`` rotary positions: the data index (``origin="start"``) or the distance to the row's
    last real token (``"end"``, the official terminal-relative positions)."""
    index = data_index(input_mask, batch_size, length, device)
    if origin == "start":
        return index
    last = index[:, -1:] if input_mask is None else (input_mask.long().sum(-1, keepdim=True) - 1).clamp_min(0)
    return last - index


def sinusoidal_features(positions: Tensor, num_channels: int, max_scale: float = 10_000.0) -> Tensor:
    """``positions (B, L)`` -> ``(B, L, C)``: ``[sin(p·f_i) | cos(p·f_i)]`` with ``f_i`` log-spaced from 1
    to ``1/max_scale`` over ``C/2`` frequencies (the official ``generate_sinusoidal_features``)."""
    half = num_channels // 2
    freqs = torch.exp(
        torch.arange(half, device=positions.device, dtype=torch.float32) * (-math.log(max_scale) / max(half - 1, 1))
    )
    angles = positions.to(torch.float32)[..., None] * freqs
    out = torch.cat([angles.sin(), angles.cos()], dim=-1)
    return F.pad(out, (0, num_channels - 2 * half))


def _bottom_right_causal(num_queries: int, num_keys: int, device) -> Tensor:
    """``(O, M)``: query ``i`` sees keys ``j <= i + M - O`` (the latents are the last ``O`` keys)."""
    q = torch.arange(num_queries, device=device)[:, None] + (num_keys - num_queries)
    return torch.arange(num_keys, device=device)[None, :] <= q


def _masked_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor, dropout_p: float = 0.0) -> Tensor:
    """SDPA with a boolean ``mask`` broadcastable to ``(B, H, O, M)`` (True = may attend); rows with no
    visible key give exactly zero (as the official ``attend``), never NaN."""
    empty = ~mask.any(dim=-1, keepdim=True)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask | empty, dropout_p=dropout_p)
    return out.masked_fill(empty, 0.0)


# -- key/value caches --------------------------------------------------------------------------------


@dataclass
class KVCache:
    """One attention layer's cached keys (rotated) and values, right-aligned in a fixed-size buffer.

    ``k (B, H, S, Dk)``, ``v (B, H, S, Dv)``, ``mask (B, S)`` (True = a valid entry). :meth:`append`
    rolls one entry in from the right and drops the leftmost (the official ``fixed_size_kv``).
    """

    k: Tensor
    v: Tensor
    mask: Tensor

    @property
    def capacity(self) -> int:
        return self.k.shape[2]

    def append(self, k: Tensor, v: Tensor, valid: Tensor | None = None) -> None:
        """Roll in ``k (B, H, 1, Dk)``, ``v (B, H, 1, Dv)`` (``valid (B, 1)``, default all valid)."""
        valid = torch.ones_like(self.mask[:, :1]) if valid is None else valid
        self.k = torch.cat([self.k[:, :, 1:], k.to(self.k.dtype)], dim=2)
        self.v = torch.cat([self.v[:, :, 1:], v.to(self.v.dtype)], dim=2)
        self.mask = torch.cat([self.mask[:, 1:], valid], dim=1)

    def padded(self, capacity: int) -> KVCache:
        """This cache right-aligned in a buffer of ``capacity`` entries (invalid zeros on the left)."""
        s = self.capacity
        if s > capacity:
            raise ValueError(f"cache holds {s} entries, more than its capacity {capacity}")
        pad = capacity - s
        return KVCache(
            F.pad(self.k, (0, 0, pad, 0)), F.pad(self.v, (0, 0, pad, 0)), F.pad(self.mask, (pad, 0), value=False)
        )

    def write_rows(self, rows: Tensor, other: KVCache) -> None:
        """Replace batch rows ``rows`` by ``other`` (already of this capacity)."""
        self.k = self.k.index_copy(0, rows, other.k.to(self.k.dtype))
        self.v = self.v.index_copy(0, rows, other.v.to(self.v.dtype))
        self.mask = self.mask.index_copy(0, rows, other.mask)


@dataclass
class PerceiverARCache:
    """Per-layer caches: ``cross`` (one entry per input position), ``layers`` (one entry per latent)."""

    cross: KVCache
    layers: list[KVCache]

    def padded(self, cross_capacity: int, latent_capacity: int) -> PerceiverARCache:
        return PerceiverARCache(self.cross.padded(cross_capacity), [c.padded(latent_capacity) for c in self.layers])

    def write_rows(self, rows: Tensor, other: PerceiverARCache) -> None:
        self.cross.write_rows(rows, other.cross)
        for mine, theirs in zip(self.layers, other.layers, strict=True):
            mine.write_rows(rows, theirs)


# -- layers ------------------------------------------------------------------------------------------


class RotaryAttention(nn.Module):
    """Multi-head attention whose queries and keys are rotated (rotary embedding) on the first
    ``rotary_fraction`` of each head's channels; keys/values are computed separately (cacheable)."""

    def __init__(
        self,
        num_heads: int,
        num_q_input_channels: int,
        num_kv_input_channels: int,
        num_qk_channels: int,
        num_v_channels: int,
        num_output_channels: int,
        rotary_fraction: float,
        max_wavelength: float,
        attention_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        for name, value in (("num_qk_channels", num_qk_channels), ("num_v_channels", num_v_channels)):
            if value % num_heads:
                raise ValueError(f"{name} ({value}) must be divisible by num_heads ({num_heads})")
        self.num_heads = num_heads
        self.attention_dropout = attention_dropout
        self.q_proj = nn.Linear(num_q_input_channels, num_qk_channels)
        self.k_proj = nn.Linear(num_kv_input_channels, num_qk_channels)
        self.v_proj = nn.Linear(num_kv_input_channels, num_v_channels)
        self.o_proj = nn.Linear(num_v_channels, num_output_channels)
        for layer in (self.q_proj, self.k_proj, self.v_proj, self.o_proj):
            variance_scaling_(layer.weight)
            nn.init.zeros_(layer.bias)
        head_dim = num_qk_channels // num_heads
        rotated = int(head_dim * rotary_fraction) // 2 * 2  # official: floor to even
        self.rotary = RotaryPositionEmbedding(rotated, max_wavelength) if rotated > 0 else None

    def _heads(self, x: Tensor) -> Tensor:
        b, n, c = x.shape
        return x.view(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)

    def _rotate(self, x: Tensor, positions: Tensor) -> Tensor:
        return x if self.rotary is None else self.rotary(x, positions)

    def keys_values(self, x_kv: Tensor, positions: Tensor) -> tuple[Tensor, Tensor]:
        """``x_kv (B, M, Ckv)``, ``positions (B, M)`` -> rotated keys ``(B, H, M, Dk)``, values ``(B, H, M, Dv)``."""
        return self._rotate(self._heads(self.k_proj(x_kv)), positions), self._heads(self.v_proj(x_kv))

    def forward(self, x_q: Tensor, positions: Tensor, k: Tensor, v: Tensor, mask: Tensor) -> Tensor:
        """``x_q (B, O, Cq)`` at ``positions (B, O)`` attend to ``k``/``v``; ``mask`` broadcastable to
        ``(B, H, O, M)`` -> ``(B, O, C_out)``."""
        q = self._rotate(self._heads(self.q_proj(x_q)), positions)
        dropout_p = self.attention_dropout if self.training else 0.0
        out = _masked_attention(q, k.to(q.dtype), v.to(q.dtype), mask, dropout_p)
        b, _, o, _ = out.shape
        return self.o_proj(out.transpose(1, 2).reshape(b, o, -1))


class ARCrossAttention(nn.Module):
    """Latents ``(B, N, D)`` attend to the inputs ``(B, M, C)`` (separate pre-LayerNorms), query residual, MLP."""

    fsdp_forward_methods = ("keys_values",)  # called by the encoder outside forward: FSDP2 must gather for it

    def __init__(self, c: PerceiverARConfig) -> None:
        super().__init__()
        d, ci = c.num_latent_channels, c.num_input_channels
        self.q_norm = nn.LayerNorm(d)
        self.kv_norm = nn.LayerNorm(ci)
        self.attention = RotaryAttention(
            c.num_cross_attention_heads, d, ci, ci, ci, d, c.rotary_fraction, c.max_wavelength, c.attention_dropout
        )
        self.dropout = nn.Dropout(c.dropout)
        self.mlp_norm = nn.LayerNorm(d)
        self.mlp = MLP(d, c.cross_attention_widening_factor, c.activation, c.dropout)

    def keys_values(self, inputs: Tensor, positions: Tensor) -> tuple[Tensor, Tensor]:
        return self.attention.keys_values(self.kv_norm(inputs), positions)

    def forward(self, x: Tensor, positions: Tensor, k: Tensor, v: Tensor, mask: Tensor) -> Tensor:
        x = x + self.dropout(self.attention(self.q_norm(x), positions, k, v, mask))
        return x + self.mlp(self.mlp_norm(x))


class ARSelfAttention(nn.Module):
    """Pre-LayerNorm self-attention over the latents ``(B, N, D)`` plus MLP; optionally over a cache."""

    def __init__(self, c: PerceiverARConfig) -> None:
        super().__init__()
        d = c.num_latent_channels
        self.norm = nn.LayerNorm(d)
        self.attention = RotaryAttention(
            c.num_self_attention_heads, d, d, d, d, d, c.rotary_fraction, c.max_wavelength, c.attention_dropout
        )
        self.dropout = nn.Dropout(c.dropout)
        self.mlp_norm = nn.LayerNorm(d)
        self.mlp = MLP(d, c.self_attention_widening_factor, c.activation, c.dropout)

    def forward(
        self, x: Tensor, positions: Tensor, mask: Tensor | None, cache: KVCache | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """-> ``(x, k, v)`` with this call's keys/values; with ``cache``, they are rolled into it and the
        queries attend to its valid entries (``mask`` is then ignored)."""
        h = self.norm(x)
        k, v = self.attention.keys_values(h, positions)
        if cache is not None:
            cache.append(k, v)
            keys, values, mask = cache.k, cache.v, cache.mask[:, None, None, :]
        else:
            keys, values = k, v
        x = x + self.dropout(self.attention(h, positions, keys, values, mask))
        return x + self.mlp(self.mlp_norm(x)), k, v


# -- encoder -----------------------------------------------------------------------------------------


class PerceiverAREncoder(nn.Module):
    """Token embeddings ``(B, L, C)`` -> latents ``(B, n, D)`` for the last ``n = min(num_latents, L)`` positions."""

    def __init__(self, config: PerceiverARConfig) -> None:
        super().__init__()
        c = config
        self.config = config
        self.num_input_channels = c.num_input_channels
        self.latent_projection = nn.Linear(c.num_input_channels, c.num_latent_channels)  # official ``z_linear``
        variance_scaling_(self.latent_projection.weight)
        nn.init.zeros_(self.latent_projection.bias)
        self.cross_attention = ARCrossAttention(c)
        self.self_attention = nn.ModuleList(ARSelfAttention(c) for _ in range(c.num_self_attention_layers))

    def forward(
        self,
        inputs: Tensor,
        input_mask: Tensor | None = None,
        *,
        positions: Tensor | None = None,
        num_latents: int | None = None,
        latent_mask: Tensor | None = None,
        max_key_distance: int | None = None,
        return_cache: bool = False,
    ) -> Tensor | tuple[Tensor, PerceiverARCache]:
        """``inputs (B, L, C)``, ``input_mask (B, L)`` bool (True = real) -> latents ``(B, n, D)``.

        Args:
            positions: ``(B, L)`` rotary positions (default: :func:`rotary_positions` of the mask).
            num_latents: latents to use instead of ``config.num_latents`` (capped at ``L``).
            latent_mask: ``(B, n)`` bool; ``False`` makes a latent slot a plain input (its key joins the
                cross-attention, it is hidden from the latents and its output is meaningless).
            max_key_distance: latent ``i`` sees input ``j`` only if ``index_i - index_j <`` this
                (the sliding window of cached generation beyond the context).
            return_cache: also return the layers' keys/values (:class:`PerceiverARCache`).
        """
        c = self.config
        check_inputs(inputs, input_mask, self.num_input_channels)
        check_dtype("inputs", inputs, self.latent_projection.weight.dtype)
        b, m, _ = inputs.shape
        if input_mask is not None:
            inputs = inputs.masked_fill(~input_mask[..., None], 0.0)
        check_finite("inputs", inputs)
        n = min(c.num_latents if num_latents is None else num_latents, m)
        if n < 1:
            raise ValueError(f"num_latents must be at least 1, got {num_latents}")
        device = inputs.device
        if positions is None:
            positions = rotary_positions(input_mask, b, m, c.position_origin, device)
        inputs = self._add_absolute_positions(inputs, positions)
        check_mask("latent_mask", latent_mask, b, n)
        valid = input_mask
        lat_valid = None if input_mask is None else input_mask[:, m - n :]
        if latent_mask is not None:
            lat_valid = latent_mask if lat_valid is None else lat_valid & latent_mask

        # keys/values of the cross-attention: the prefix (maybe subsampled) followed by the latents' inputs
        kv, kv_pos, kv_valid = inputs, positions, valid
        index = data_index(input_mask, b, m, device) if max_key_distance is not None else None
        p = m - n
        if self.training and c.prefix_dropout > 0 and p > 0 and not return_cache:
            keep = p - int(p * c.prefix_dropout)
            kept = torch.rand(b, p, device=device).argsort(dim=1)[:, :keep].sort(dim=1).values  # (B, K)
            kv = torch.cat(
                [inputs[:, :p].gather(1, kept[..., None].expand(-1, -1, inputs.shape[-1])), inputs[:, p:]], 1
            )
            kv_pos = torch.cat([positions[:, :p].gather(1, kept), positions[:, p:]], 1)
            if valid is not None:
                kv_valid = torch.cat([valid[:, :p].gather(1, kept), valid[:, p:]], 1)
            if index is not None:
                index = torch.cat([index[:, :p].gather(1, kept), index[:, p:]], 1)
        num_kv = kv.shape[1]
        cross_mask = _bottom_right_causal(n, num_kv, device)[None]  # (1, n, M')
        if kv_valid is not None:
            cross_mask = cross_mask & kv_valid[:, None, :]
        if index is not None:
            cross_mask = cross_mask & ((index[:, -n:, None] - index[:, None, :]) < max_key_distance)
        self_mask = _bottom_right_causal(n, n, device)[None]
        if lat_valid is not None:
            self_mask = self_mask & lat_valid[:, None, :]
        self_mask = self_mask | torch.eye(n, dtype=torch.bool, device=device)  # official: diagonal always on

        lat_pos = positions[:, m - n :]
        k, v = self.cross_attention.keys_values(kv, kv_pos)
        x = self.latent_projection(inputs[:, m - n :])
        x = self._run(self.cross_attention, x, lat_pos, k, v, cross_mask[:, None])
        caches = []
        if return_cache:
            caches.append(KVCache(k, v, kv_valid if kv_valid is not None else torch.ones_like(cross_mask[:, -1])))
        for layer in self.self_attention:
            x, k, v = self._run(layer, x, lat_pos, self_mask[:, None])
            if return_cache:
                caches.append(KVCache(k, v, lat_valid if lat_valid is not None else torch.ones_like(self_mask[:, -1])))
        if return_cache:
            return x, PerceiverARCache(caches[0], caches[1:])
        return x

    def _add_absolute_positions(self, inputs: Tensor, positions: Tensor) -> Tensor:
        if self.config.absolute_positions == "none":
            return inputs
        return inputs + sinusoidal_features(positions, inputs.shape[-1]).to(inputs.dtype)

    def _run(self, block: nn.Module, *args: Any):
        if self.config.activation_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(block, *args, use_reentrant=False)
        return block(*args)

    def step(self, inputs: Tensor, positions: Tensor, cache: PerceiverARCache) -> Tensor:
        """One new token per row: ``inputs (B, 1, C)`` at ``positions (B, 1)``; its keys/values are rolled
        into every layer's cache and it is the single query -> its latent ``(B, 1, D)``."""
        inputs = self._add_absolute_positions(inputs, positions)
        k, v = self.cross_attention.keys_values(inputs, positions)
        cache.cross.append(k, v)
        x = self.latent_projection(inputs)
        x = self.cross_attention(x, positions, cache.cross.k, cache.cross.v, cache.cross.mask[:, None, None, :])
        for layer, layer_cache in zip(self.self_attention, cache.layers, strict=True):
            x, _, _ = layer(x, positions, None, cache=layer_cache)
        return x


# -- input adapter, head, output ---------------------------------------------------------------------


class TokenInputAdapter(InputAdapter):
    """Token ids ``(B, L)`` -> embeddings ``(B, L, C)``; positions are applied in attention (rotary)."""

    def __init__(self, vocab_size: int, num_channels: int, max_context_length: int, init_scale: float = 1.0) -> None:
        super().__init__()
        self.num_channels = num_channels
        self.vocab_size = vocab_size
        self.max_context_length = max_context_length
        self.token_embedding = nn.Embedding(vocab_size, num_channels)
        if init_scale > 0:
            nn.init.trunc_normal_(self.token_embedding.weight, std=init_scale, a=-2 * init_scale, b=2 * init_scale)

    def check_input_ids(self, input_ids: Tensor, name: str = "input_ids", max_length: int | None = -1) -> None:
        """``(B, L)`` integer ids in ``[0, vocab_size)``, ``L >= 1`` (and ``<= max_length``; -1: the context)."""
        max_length = self.max_context_length if max_length == -1 else max_length
        check_tensor(name, input_ids, 2, "(B, L)")
        if input_ids.is_floating_point() or input_ids.is_complex() or input_ids.dtype == torch.bool:
            raise TypeError(f"{name} must be an integer tensor, got dtype {input_ids.dtype}")
        if input_ids.shape[0] == 0 or input_ids.shape[1] == 0:
            raise ValueError(f"{name} must not be empty, got shape {tuple(input_ids.shape)}")
        if max_length is not None and input_ids.shape[1] > max_length:
            raise ValueError(
                f"{name} has length {input_ids.shape[1]}, more than max_context_length ({max_length}); "
                "generate() truncates prompts to the last max_context_length tokens"
            )
        if not torch.compiler.is_compiling():
            lo, hi = int(input_ids.min()), int(input_ids.max())
            if lo < 0 or hi >= self.vocab_size:
                raise ValueError(f"{name} must be in [0, {self.vocab_size}), got values in [{lo}, {hi}]")

    def embed(self, input_ids: Tensor) -> Tensor:
        return self.token_embedding(input_ids.long())

    def forward(self, input_ids: Tensor) -> AdaptedInputs:
        self.check_input_ids(input_ids)
        return AdaptedInputs(self.embed(input_ids), index_shape=(input_ids.shape[1],))

    def example_inputs(self, batch_size: int = 1, length: int | None = None) -> Tensor:
        """Random non-special ids ``(B, length)`` (default: the context)."""
        v = self.vocab_size
        length = self.max_context_length if length is None else length
        return torch.randint(min(NUM_SPECIAL_TOKENS, v - 1), v, (batch_size, length))


@dataclass
class PerceiverAROutput:
    """``logits (B, n, V)``: next-token logits after each of the last ``n`` positions; ``latents (B, n, D)``."""

    logits: Tensor
    latents: Tensor


class CausalLanguageHead(OutputHead):
    """Final LayerNorm and a zero-initialised ``Linear(D, V)`` on every latent (no query decoder)."""

    uses_decoder = False

    def __init__(self, num_latent_channels: int, vocab_size: int) -> None:
        super().__init__()
        self.query_builder = None
        self.norm = nn.LayerNorm(num_latent_channels)
        self.projection = nn.Linear(num_latent_channels, vocab_size)
        nn.init.zeros_(self.projection.weight)
        nn.init.zeros_(self.projection.bias)

    def logits(self, latents: Tensor) -> Tensor:
        return self.projection(self.norm(latents))

    def finish(self, rows, latents, inputs, indices) -> PerceiverAROutput:
        return PerceiverAROutput(logits=self.logits(latents), latents=latents)


def causal_lm_loss(
    logits: Tensor, targets: Tensor, mask: Tensor | None = None, z_loss: float = 0.0, reduction: str = "mean"
) -> Tensor:
    """Cross-entropy plus ``z_loss · logsumexp(logits)²`` per position (in fp32).

    ``logits (B, n, V)``, ``targets (B, n)``, ``mask (B, n)`` bool (False = not scored); ``reduction``:
    ``"mean"`` (over scored positions), ``"sum"`` or ``"none"`` (``(B, n)``, zero where not scored).
    """
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    lf = logits.float()
    lse = lf.logsumexp(-1)
    per = lse - lf.gather(-1, targets.long()[..., None]).squeeze(-1)
    if z_loss:
        per = per + z_loss * lse.square()
    if mask is not None:
        per = per.masked_fill(~mask, 0.0)
    if reduction == "none":
        return per
    total = per.sum()
    if reduction == "sum":
        return total
    count = per.numel() if mask is None else mask.sum()
    return total / torch.as_tensor(count, device=total.device).clamp_min(1)


# -- the model ---------------------------------------------------------------------------------------


class PerceiverAR(PerceiverIOBase):
    """``model(input_ids (B, L), input_mask (B, L))`` -> :class:`PerceiverAROutput` (logits ``(B, n, V)``
    for the last ``n = min(num_latents, L)`` positions). ``L <= max_context_length``; pad on the left."""

    config_class = PerceiverARConfig
    config: PerceiverARConfig

    def __init__(self, config: PerceiverARConfig) -> None:
        super().__init__(config)
        c = config
        self.input_adapter = TokenInputAdapter(
            c.vocab_size, c.num_input_channels, c.max_context_length, c.embedding_init_scale
        )
        self.encoder = PerceiverAREncoder(c)
        self.decoder = None
        self.head = CausalLanguageHead(c.num_latent_channels, c.vocab_size)

    def example_inputs(self, batch_size: int = 1) -> dict[str, Any]:
        """Random ids ``(B, 2·N)`` (a prefix and the latents, at most the context); 128 tokens for models
        with more than 256 latents, so that the published sizes run in seconds."""
        c = self.config
        length = min(c.max_context_length, 2 * c.num_latents if c.num_latents <= 256 else 128)
        return {"inputs": self.input_adapter.example_inputs(batch_size, length)}

    # -- loss ------------------------------------------------------------------------------------------
    def loss(
        self,
        input_ids: Tensor,
        input_mask: Tensor | None = None,
        *,
        z_loss: float | None = None,
        reduction: str = "mean",
    ) -> Tensor:
        """Next-token loss on the latent positions of ``input_ids (B, L + 1)``: the inputs are
        ``input_ids[:, :-1]``, the targets ``input_ids[:, 1:]``; only the last ``min(N, L)`` targets are
        scored, and only where both the target and its input are real (``input_mask``).
        ``z_loss`` defaults to ``config.z_loss``; see :func:`causal_lm_loss`."""
        self.input_adapter.check_input_ids(input_ids, max_length=self.config.max_context_length + 1)
        if input_ids.shape[1] < 2:
            raise ValueError(f"input_ids needs at least 2 tokens (an input and its target), got {input_ids.shape[1]}")
        check_mask("input_mask", input_mask, *input_ids.shape)
        out = self(input_ids[:, :-1], None if input_mask is None else input_mask[:, :-1])
        n = out.logits.shape[1]
        targets = input_ids[:, 1:][:, -n:]
        mask = None if input_mask is None else (input_mask[:, 1:] & input_mask[:, :-1])[:, -n:]
        z = self.config.z_loss if z_loss is None else z_loss
        return causal_lm_loss(out.logits, targets, mask, z, reduction)

    # -- generation ------------------------------------------------------------------------------------
    def _window_pass(
        self,
        ids: Tensor,
        mask: Tensor,
        num_latents: int,
        latent_mask: Tensor | None = None,
        max_key_distance: int | None = None,
        return_cache: bool = False,
    ):
        """Run the encoder on a left-aligned window ``ids (B, W)`` with ``mask``; rotary positions
        restart at the window's first real token. -> last logits ``(B, V)`` (and the cache)."""
        b, w = ids.shape
        x = self.input_adapter.embed(ids).to(self.head.projection.weight.dtype)
        pos = rotary_positions(mask, b, w, self.config.position_origin, ids.device)
        out = self.encoder(
            x,
            mask,
            positions=pos,
            num_latents=num_latents,
            latent_mask=latent_mask,
            max_key_distance=max_key_distance,
            return_cache=return_cache,
        )
        latents, cache = out if return_cache else (out, None)
        return self.head.logits(latents[:, -1]), cache

    @torch.no_grad()
    def generate(
        self,
        input_ids: Tensor,
        max_new_tokens: int = 32,
        *,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        use_cache: bool = True,
        stop_sequences: Sequence[Sequence[int] | str] | None = None,
        eos_token_id: int | None = None,
        pad_token_id: int = PAD_ID,
        input_mask: Tensor | None = None,
        attention_mask: Tensor | None = None,
        generator: torch.Generator | None = None,
        streamer: Callable[[Tensor], None] | None = None,
        output_logits: bool = False,
    ) -> GenerationOutput:
        """Continue each row of ``input_ids (B, L)`` by up to ``max_new_tokens`` tokens.

        Prompts: each row's real tokens (``input_mask``/``attention_mask``, True = real; left, right or
        any padding) are moved to the right end (left padding) so every row continues from its own last
        real token; prompts are truncated to their last ``max_context_length`` tokens.

        Semantics (the official ``sample_utils``, ``condition_on='most_recent_only'``), per row: the
        prompt is run once with ``min(N, P)`` latents. Each new token is then one query through every
        layer: its keys/values are rolled into the cross-attention cache (the last
        ``max_context_length`` tokens, oldest evicted) and into each self-attention cache (``N``
        latents). When a row's self-attention caches already hold ``N`` latents, its next token instead
        recomputes the row from scratch: the model runs on the last ``max_context_length`` tokens with
        ``N/2`` latents (rotary positions restart at that window), refilling half of the latent caches,
        and continues. A latent therefore never attends to more than ``N`` latents or
        ``max_context_length`` inputs; sliding the latent window instead would create latent-to-latent
        dependencies never seen in training (the official code's reason). ``use_cache=False`` computes
        the same thing by re-running the model every step on the row's window since its last recompute
        (latents: the tokens since then; each latent sees at most ``max_context_length`` inputs).

        Decoding: greedy, or sampling with ``temperature`` then ``top_k`` then ``top_p`` (nucleus) using
        ``generator``. A row stops after ``eos_token_id`` or any of ``stop_sequences`` (token-id lists;
        strings are UTF-8 bytes for the byte vocabulary); the stop is included, later positions hold
        ``pad_token_id``. ``streamer`` is called with the ``(B,)`` new tokens of every step.

        Returns:
            :class:`perceiver_io.generation.GenerationOutput` (``sequences`` are the left-padded, truncated
            prompts followed by the new tokens).
        """
        c = self.config
        if input_mask is not None and attention_mask is not None:
            raise ValueError("give input_mask or attention_mask, not both")
        mask = input_mask if input_mask is not None else attention_mask
        self.input_adapter.check_input_ids(input_ids, max_length=None)
        check_mask("input_mask", mask, *input_ids.shape)
        if not isinstance(max_new_tokens, int) or isinstance(max_new_tokens, bool) or max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be a non-negative integer, got {max_new_tokens!r}")
        check_sampling_args(do_sample, temperature, top_k, top_p)
        if not 0 <= pad_token_id < c.vocab_size:
            raise ValueError(f"pad_token_id must be in [0, {c.vocab_size}), got {pad_token_id}")
        if use_cache and c.absolute_positions != "none" and c.position_origin == "end":
            raise ValueError(
                "use_cache=True needs positions from the start of the data with absolute_positions: terminal-"
                "relative positions change with every token (use position_origin='start' or use_cache=False)"
            )
        stops = StopSequences(_encode_stops(stop_sequences, c.vocab_size), eos_token_id, c.vocab_size)
        device = self.head.projection.weight.device
        ids = input_ids.to(device).long()
        mask = torch.ones_like(ids, dtype=torch.bool) if mask is None else mask.to(device)
        if not bool(mask.any(dim=1).all()):
            raise ValueError("every row of input_ids needs at least one real token (input_mask all False in a row)")
        was_training = self.training
        self.eval()
        try:
            sampling = {"do_sample": do_sample, "temperature": temperature, "top_k": top_k, "top_p": top_p}
            return self._generate(
                ids, mask, max_new_tokens, sampling, generator, use_cache, stops, pad_token_id, streamer, output_logits
            )
        finally:
            self.train(was_training)

    def _generate(
        self, ids, mask, max_new_tokens, sampling, generator, use_cache, stops, pad_token_id, streamer, output_logits
    ) -> GenerationOutput:
        c = self.config
        n_lat, ctx = c.num_latents, c.max_context_length
        reset = max(1, n_lat // 2)
        # left-align every row's real tokens (stable), truncate to the context, drop all-pad columns
        order = mask.long().argsort(dim=1, stable=True)
        seq, seq_mask = ids.gather(1, order), mask.gather(1, order)
        seq, seq_mask = seq[:, -ctx:], seq_mask[:, -ctx:]
        first = int((~seq_mask).all(dim=0).long().cumprod(0).sum())
        seq, seq_mask = seq[:, first:], seq_mask[:, first:]
        seq = seq.masked_fill(~seq_mask, pad_token_id)
        b, prompt_len = seq.shape
        device = seq.device
        # per-row schedule: latents since the last (re)computation, and the first column of that window
        num_latents = seq_mask.sum(1).clamp_max(n_lat)
        ctx_start = torch.zeros(b, dtype=torch.long, device=device)
        sign = 1 if c.position_origin == "start" else -1
        # the prompt pass
        logits, cache = self._window_pass(seq, seq_mask, min(n_lat, prompt_len), return_cache=use_cache)
        if use_cache:
            cache = cache.padded(ctx, n_lat)
            last_pos = rotary_positions(seq_mask, b, prompt_len, c.position_origin, device)[:, -1]
        new_tokens, all_logits = [], []
        finished = torch.zeros(b, dtype=torch.bool, device=device)
        num_new = torch.full((b,), -1, dtype=torch.long, device=device)  # -1: not stopped
        for step in range(max_new_tokens):
            if output_logits:
                all_logits.append(logits)
            token = sample_next_token(logits, **sampling, generator=generator)
            seq = torch.cat([seq, token[:, None]], dim=1)
            seq_mask = torch.cat([seq_mask, torch.ones_like(seq_mask[:, :1])], dim=1)
            shown = token.masked_fill(finished, pad_token_id)
            new_tokens.append(shown)
            stopped = stops.matches(seq, seq_mask) & ~finished
            num_new = num_new.masked_fill(stopped, step + 1)
            finished = finished | stopped
            if streamer is not None:
                streamer(shown)
            if step == max_new_tokens - 1 or bool(finished.all()):
                break
            # the schedule for the new token, then its logits
            t = seq.shape[1]
            recompute = num_latents >= n_lat
            num_latents = torch.where(recompute, torch.full_like(num_latents, reset), num_latents + 1)
            ctx_start = torch.where(recompute, torch.full_like(ctx_start, max(t - ctx, 0)), ctx_start)
            if not use_cache:
                logits = self._uncached_logits(seq, seq_mask, num_latents, ctx_start)
                continue
            everyone = bool(recompute.all())
            last_pos = last_pos + sign
            if not everyone:
                x = self.input_adapter.embed(token[:, None]).to(self.head.projection.weight.dtype)
                logits = self.head.logits(self.encoder.step(x, last_pos[:, None], cache)[:, 0])
            if bool(recompute.any()):
                rows = recompute.nonzero()[:, 0]
                w = min(t, ctx)
                win, win_mask = seq[rows, -w:], seq_mask[rows, -w:]
                row_logits, row_cache = self._window_pass(win, win_mask, reset, return_cache=True)
                row_cache = row_cache.padded(ctx, n_lat)
                row_pos = rotary_positions(win_mask, len(rows), w, c.position_origin, device)[:, -1]
                if everyone:
                    cache, logits, last_pos = row_cache, row_logits, row_pos
                else:
                    cache.write_rows(rows, row_cache)
                    logits = logits.index_copy(0, rows, row_logits.to(logits.dtype))
                    last_pos = last_pos.index_copy(0, rows, row_pos)
        tokens = torch.stack(new_tokens, 1) if new_tokens else seq.new_zeros(b, 0)
        num_new = torch.where(num_new < 0, tokens.shape[1], num_new)
        token_mask = torch.arange(tokens.shape[1], device=device)[None] < num_new[:, None]
        tokens = tokens.masked_fill(~token_mask, pad_token_id)
        return GenerationOutput(
            sequences=torch.cat([seq[:, :prompt_len], tokens], 1),
            sequence_mask=torch.cat([seq_mask[:, :prompt_len], token_mask], 1),
            new_tokens=tokens,
            num_new_tokens=num_new,
            logits=torch.stack(all_logits, 1) if output_logits and all_logits else None,
        )

    def _uncached_logits(self, seq: Tensor, seq_mask: Tensor, num_latents: Tensor, ctx_start: Tensor) -> Tensor:
        """Re-run the model on every row's window since its last recompute (see :meth:`generate`)."""
        t = seq.shape[1]
        w = int((t - ctx_start).max())
        cols = torch.arange(t - w, t, device=seq.device)
        win, win_mask = seq[:, -w:], seq_mask[:, -w:] & (cols[None] >= ctx_start[:, None])
        n = int(num_latents.max())
        latent_mask = torch.arange(n, device=seq.device)[None] >= (n - num_latents)[:, None]
        logits, _ = self._window_pass(win, win_mask, n, latent_mask, self.config.max_context_length)
        return logits


def _encode_stops(stop_sequences, vocab_size: int) -> list[list[int]]:
    out = []
    for s in stop_sequences or []:
        if isinstance(s, str):
            if vocab_size != VOCAB_SIZE:
                raise ValueError("string stop sequences need the byte vocabulary; pass token-id lists")
            s = BytesTokenizer().encode(s, parse_mask=False)
        out.append([int(i) for i in s])
    return out


# -- presets -----------------------------------------------------------------------------------------


@register_model("test-perceiver-ar", PerceiverAR, info=PretrainedInfo(tiny=True))
def test_perceiver_ar() -> PerceiverARConfig:
    """Tiny: bytes, 32-token context, 8 latents, C = D = 32, 2 self-attention layers, 4 heads."""
    return PerceiverARConfig(
        max_context_length=32,
        num_latents=8,
        num_input_channels=32,
        num_latent_channels=32,
        num_self_attention_layers=2,
        num_cross_attention_heads=4,
        num_self_attention_heads=4,
        dropout=0.0,
        prefix_dropout=0.25,
    )


@register_model("perceiver-ar-bytes-small", PerceiverAR)
def perceiver_ar_bytes_small() -> PerceiverARConfig:
    """CPU-sized byte LM: 4,096-byte context, 256 latents × 256 channels, 4 self-attention layers, 8 heads
    (4.2M parameters)."""
    return PerceiverARConfig(
        max_context_length=4096,
        num_latents=256,
        num_input_channels=256,
        num_latent_channels=256,
        num_self_attention_layers=4,
        num_cross_attention_heads=8,
        num_self_attention_heads=8,
    )


@register_model(
    "perceiver-ar-copy-32",
    PerceiverAR,
    info=PretrainedInfo(extra={"source": "official config random_mirrored_32"}),
)
def perceiver_ar_copy_32() -> PerceiverARConfig:
    """The official CPU copy-task config ``random_mirrored_32``: context 32, 16 latents, 1 self-attention
    layer, 1,024 channels, 16 heads, absolute sinusoidal positions (no rotary)."""
    return PerceiverARConfig(
        max_context_length=32,
        num_latents=16,
        num_self_attention_layers=1,
        rotary_fraction=0.0,
        absolute_positions="sinusoidal",
    )


@register_model(
    "perceiver-ar-copy-131072",
    PerceiverAR,
    info=PretrainedInfo(extra={"source": "official config random_mirrored_131072"}),
)
def perceiver_ar_copy_131072() -> PerceiverARConfig:
    """The official long copy-task config ``random_mirrored_131072``: 131,072 positions, 1,024 latents,
    6 self-attention layers, 1,024 channels, absolute sinusoidal positions (no rotary)."""
    return PerceiverARConfig(
        max_context_length=131072,
        num_latents=1024,
        num_self_attention_layers=6,
        rotary_fraction=0.0,
        absolute_positions="sinusoidal",
    )


@register_model(
    "perceiver-ar-imagenet64",
    PerceiverAR,
    info=PretrainedInfo(
        paper_params="770M",
        extra={
            "source": "official config imagenet_w_positions; positions there are learned absolute "
            "(x, y, channel) embeddings, here rotary over the raster index",
            "reported": "ImageNet 64x64: 3.40 bits/dim (secondary source)",
        },
    ),
)
def perceiver_ar_imagenet64() -> PerceiverARConfig:
    """ImageNet 64×64 (``imagenet_w_positions``): context 12,416, 1,024 latents, 60 self-attention layers,
    1,024 channels, 16 heads; pixel channel values as byte ids (770M)."""
    return PerceiverARConfig(max_context_length=12416, num_latents=1024, num_self_attention_layers=60)


@register_model(
    "perceiver-ar-pg19",
    PerceiverAR,
    info=PretrainedInfo(
        paper_params="974M",
        extra={
            "source": "size-matched: the paper's PG-19 depth, latents, context and tokenizer are unverified; "
            "official widths with a 32k vocabulary and 71 layers give the reported 974M",
            "reported": "PG-19 test perplexity 28.9 (secondary source)",
        },
    ),
)
def perceiver_ar_pg19() -> PerceiverARConfig:
    """PG-19 books, size-matched to the reported 974M: 32,000-token vocabulary, 4,096 context, 2,048 latents,
    71 self-attention layers of 1,024 channels (configuration unverified)."""
    return PerceiverARConfig(vocab_size=32000, max_context_length=4096, num_latents=2048, num_self_attention_layers=71)


@register_model(
    "perceiver-ar-wikitext103",
    PerceiverAR,
    info=PretrainedInfo(
        paper_params="358M",
        extra={
            "source": "size-matched: the paper's WikiText-103 configuration is unverified; official widths, "
            "a 32k vocabulary and 22 layers give 356M",
            "reported": "WikiText-103 test perplexity 18.4 (secondary source)",
        },
    ),
)
def perceiver_ar_wikitext103() -> PerceiverARConfig:
    """WikiText-103, size-matched to the reported 358M (356M): 32,000-token vocabulary, 4,096 context,
    1,024 latents, 22 self-attention layers of 1,024 channels (configuration unverified)."""
    return PerceiverARConfig(vocab_size=32000, max_context_length=4096, num_latents=1024, num_self_attention_layers=22)
