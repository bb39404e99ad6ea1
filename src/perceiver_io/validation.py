"""Boundary checks: bad input raises an error naming the argument, expected and actual values."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["check_inputs", "check_mask", "check_tensor"]


def check_tensor(name: str, x: object, ndim: int, shape_desc: str) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape {shape_desc}, got {type(x).__name__}")
    if x.dim() != ndim:
        raise ValueError(f"{name} must have shape {shape_desc}, got {tuple(x.shape)}")
    return x


def check_mask(name: str, mask: Tensor | None, batch_size: int, length: int) -> None:
    if mask is None:
        return
    check_tensor(name, mask, 2, f"({batch_size}, {length})")
    if mask.dtype != torch.bool:
        raise TypeError(f"{name} must be a bool tensor (True = real/attend), got dtype {mask.dtype}")
    if tuple(mask.shape) != (batch_size, length):
        raise ValueError(f"{name} must have shape ({batch_size}, {length}), got {tuple(mask.shape)}")


def check_inputs(
    inputs: Tensor, input_mask: Tensor | None, num_channels: int, name: str = "inputs", mask_name: str = "input_mask"
) -> None:
    """``inputs`` must be ``(B, M, num_channels)`` floating point; ``input_mask`` ``(B, M)`` bool."""
    check_tensor(name, inputs, 3, f"(B, M, {num_channels})")
    if inputs.shape[-1] != num_channels:
        raise ValueError(f"{name} must have {num_channels} channels (last dim), got shape {tuple(inputs.shape)}")
    if not inputs.is_floating_point():
        raise TypeError(f"{name} must be floating point, got dtype {inputs.dtype}")
    check_mask(mask_name, input_mask, inputs.shape[0], inputs.shape[1])
