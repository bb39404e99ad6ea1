"""Video adapters: space-time patches + 3-D Fourier features in, per-pixel projection out.

Input side: a video ``(B, T, C, H, W)`` is cut into ``dt × p × p`` space-time patches
(space-to-depth, values ordered ``(dt, dh, dw, c)`` as in the official code), flattened to
``(B, T/dt · H/p · W/p, dt·p²·C)`` and concatenated with 3-D Fourier features of the patch grid.

Output side: each decoded row is one pixel; a ``Linear`` maps it to ``C`` values. Decoding every
pixel gives a video ``(B, T, C, H, W)``; decoding a subset (training) gives ``(B, P, C)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from perceiver_io.adapters.image import space_to_depth
from perceiver_io.layers.position import FourierPositionEncoding
from perceiver_io.queries import FourierQueries

__all__ = [
    "concat_positions",
    "VideoInputAdapter",
    "VideoOutputAdapter",
    "VideoQueries",
]


class VideoInputAdapter(nn.Module):
    """Video ``(B, T, C, H, W)`` -> inputs ``(B, T/dt·H/p·W/p, dt·p²·C + F)`` (patches | Fourier features).

    ``max_resolution`` (per axis of the *patch* grid) sets the highest Fourier frequency; default:
    the patch grid itself. The official Kinetics model uses ``(16, 56, 56)`` for 16×224×224 video
    with 4×4 patches.
    """

    def __init__(
        self,
        video_shape: Sequence[int],
        num_image_channels: int = 3,
        spatial_patch_size: int = 4,
        temporal_patch_size: int = 1,
        num_frequency_bands: int = 32,
        max_resolution: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        t, h, w = (int(v) for v in video_shape)
        if t % temporal_patch_size or h % spatial_patch_size or w % spatial_patch_size:
            raise ValueError(
                f"video_shape {(t, h, w)} must be divisible by the patch sizes "
                f"{(temporal_patch_size, spatial_patch_size, spatial_patch_size)}"
            )
        self.video_shape = (t, h, w)
        self.num_image_channels = num_image_channels
        self.spatial_patch_size = spatial_patch_size
        self.temporal_patch_size = temporal_patch_size
        grid = (t // temporal_patch_size, h // spatial_patch_size, w // spatial_patch_size)
        self.position_encoding = FourierPositionEncoding(grid, num_frequency_bands, max_resolution)
        self.num_patch_channels = temporal_patch_size * spatial_patch_size**2 * num_image_channels

    @property
    def num_channels(self) -> int:
        return self.num_patch_channels + self.position_encoding.num_channels

    def forward(self, video: Tensor) -> Tensor:
        """``video (B, T, C, H, W)`` -> ``(B, M, num_channels)``."""
        if video.dim() != 5 or video.shape[2] != self.num_image_channels:
            raise ValueError(f"video must have shape (B, T, {self.num_image_channels}, H, W), got {tuple(video.shape)}")
        x = space_to_depth(video, self.temporal_patch_size, self.spatial_patch_size)
        b, grid = x.shape[0], tuple(x.shape[1:4])
        x = x.reshape(b, -1, x.shape[-1])
        pos = self.position_encoding.grid(grid, device=x.device).to(x.dtype)
        return concat_positions(x, pos)


class VideoQueries(FourierQueries):
    """One query per output pixel: Fourier features of the ``(T, H, W)`` pixel grid."""


class VideoOutputAdapter(nn.Module):
    """Decoded rows ``(B, O, F)`` -> pixels: ``Linear(F, C)``; all pixels are reshaped to ``(B, T, C, H, W)``."""

    def __init__(self, num_input_channels: int, video_shape: Sequence[int], num_image_channels: int = 3) -> None:
        super().__init__()
        self.video_shape = tuple(int(v) for v in video_shape)
        self.num_image_channels = num_image_channels
        self.projection = nn.Linear(num_input_channels, num_image_channels)

    def forward(self, x: Tensor, subsampled: bool = False) -> Tensor:
        """``(B, O, F)`` -> ``(B, O, C)`` if ``subsampled`` else ``(B, T, C, H, W)`` (needs O = T·H·W)."""
        return self.arrange(self.projection(x), subsampled)

    def arrange(self, y: Tensor, subsampled: bool = False) -> Tensor:
        """Projected rows ``(B, P, C)`` -> the output (see :meth:`forward`)."""
        if subsampled:
            return y
        t, h, w = self.video_shape
        if y.shape[1] != t * h * w:
            raise ValueError(f"expected {t * h * w} decoded pixels for a {(t, h, w)} video, got {y.shape[1]}")
        return y.reshape(y.shape[0], t, h, w, -1).permute(0, 1, 4, 2, 3)


def concat_positions(x: Tensor, pos: Tensor) -> Tensor:
    """``x (B, M, C)`` and shared positions ``(M, F)`` -> ``(B, M, C + F)``."""
    return torch.cat([x, pos.unsqueeze(0).expand(x.shape[0], -1, -1)], dim=-1)
