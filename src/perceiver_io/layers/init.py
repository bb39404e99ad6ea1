"""Parameter initialisers."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["variance_scaling_", "identity_qk_"]


def variance_scaling_(weight: Tensor, scale: float = 1.0) -> Tensor:
    """Haiku's ``VarianceScaling(scale)`` (fan-in, truncated normal) initialiser, in place.

    ``fan_in`` is the number of inputs per output unit: ``in`` for a Linear ``(out, in)`` weight,
    ``in·k·k`` for a conv ``(out, in, k, k)``, the length of a 1-D array.
    """
    fan_in = weight[0].numel() if weight.dim() > 1 else weight.shape[0]
    # 0.8796... is the std of a unit normal truncated to [-2, 2]; Haiku divides by it.
    std = math.sqrt(scale / max(1, fan_in)) / 0.87962566103423978
    with torch.no_grad():
        return nn.init.trunc_normal_(weight, std=std, a=-2 * std, b=2 * std)


def identity_qk_(attention: nn.Module, alpha: float) -> None:
    """Set an attention's query and key projections to ``alpha·I`` (rectangular: the first ``qk`` input
    channels), biases to zero, in place. The attention logits then start as ``alpha²·⟨x_q, x_kv⟩`` over
    those channels (per head, over ``√d``): a query attends to the keys that look like itself."""
    with torch.no_grad():
        for proj in (attention.q_proj, attention.k_proj):
            proj.weight.copy_(alpha * torch.eye(*proj.weight.shape))
            if proj.bias is not None:
                proj.bias.zero_()
