"""Pre-LayerNorm Transformer blocks: MLP, cross-attention and self-attention (official layout).

* Self-attention: ``x += Dropout(Attn(LN(x)))``; ``x += MLP(LN(x))``.
* Cross-attention: ``a = Dropout(Attn(LN_q(x_q), LN_kv(x_kv)))``; ``x = x_q + a`` (or ``a``
  without query residual); ``x += MLP(LN(x))``.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from perceiver_io.layers.attention import MultiHeadAttention
from perceiver_io.layers.init import variance_scaling_

__all__ = ["Activation", "MLP", "CrossAttentionBlock", "SelfAttentionBlock", "make_activation"]

Activation = Literal["gelu", "gelu_tanh", "relu", "squared_relu"]


class SquaredReLU(nn.Module):
    """``relu(x)²``, the MLP activation of Perceiver AR and HiP."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(x).square()


def make_activation(name: Activation) -> nn.Module:
    """``gelu`` is exact (erf, as ``transformers``); ``gelu_tanh`` is ``jax.nn.gelu``'s default."""
    if name == "gelu":
        return nn.GELU()
    if name == "gelu_tanh":
        return nn.GELU(approximate="tanh")
    if name == "relu":
        return nn.ReLU()
    if name == "squared_relu":
        return SquaredReLU()
    raise ValueError(f"activation must be one of 'gelu', 'gelu_tanh', 'relu', 'squared_relu', got {name!r}")


class MLP(nn.Sequential):
    """``Linear(C, wf·C) -> activation -> Linear(wf·C, C) -> Dropout``; ``(B, N, C) -> (B, N, C)``."""

    def __init__(
        self, num_channels: int, widening_factor: int = 1, activation: Activation = "gelu_tanh", dropout: float = 0.0
    ):
        hidden = widening_factor * num_channels
        super().__init__(
            nn.Linear(num_channels, hidden),
            make_activation(activation),
            nn.Linear(hidden, num_channels),
            nn.Dropout(dropout),
        )
        for layer in (self[0], self[2]):
            variance_scaling_(layer.weight)
            nn.init.zeros_(layer.bias)


class CrossAttentionBlock(nn.Module):
    """Queries ``(B, O, Cq)`` attend to keys/values ``(B, M, Ckv)``; output ``(B, O, Cq)``.

    ``shape_for_attention`` picks the default qk width: ``"kv"`` (official default) uses the
    key/value input width, ``"q"`` the query width.
    """

    def __init__(
        self,
        num_q_input_channels: int,
        num_kv_input_channels: int,
        num_heads: int = 1,
        num_qk_channels: int | None = None,
        num_v_channels: int | None = None,
        shape_for_attention: Literal["kv", "q"] = "kv",
        widening_factor: int = 1,
        use_query_residual: bool = True,
        activation: Activation = "gelu_tanh",
        dropout: float = 0.0,
        attention_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if shape_for_attention not in ("kv", "q"):
            raise ValueError(f"shape_for_attention must be 'kv' or 'q', got {shape_for_attention!r}")
        if num_qk_channels is None:
            num_qk_channels = num_kv_input_channels if shape_for_attention == "kv" else num_q_input_channels
        self.use_query_residual = use_query_residual
        self.q_norm = nn.LayerNorm(num_q_input_channels)
        self.kv_norm = nn.LayerNorm(num_kv_input_channels)
        self.attention = MultiHeadAttention(
            num_heads=num_heads,
            num_q_input_channels=num_q_input_channels,
            num_kv_input_channels=num_kv_input_channels,
            num_qk_channels=num_qk_channels,
            num_v_channels=num_v_channels,
            num_output_channels=num_q_input_channels,
            attention_dropout=attention_dropout,
        )
        self.dropout = nn.Dropout(dropout)
        self.mlp_norm = nn.LayerNorm(num_q_input_channels)
        self.mlp = MLP(num_q_input_channels, widening_factor, activation, dropout)

    def forward(self, x_q: Tensor, x_kv: Tensor, kv_mask: Tensor | None = None, causal: bool = False) -> Tensor:
        a = self.dropout(self.attention(self.q_norm(x_q), self.kv_norm(x_kv), kv_mask=kv_mask, causal=causal))
        x = x_q + a if self.use_query_residual else a
        return x + self.mlp(self.mlp_norm(x))


class SelfAttentionBlock(nn.Module):
    """Self-attention over ``(B, N, C)``; output ``(B, N, C)``."""

    def __init__(
        self,
        num_channels: int,
        num_heads: int = 8,
        num_qk_channels: int | None = None,
        num_v_channels: int | None = None,
        widening_factor: int = 4,
        activation: Activation = "gelu_tanh",
        dropout: float = 0.0,
        attention_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(num_channels)
        self.attention = MultiHeadAttention(
            num_heads=num_heads,
            num_q_input_channels=num_channels,
            num_kv_input_channels=num_channels,
            num_qk_channels=num_qk_channels,
            num_v_channels=num_v_channels,
            num_output_channels=num_channels,
            attention_dropout=attention_dropout,
        )
        self.dropout = nn.Dropout(dropout)
        self.mlp_norm = nn.LayerNorm(num_channels)
        self.mlp = MLP(num_channels, widening_factor, activation, dropout)

    def forward(self, x: Tensor, mask: Tensor | None = None, causal: bool = False) -> Tensor:
        h = self.norm(x)
        x = x + self.dropout(self.attention(h, h, kv_mask=mask, causal=causal))
        return x + self.mlp(self.mlp_norm(x))
