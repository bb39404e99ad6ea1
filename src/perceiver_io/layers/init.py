"""Parameter initialisers."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["variance_scaling_"]


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
