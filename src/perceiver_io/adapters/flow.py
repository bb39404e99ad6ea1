"""Optical flow: two RGB frames in, a flow field ``(B, H, W, 2)`` out.

Input side: :class:`ImageInputAdapter` as the official flow preprocessing
(``patches_for_flow`` + ``ImagePreprocessor(prep_type='patches')``), see :func:`flow_image_config`:

1. each frame is zero-padded by 1 and every pixel becomes its 3×3 neighbourhood:
   ``(B, 2, 3, H, W) -> (B, 2, 27, H, W)`` (values ordered ``(kh, kw, c)``);
2. temporal space-to-depth stacks both frames per pixel: ``(B, H, W, 54)``;
3. ``Linear(54, 64)`` (``conv_after_patching``), then 2-D Fourier features of the pixel grid
   (64 bands, ``max_resolution`` = the training size 368×496) are concatenated: 64 + 258 = 322.

Output side (:class:`FlowHead`): the inputs are the queries, one per pixel; the decoder's 2
channels per pixel are divided by ``rescale_factor`` (100) and reshaped to ``(B, H, W, 2)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torch import Tensor

from perceiver_io.adapters.base import AdaptedInputs
from perceiver_io.adapters.image import ImageAdapterConfig
from perceiver_io.heads import OutputHead
from perceiver_io.queries import InputQueries

__all__ = ["flow_image_config", "FlowHead", "OpticalFlowOutput"]


def flow_image_config(
    image_size: Sequence[int] = (368, 496),
    num_image_channels: int = 3,
    patch_size: int = 3,
    num_patch_channels: int = 64,
    num_frequency_bands: int = 64,
) -> ImageAdapterConfig:
    """The image-adapter config of the official flow model for frame pairs ``(B, 2, C, H, W)``.

    ``image_size`` is the training resolution: it sets the Fourier ``max_resolution``; frames of
    another size get positions ``linspace(-1, 1)`` over their own grid (as the official code).
    """
    return ImageAdapterConfig(
        image_shape=tuple(int(v) for v in image_size),  # type: ignore[arg-type]
        num_image_channels=num_image_channels,
        num_frames=2,
        prep_type="patches",
        pixel_patch_size=patch_size,
        spatial_downsample=1,
        temporal_downsample=2,
        conv_after_patching=True,
        out_channels=num_patch_channels,
        position_encoding="fourier",
        num_bands=num_frequency_bands,
    )


@dataclass
class OpticalFlowOutput:
    """``flow``: ``(B, H, W, 2)`` in pixels (or ``(B, P, 2)`` at subsampled pixels); ``latents``: ``(B, N, D)``."""

    flow: Tensor
    latents: Tensor


class FlowHead(OutputHead):
    """Inputs-as-queries; rows ``(B, H·W, 2)`` ÷ ``rescale_factor`` -> flow ``(B, H, W, 2)``."""

    def __init__(self, num_input_channels: int, rescale_factor: float = 100.0) -> None:
        super().__init__()
        self.query_builder = InputQueries(num_input_channels)
        self.rescale_factor = rescale_factor

    def finish(self, rows, latents, inputs: AdaptedInputs | None, indices) -> OpticalFlowOutput:
        flow = rows["outputs"] / self.rescale_factor
        if indices is None:
            if inputs is None or inputs.index_shape is None or len(inputs.index_shape) != 2:
                raise ValueError("decoding every pixel needs inputs=model.adapt(frames) (their (H, W) grid)")
            h, w = inputs.index_shape
            if flow.shape[1] != h * w:
                raise ValueError(f"expected {h * w} decoded rows for a {h}×{w} flow field, got {flow.shape[1]}")
            flow = flow.reshape(flow.shape[0], h, w, flow.shape[-1])
        return OpticalFlowOutput(flow=flow, latents=latents)
