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

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from perceiver_io.layers.init import variance_scaling_

__all__ = ["MultiHeadAttention", "attend", "attend_reference", "causal_mask"]


def _cheapest(*options: tuple[int, str]) -> str:
    """The name of the cheapest ``(cost, name)`` option; the first wins ties. (A loop rather than
    ``min`` over tuples, which ``torch.compile`` cannot trace with symbolic sizes.)"""
    best = options[0]
    for option in options[1:]:
        if option[0] < best[0]:
            best = option
    return best[1]


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


# Largest ``heads × queries × keys`` per batch element for which reduced-precision attention on
# CPU materialises its logits (64 MiB in bf16); above it SDPA's flash kernel bounds the memory.
MATERIALIZE_MAX_LOGITS = 2**25


def _two_matmuls_are_faster(q: Tensor, k: Tensor, v: Tensor, bias: Tensor | None) -> bool:
    """Whether plain ``softmax(q·kᵀ)·v`` beats SDPA on this CPU (measured: bench/attention_kernels.py).

    * qk and v head widths differ (language-perceiver: 32 vs 160): CPU SDPA has no fused kernel
      for that and falls back to a generic math path with extra copies; two matmuls are 25-40 %
      faster in fp32 and bf16.
    * bf16/fp16 (also under autocast): CPU SDPA's flash kernel reaches about 40 % of the bf16
      matmul peak, two bf16 matmuls 1.2-1.7× more for the Perceiver's attention shapes, as long
      as the logits stay small (:data:`MATERIALIZE_MAX_LOGITS`).
    """
    if q.device.type != "cpu":
        return False
    if q.shape[-1] != v.shape[-1] and bias is None:
        return True
    reduced = (torch.float16, torch.bfloat16)
    if q.dtype not in reduced and not (torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") in reduced):
        return False
    return q.shape[-3] * q.shape[-2] * k.shape[-2] <= MATERIALIZE_MAX_LOGITS


def attend(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    kv_mask: Tensor | None = None,
    causal: bool = False,
    dropout_p: float = 0.0,
    scale: float | None = None,
    bias: Tensor | None = None,
) -> Tensor:
    """Scaled dot-product attention over heads via ``F.scaled_dot_product_attention``.

    Args:
        q: ``(B, H, O, Dqk)`` queries; k: ``(B, H, M, Dqk)`` keys; v: ``(B, H, M, Dv)`` values.
        kv_mask: optional ``(B, M)`` boolean, ``True`` = real key.
        causal: mask keys after each query (bottom-right aligned, see :func:`causal_mask`).
        dropout_p: dropout probability on the attention weights.
        scale: logit scale; default ``1/sqrt(Dqk)``.
        bias: optional additive logit bias broadcastable to ``(B, H, O, M)`` (not with ``kv_mask``
            or ``causal``).

    Returns:
        ``(B, H, O, Dv)``; rows with no visible key are exactly zero.
    """
    num_q, num_kv = q.shape[-2], k.shape[-2]
    if bias is not None and (kv_mask is not None or causal):
        raise ValueError("attend: bias cannot be combined with kv_mask or causal")
    if kv_mask is None and not causal and dropout_p == 0.0 and _two_matmuls_are_faster(q, k, v, bias):
        logits = torch.matmul(q * (q.shape[-1] ** -0.5 if scale is None else scale), k.transpose(-1, -2))
        if bias is not None:
            logits = logits + bias
        # CPU softmax accumulates bf16/fp16 in fp32 internally; asking for an fp32 result
        # instead would cost a slow convert and a copy.
        return torch.matmul(logits.softmax(dim=-1).to(v.dtype), v)
    if kv_mask is None and causal and num_q == num_kv:
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True, scale=scale)
    mask = _combine_masks(kv_mask, causal, num_q, num_kv, q.device)
    if mask is None:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout_p, scale=scale)
    # A row whose keys are all masked would give softmax(-inf, ...) = NaN. Let such rows attend
    # everywhere (finite result) and wipe them afterwards, so no NaN ever appears, also not in
    # the backward pass.
    empty = ~mask.any(dim=-1, keepdim=True)  # (B or 1, 1, O or 1, 1)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask | empty, dropout_p=dropout_p, scale=scale)
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

    With one head (the Perceiver's cross-attentions), the projections can be folded into the
    small side of the attention instead of being applied to the large one. Logits
    ``(x_q·Wq + bq)·(x_kv·Wk + bk)ᵀ`` equal either ``((x_q·Wq + bq)·Wk)·x_kvᵀ`` plus a
    per-query constant (which softmax ignores), or ``x_q·(Wqᵀ·k)ᵀ`` plus a per-key bias ``bq·kᵀ``;
    outputs ``P·(x_kv·Wv + bv)·Wo`` equal ``(P·x_kv)·Wv·Wo`` (rows of ``P`` sum to one) or
    ``P·(v·Wo)``. :meth:`plan` picks, per side, the association with the fewest FLOPs: for
    optical flow's 182,528 pixels this removes the k/v projections over all pixels in the encoder
    and the q/output projections over all pixels in the decoder, and narrows the decoder's
    attention from 512 to 322 channels. Used without masks, causality or attention dropout;
    ``absorb_projections = False`` turns it off.
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
        self.num_output_channels = num_output_channels
        self.attention_dropout = attention_dropout
        self.use_reference = False  # switch to the einsum path (tests, debugging)
        self.absorb_projections = True  # fold single-head projections where it saves FLOPs
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

    def plan(self, num_q: int, num_kv: int) -> tuple[str, str]:
        """Cheapest ``(logit side, value side)`` association for one head, by FLOPs per batch element.

        Logit side: ``"standard"``, ``"into_q"`` (``Wk`` applied to the queries) or ``"into_k"``
        (``Wq`` applied to the keys); value side: ``"standard"``, ``"after"`` (``Wv`` applied after
        attention) or ``"into_v"`` (``Wo`` applied to the values).
        """
        if self.num_heads != 1 or not self.absorb_projections:
            return "standard", "standard"
        o, m, d, e, c_out = num_q, num_kv, self.num_qk_channels, self.num_v_channels, self.num_output_channels
        c_q, c_kv = self.q_proj.in_features, self.k_proj.in_features
        logit = _cheapest(
            (o * c_q * d + m * c_kv * d + o * m * d, "standard"),
            (o * c_q * d + o * d * c_kv + o * m * c_kv, "into_q"),
            (m * c_kv * d + m * d * c_q + o * m * c_q, "into_k"),
        )
        value = _cheapest(
            (m * c_kv * e + o * m * e + o * e * c_out, "standard"),
            (o * m * c_kv + o * c_kv * e + o * e * c_out, "after"),
            (m * c_kv * e + m * e * c_out + o * m * c_out, "into_v"),
        )
        return logit, value

    def forward(self, x_q: Tensor, x_kv: Tensor, kv_mask: Tensor | None = None, causal: bool = False) -> Tensor:
        """``x_q (B, O, Cq)``, ``x_kv (B, M, Ckv)``, ``kv_mask (B, M)`` -> ``(B, O, C_out)``."""
        dropout_p = self.attention_dropout if self.training else 0.0
        if kv_mask is None and not causal and dropout_p == 0.0 and not self.use_reference:
            logit_side, value_side = self.plan(x_q.shape[1], x_kv.shape[1])
            if (logit_side, value_side) != ("standard", "standard"):
                return self._forward_folded(x_q, x_kv, logit_side, value_side)
        q = self._split_heads(self.q_proj(x_q))
        k = self._split_heads(self.k_proj(x_kv))
        v = self._split_heads(self.v_proj(x_kv))
        fn = attend_reference if self.use_reference else attend
        out = fn(q, k, v, kv_mask=kv_mask, causal=causal, dropout_p=dropout_p)
        b, _, o, _ = out.shape
        return self.o_proj(out.transpose(1, 2).reshape(b, o, self.num_v_channels))

    def _forward_folded(self, x_q: Tensor, x_kv: Tensor, logit_side: str, value_side: str) -> Tensor:
        """Single-head attention with projections folded into the small side (see :meth:`plan`)."""
        scale = self.num_qk_channels**-0.5
        bias = None
        if logit_side == "into_q":  # logits = ((x_q·Wq + bq)·Wk)·x_kvᵀ + const(row)
            q, k = self.q_proj(x_q) @ self.k_proj.weight, x_kv
            if torch.is_grad_enabled() and self.k_proj.bias.requires_grad:
                # softmax ignores bk, so its gradient is exactly zero; give it one explicitly so
                # that DDP and optimizers see every parameter used.
                q = q + 0.0 * self.k_proj.bias.sum()
        elif logit_side == "into_k":  # logits = x_q·(k·Wq)ᵀ + (k·bq)ᵀ
            k_full = self.k_proj(x_kv)
            q, k = x_q, k_full @ self.q_proj.weight
            bias = (k_full @ self.q_proj.bias * scale)[:, None, None, :]  # (B, 1, 1, M)
        else:
            q, k = self.q_proj(x_q), self.k_proj(x_kv)
        if value_side == "after":  # P·(x_kv·Wv + bv) = (P·x_kv)·Wv + bv
            v = x_kv
        elif value_side == "into_v":  # P·v·Wo = P·(v·Wo)
            v = F.linear(self.v_proj(x_kv), self.o_proj.weight)
        else:
            v = self.v_proj(x_kv)
        out = attend(q[:, None], k[:, None], v[:, None], scale=scale, bias=bias)[:, 0]  # (B, O, Cv')
        if value_side == "after":
            out = self.v_proj(out)
        if value_side == "into_v":
            return out + self.o_proj.bias
        return self.o_proj(out)
