"""Multi-head attention as the official Perceiver code defines it, on PyTorch's SDPA.

Widths follow DeepMind's ``Attention`` module:

* ``num_qk_channels`` (default: the query input width) is the width of queries and keys,
* ``num_v_channels`` (default: ``num_qk_channels``) the width of values,
* ``num_output_channels`` (default: ``num_v_channels``) the width after the output projection.

Masks are boolean with SDPA's polarity: ``True`` means "may attend" / "is real". A query row
that has nothing to attend to (all its keys masked) yields exactly zero before the output
projection, as in the official ``attend`` ("wipe_attn"), never NaN.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["MultiHeadAttention", "attend", "attend_reference", "causal_mask", "variance_scaling_"]


def variance_scaling_(weight: Tensor, scale: float = 1.0) -> Tensor:
    """Haiku's ``VarianceScaling(scale)`` (fan-in, truncated normal) initialiser, in place."""
    fan_in = weight.shape[1] if weight.dim() > 1 else weight.shape[0]
    # 0.8796... is the std of a unit normal truncated to [-2, 2]; Haiku divides by it.
    std = math.sqrt(scale / max(1, fan_in)) / 0.87962566103423978
    with torch.no_grad():
        return nn.init.trunc_normal_(weight, std=std, a=-2 * std, b=2 * std)


def causal_mask(num_queries: int, num_keys: int, device: torch.device | None = None) -> Tensor:
    """Boolean ``(O, M)`` mask where query ``i`` sees keys ``j <= i + M - O``.

    Queries are aligned to the *end* of the key sequence (bottom-right), which is what
    Perceiver AR needs: its latents are the last ``O`` of ``M`` positions.
    """
    q = torch.arange(num_queries, device=device)[:, None] + (num_keys - num_queries)
    k = torch.arange(num_keys, device=device)[None, :]
    return k <= q


def _combine_masks(kv_mask: Tensor | None, causal: bool, num_q: int, num_kv: int, device) -> Tensor | None:
    """Build one boolean mask broadcastable to ``(B, H, O, M)`` from a key mask and causality."""
    mask = None
    if kv_mask is not None:
        mask = kv_mask[:, None, None, :]  # (B, 1, 1, M)
    if causal:
        c = causal_mask(num_q, num_kv, device)[None, None]  # (1, 1, O, M)
        mask = c if mask is None else mask & c
    return mask


def attend(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    kv_mask: Tensor | None = None,
    causal: bool = False,
    dropout_p: float = 0.0,
) -> Tensor:
    """Scaled dot-product attention over heads via ``F.scaled_dot_product_attention``.

    Args:
        q: ``(B, H, O, Dqk)`` queries; k: ``(B, H, M, Dqk)`` keys; v: ``(B, H, M, Dv)`` values.
        kv_mask: optional ``(B, M)`` boolean, ``True`` = real key.
        causal: mask keys after each query (bottom-right aligned, see :func:`causal_mask`).
        dropout_p: dropout probability on the attention weights.

    Returns:
        ``(B, H, O, Dv)``; rows with no visible key are exactly zero.
    """
    num_q, num_kv = q.shape[-2], k.shape[-2]
    if kv_mask is None and not causal and dropout_p == 0.0 and q.device.type == "cpu" and q.shape[-1] != v.shape[-1]:
        # CPU SDPA has no fused kernel when the qk and v head widths differ (language-perceiver:
        # 32 vs 160) and falls back to a generic math path with extra copies and -inf checks;
        # two matmuls and a softmax (statistics in fp32) are 25-40 % faster there.
        logits = torch.matmul(q * q.shape[-1] ** -0.5, k.transpose(-1, -2))
        stat_dtype = torch.float64 if q.dtype == torch.float64 else torch.float32
        return torch.matmul(logits.softmax(dim=-1, dtype=stat_dtype).to(v.dtype), v)
    if kv_mask is None and causal and num_q == num_kv:
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True)
    mask = _combine_masks(kv_mask, causal, num_q, num_kv, q.device)
    if mask is None:
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)
    # A row whose keys are all masked would give softmax(-inf, ...) = NaN. Let such rows attend
    # everywhere (finite result) and wipe them afterwards, so no NaN ever appears, also not in
    # the backward pass.
    empty = ~mask.any(dim=-1, keepdim=True)  # (B or 1, 1, O or 1, 1)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask | empty, dropout_p=dropout_p)
    return out.masked_fill(empty, 0.0)


def attend_reference(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    kv_mask: Tensor | None = None,
    causal: bool = False,
    dropout_p: float = 0.0,
) -> Tensor:
    """Plain einsum attention with the official formula; the test oracle for :func:`attend`.

    Logits and softmax are computed in fp32 (or fp64 if the inputs are fp64).
    """
    stat_dtype = torch.float64 if q.dtype == torch.float64 else torch.float32
    scale = q.shape[-1] ** -0.5
    logits = torch.einsum("bhod,bhmd->bhom", q.to(stat_dtype), k.to(stat_dtype)) * scale
    mask = _combine_masks(kv_mask, causal, q.shape[-2], k.shape[-2], q.device)
    if mask is not None:
        logits = logits.masked_fill(~mask, -1e30)
    weights = logits.softmax(dim=-1)
    if dropout_p > 0.0:
        weights = F.dropout(weights, p=dropout_p)
    out = torch.einsum("bhom,bhmd->bhod", weights, v.to(stat_dtype)).to(v.dtype)
    if mask is not None:
        out = out.masked_fill(~mask.any(dim=-1, keepdim=True), 0.0)
    return out


class MultiHeadAttention(nn.Module):
    """Multi-head attention from queries ``x_q (B, O, Cq)`` to keys/values ``x_kv (B, M, Ckv)``.

    ``q = x_q·Wq``, ``k = x_kv·Wk``, ``v = x_kv·Wv`` split into ``num_heads`` heads, attention
    scaled by ``1/sqrt(num_qk_channels / num_heads)``, heads concatenated, then ``Wo``.
    """

    def __init__(
        self,
        num_heads: int,
        num_q_input_channels: int,
        num_kv_input_channels: int,
        num_qk_channels: int | None = None,
        num_v_channels: int | None = None,
        num_output_channels: int | None = None,
        attention_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        num_qk_channels = num_qk_channels or num_q_input_channels
        num_v_channels = num_v_channels or num_qk_channels
        num_output_channels = num_output_channels or num_v_channels
        for name, value in (("num_qk_channels", num_qk_channels), ("num_v_channels", num_v_channels)):
            if value % num_heads != 0:
                raise ValueError(f"{name} ({value}) must be divisible by num_heads ({num_heads})")
        self.num_heads = num_heads
        self.num_qk_channels = num_qk_channels
        self.num_v_channels = num_v_channels
        self.attention_dropout = attention_dropout
        self.use_reference = False  # switch to the einsum path (tests, debugging)
        self.q_proj = nn.Linear(num_q_input_channels, num_qk_channels)
        self.k_proj = nn.Linear(num_kv_input_channels, num_qk_channels)
        self.v_proj = nn.Linear(num_kv_input_channels, num_v_channels)
        self.o_proj = nn.Linear(num_v_channels, num_output_channels)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for layer in (self.q_proj, self.k_proj, self.v_proj, self.o_proj):
            variance_scaling_(layer.weight)
            nn.init.zeros_(layer.bias)

    def _split_heads(self, x: Tensor) -> Tensor:
        b, n, c = x.shape
        return x.view(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)

    def forward(self, x_q: Tensor, x_kv: Tensor, kv_mask: Tensor | None = None, causal: bool = False) -> Tensor:
        """``x_q (B, O, Cq)``, ``x_kv (B, M, Ckv)``, ``kv_mask (B, M)`` -> ``(B, O, C_out)``."""
        q = self._split_heads(self.q_proj(x_q))
        k = self._split_heads(self.k_proj(x_kv))
        v = self._split_heads(self.v_proj(x_kv))
        dropout_p = self.attention_dropout if self.training else 0.0
        fn = attend_reference if self.use_reference else attend
        out = fn(q, k, v, kv_mask=kv_mask, causal=causal, dropout_p=dropout_p)
        b, _, o, _ = out.shape
        return self.o_proj(out.transpose(1, 2).reshape(b, o, self.num_v_channels))
