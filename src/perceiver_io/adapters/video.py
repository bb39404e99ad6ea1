"""Video output side: one Fourier query per pixel, a per-pixel projection to colours.

(The input side is :class:`perceiver_io.adapters.image.ImageInputAdapter` with ``num_frames``:
``dt × p × p`` space-time patches + 3-D Fourier features of the patch grid; see :func:`video_image_config`.)
Decoding every pixel gives a video ``(B, T, C, H, W)``; decoding a subset (training) gives ``(B, P, C)``.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from perceiver_io.adapters.image import ImageAdapterConfig
from perceiver_io.heads import ModalityHead
from perceiver_io.queries import FourierQueries

__all__ = ["video_image_config", "VideoHead"]


def video_image_config(
    video_shape: Sequence[int],
    num_image_channels: int = 3,
    spatial_patch_size: int = 4,
    temporal_patch_size: int = 1,
    num_frequency_bands: int = 32,
    max_resolution: Sequence[int] | None = None,
) -> ImageAdapterConfig:
    """Image-adapter config for video ``(B, T, C, H, W)`` cut into space-time patches (values ordered
    ``(dt, dh, dw, c)``) + 3-D Fourier features of the patch grid; ``max_resolution`` per axis of the
    *patch* grid (default: the grid itself; the Kinetics model: ``(16, 56, 56)`` for 16×224×224)."""
    t, h, w = (int(v) for v in video_shape)
    return ImageAdapterConfig(
        image_shape=(h, w),
        num_image_channels=num_image_channels,
        num_frames=t,
        prep_type="patches",
        spatial_downsample=spatial_patch_size,
        temporal_downsample=temporal_patch_size,
        num_bands=num_frequency_bands,
        max_resolution=None if max_resolution is None else tuple(max_resolution),
        fixed_shape=True,  # the video head decodes exactly video_shape
    )


class VideoHead(ModalityHead):
    """Fourier queries of the ``(T, H, W)`` pixel grid; ``Linear(F, C)`` per pixel."""

    def __init__(
        self,
        video_shape: Sequence[int],
        num_frequency_bands: int,
        max_resolution: Sequence[int],
        num_input_channels: int,
        num_image_channels: int = 3,
        full_positions: str = "grid",
    ) -> None:
        shape = tuple(int(v) for v in video_shape)
        super().__init__(
            FourierQueries(shape, num_frequency_bands, max_resolution, full_positions=full_positions),
            nn.Linear(num_input_channels, num_image_channels),
        )
        self.video_shape = shape

    def arrange(self, y: Tensor, subsampled: bool = False) -> Tensor:
        """Projected rows ``(B, P, C)`` -> ``(B, P, C)`` if ``subsampled`` else ``(B, T, C, H, W)``."""
        if subsampled:
            return y
        t, h, w = self.video_shape
        if y.shape[1] != t * h * w:
            raise ValueError(f"expected {t * h * w} decoded pixels for a {(t, h, w)} video, got {y.shape[1]}")
        return y.reshape(y.shape[0], t, h, w, -1).permute(0, 1, 4, 2, 3)
