"""Analytic FLOP counts for Perceiver IO models (matmuls only: 2·m·n·k per ``(m×k)·(k×n)``).

Counts the linear layers (projections, MLPs, adapters' projections) and the two attention
matmuls (``q·kᵀ`` and ``weights·v``); layer norms, softmax, activations and element-wise ops
are left out (they are O(size) and a few per cent at most). Widths follow
:class:`perceiver_io.layers.blocks.CrossAttentionBlock` / ``SelfAttentionBlock`` defaults:
cross-attention qk width = key/value input width (``shape_for_attention="kv"``) or query width
(``"q"``), v width = qk width; self-attention qk = v = latent width.

A training step (forward + backward) is counted as 3× the forward.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from perceiver_io.decoder import DecoderConfig
from perceiver_io.encoder import EncoderConfig

__all__ = [
    "attention_flops",
    "count_flops",
    "cross_block_flops",
    "decoder_flops",
    "encoder_flops",
    "linear_flops",
    "self_block_flops",
]


def linear_flops(rows: int, fan_in: int, fan_out: int) -> int:
    """``(rows × fan_in) · (fan_in × fan_out)``."""
    return 2 * rows * fan_in * fan_out


def attention_flops(num_q: int, num_kv: int, qk: int, v: int) -> int:
    """``softmax(q kᵀ) v`` over all heads: logits ``O·M·qk`` and weighted sum ``O·M·v`` multiply-adds."""
    return 2 * num_q * num_kv * qk + 2 * num_q * num_kv * v


def cross_block_flops(
    num_q: int,
    num_kv: int,
    q_channels: int,
    kv_channels: int,
    qk: int | None = None,
    v: int | None = None,
    shape_for_attention: str = "kv",
    widening_factor: int = 1,
) -> int:
    """One pre-LN cross-attention block (projections, attention, output projection, MLP)."""
    qk = qk or (kv_channels if shape_for_attention == "kv" else q_channels)
    v = v or qk
    return (
        linear_flops(num_q, q_channels, qk)
        + linear_flops(num_kv, kv_channels, qk)
        + linear_flops(num_kv, kv_channels, v)
        + attention_flops(num_q, num_kv, qk, v)
        + linear_flops(num_q, v, q_channels)
        + 2 * linear_flops(num_q, q_channels, widening_factor * q_channels)
    )


def self_block_flops(
    num: int, channels: int, qk: int | None = None, v: int | None = None, widening_factor: int = 1
) -> int:
    """One pre-LN self-attention block on ``num`` rows of ``channels``."""
    qk = qk or channels
    v = v or qk
    return (
        2 * linear_flops(num, channels, qk)
        + linear_flops(num, channels, v)
        + attention_flops(num, num, qk, v)
        + linear_flops(num, v, channels)
        + 2 * linear_flops(num, channels, widening_factor * channels)
    )


def encoder_flops(c: EncoderConfig, num_inputs: int, input_channels: int, batch: int = 1) -> int:
    """Cross-attention(s) of the latents to ``num_inputs`` rows + ``num_blocks × num_self_attends_per_block`` layers."""
    cross = cross_block_flops(
        c.num_latents,
        num_inputs,
        c.num_latent_channels,
        input_channels,
        c.cross_attention_qk_channels,
        c.cross_attention_v_channels,
        c.cross_attention_shape_for_attention,
        c.cross_attention_widening_factor,
    )
    num_cross = c.num_blocks if c.cross_attend_every_block else 1
    self_ = self_block_flops(
        c.num_latents,
        c.num_latent_channels,
        c.self_attention_qk_channels,
        c.self_attention_v_channels,
        c.self_attention_widening_factor,
    )
    return batch * (num_cross * cross + c.num_blocks * c.num_self_attends_per_block * self_)


def decoder_flops(c: DecoderConfig, num_queries: int, num_latents: int, latent_channels: int, batch: int = 1) -> int:
    """Decoder cross-attention of ``num_queries`` to the latents + the final projection."""
    f = cross_block_flops(
        num_queries,
        num_latents,
        c.num_query_channels,
        latent_channels,
        c.num_qk_channels,
        c.num_v_channels,
        c.shape_for_attention,
        c.widening_factor,
    )
    if c.num_output_channels is not None:
        f += linear_flops(num_queries, c.num_query_channels, c.num_output_channels)
    return batch * f


def count_flops(fn: Callable[[], object], model: nn.Module | None = None) -> int:
    """Matmul FLOPs of ``fn()`` by ``torch.utils.flop_counter.FlopCounterMode``.

    CPU SDPA kernels have no registered FLOP formula, so ``model``'s attention modules (if given)
    are switched to their einsum reference path while counting.
    """
    from torch.utils.flop_counter import FlopCounterMode

    switched = []
    if model is not None:
        for m in model.modules():
            if hasattr(m, "use_reference") and not m.use_reference:
                m.use_reference = True
                switched.append(m)
    try:
        # (grad mode stays on: FlopCounterMode's module tracking fails under no_grad)
        with FlopCounterMode(display=False) as counter:
            fn()
        return int(counter.get_total_flops())
    finally:
        for m in switched:
            m.use_reference = False
