"""Optical-flow adapters: two RGB frames in, a flow field ``(B, H, W, 2)`` out.

Input side (official ``patches_for_flow`` + ``ImagePreprocessor(prep_type='patches')``):

1. each frame is zero-padded by 1 and every pixel becomes its 3×3 neighbourhood:
   ``(B, 2, 3, H, W) -> (B, 2, 27, H, W)`` (values ordered ``(kh, kw, c)``);
2. temporal space-to-depth stacks both frames per pixel: ``(B, H, W, 54)``;
3. ``Linear(54, 64)`` (``conv_after_patching``), then 2-D Fourier features of the pixel grid
   (64 bands, ``max_resolution`` = the training size 368×496) are concatenated: 64 + 258 = 322.

Output side: the decoder's 2 channels per pixel are divided by ``rescale_factor`` (100) and
reshaped to ``(B, H, W, 2)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from perceiver_io.adapters.image import space_to_depth
from perceiver_io.adapters.video import concat_positions
from perceiver_io.layers.position import FourierPositionEncoding

__all__ = ["patches_for_flow", "FlowInputAdapter", "FlowOutputAdapter"]


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


class FlowInputAdapter(nn.Module):
    """Two frames ``(B, 2, 3, H, W)`` (or their patches ``(B, 2, 27, H, W)``) -> inputs ``(B, H·W, 322)``.

    ``image_size`` is the training resolution: it sets the Fourier ``max_resolution``; inputs of
    another size get positions ``linspace(-1, 1)`` over their own grid (as the official code).
    """

    def __init__(
        self,
        image_size: Sequence[int] = (368, 496),
        num_image_channels: int = 3,
        num_frames: int = 2,
        patch_size: int = 3,
        num_patch_channels: int = 64,
        num_frequency_bands: int = 64,
    ) -> None:
        super().__init__()
        self.image_size = tuple(int(v) for v in image_size)
        self.num_image_channels = num_image_channels
        self.num_frames = num_frames
        self.patch_size = patch_size
        self.num_patch_values = num_frames * patch_size**2 * num_image_channels
        self.patch_projection = nn.Linear(self.num_patch_values, num_patch_channels)
        self.position_encoding = FourierPositionEncoding(self.image_size, num_frequency_bands)

    @property
    def num_channels(self) -> int:
        return self.patch_projection.out_features + self.position_encoding.num_channels

    def patches(self, frames: Tensor) -> Tensor:
        """``(B, T, C, H, W)`` frames -> ``(B, T, k²C, H, W)`` patches (passed through if already patches)."""
        c, k2c = self.num_image_channels, self.patch_size**2 * self.num_image_channels
        if frames.dim() != 5 or frames.shape[1] != self.num_frames or frames.shape[2] not in (c, k2c):
            raise ValueError(
                f"frames must have shape (B, {self.num_frames}, {c}, H, W) (RGB frames) or "
                f"(B, {self.num_frames}, {k2c}, H, W) (3×3 patches), got {tuple(frames.shape)}"
            )
        return patches_for_flow(frames, self.patch_size) if frames.shape[2] == c else frames

    def forward(self, frames: Tensor) -> Tensor:
        """``(B, 2, 3|27, H, W)`` -> ``(B, H·W, num_channels)``."""
        x = space_to_depth(self.patches(frames), temporal_block_size=self.num_frames)[:, 0]  # (B, H, W, 54)
        b, h, w, _ = x.shape
        x = self.patch_projection(x.reshape(b, h * w, -1))
        pos = self.position_encoding.grid((h, w), device=x.device).to(x.dtype)
        return concat_positions(x, pos)


class FlowOutputAdapter(nn.Module):
    """Decoded rows ``(B, H·W, 2)`` -> flow ``(B, H, W, 2)`` in pixels (÷ ``rescale_factor``)."""

    def __init__(self, rescale_factor: float = 100.0) -> None:
        super().__init__()
        self.rescale_factor = rescale_factor

    def forward(self, x: Tensor, image_shape: Sequence[int]) -> Tensor:
        h, w = image_shape
        if x.shape[1] != h * w:
            raise ValueError(f"expected {h * w} decoded rows for a {h}×{w} flow field, got {x.shape[1]}")
        return (x / self.rescale_factor).reshape(x.shape[0], h, w, x.shape[-1])
