"""Spatial rearrangements shared by the image, video, flow and audio adapters (no parameters)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["same_padding", "space_to_depth", "patches_for_flow", "concat_positions"]


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF/Haiku ``SAME`` padding ``(before, after)`` of one axis: output size ``ceil(size/stride)``."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def space_to_depth(x: Tensor, temporal_block_size: int = 1, spatial_block_size: int = 1) -> Tensor:
    """Move blocks of space (and time) into channels, channels last.

    ``(B, C, H, W) -> (B, H/s, W/s, s·s·C)``; ``(B, T, C, H, W) -> (B, T/t, H/s, W/s, t·s·s·C)``.
    Within a block, values are ordered ``(dt, dh, dw, c)``, as DeepMind's
    ``'b (t dt) (h dh) (w dw) c -> b t h w (dt dh dw c)'``.
    """
    t, s = temporal_block_size, spatial_block_size
    if x.dim() == 4:
        b, c, h, w = x.shape
        if h % s or w % s:
            raise ValueError(f"image height and width {(h, w)} must be divisible by the spatial block size {s}")
        x = x.reshape(b, c, h // s, s, w // s, s).permute(0, 2, 4, 3, 5, 1)
        return x.reshape(b, h // s, w // s, s * s * c)
    if x.dim() == 5:
        b, n, c, h, w = x.shape
        if n % t or h % s or w % s:
            raise ValueError(
                f"video (T, H, W) = {(n, h, w)} must be divisible by the block sizes (t, s, s) = {(t, s, s)}"
            )
        x = x.reshape(b, n // t, t, c, h // s, s, w // s, s).permute(0, 1, 4, 6, 2, 5, 7, 3)
        return x.reshape(b, n // t, h // s, w // s, t * s * s * c)
    raise ValueError(f"space_to_depth expects (B, C, H, W) or (B, T, C, H, W), got shape {tuple(x.shape)}")


def patches_for_flow(frames: Tensor, patch_size: int = 3) -> Tensor:
    """Each pixel's ``k×k`` neighbourhood (zero padding): ``(B, T, C, H, W) -> (B, T, k·k·C, H, W)``.

    Channel order is ``(kh, kw, c)``, as the official ``patches_for_flow``.
    """
    if frames.dim() != 5:
        raise ValueError(f"frames must have shape (B, T, C, H, W), got {tuple(frames.shape)}")
    b, t, c, h, w = frames.shape
    k = patch_size
    cols = F.unfold(frames.reshape(b * t, c, h, w), kernel_size=k, padding=k // 2)  # (B·T, C·k·k, H·W), (c, kh, kw)
    cols = cols.reshape(b, t, c, k * k, h, w).transpose(2, 3)  # (kh, kw), c
    return cols.reshape(b, t, k * k * c, h, w)


def concat_positions(x: Tensor, pos: Tensor) -> Tensor:
    """``x (B, M, C)`` and shared positions ``(M, F)`` -> ``(B, M, C + F)``."""
    return torch.cat([x, pos.unsqueeze(0).expand(x.shape[0], -1, -1)], dim=-1)
