"""Optical flow (Perceiver IO, Sec. 4.2): two frames in, a per-pixel flow field out.

Read: both frames' 3×3 patches + 2-D Fourier features, one input row per pixel (322 channels).
Process: 2048 × 512 latents, 24 self-attention layers. Write: **the inputs are the queries**
(one per pixel, no query residual), a zero-initialised ``Linear(2)``, ÷ ``rescale_factor``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from torch import Tensor

from perceiver_io.adapters.flow import FlowInputAdapter, FlowOutputAdapter
from perceiver_io.config import Config, ConfigError
from perceiver_io.decoder import DecoderConfig, PerceiverDecoder
from perceiver_io.encoder import EncoderConfig, PerceiverEncoder
from perceiver_io.layers.position import num_fourier_channels
from perceiver_io.models.perceiver_io import PerceiverIOBase
from perceiver_io.models.registry import register_model
from perceiver_io.queries import InputQueries

__all__ = ["OpticalFlowConfig", "OpticalFlow", "OpticalFlowOutput"]


def _flow_encoder() -> EncoderConfig:
    return EncoderConfig(
        num_latents=2048,
        num_latent_channels=512,
        num_blocks=1,
        num_self_attends_per_block=24,
        num_cross_attention_heads=1,
        num_self_attention_heads=16,
    )


def _flow_decoder() -> DecoderConfig:
    return DecoderConfig(
        num_query_channels=322,
        num_output_channels=2,
        num_heads=1,
        use_query_residual=False,
        output_init="zeros",
    )


@dataclass
class OpticalFlowConfig(Config):
    """Optical-flow model; defaults are the published model (``deepmind/optical-flow-perceiver``).

    ``image_size`` is the training resolution (Fourier ``max_resolution``); other sizes run too.
    ``decoder.num_query_channels`` must equal the input width ``num_patch_channels + 2·(2K+1)``.
    """

    image_size: tuple[int, int] = (368, 496)
    num_image_channels: int = 3
    patch_size: int = 3
    num_patch_channels: int = 64
    num_frequency_bands: int = 64
    rescale_factor: float = 100.0
    encoder: EncoderConfig = field(default_factory=_flow_encoder)
    decoder: DecoderConfig = field(default_factory=_flow_decoder)

    @property
    def num_input_channels(self) -> int:
        return self.num_patch_channels + num_fourier_channels(2, self.num_frequency_bands)

    def validate(self) -> None:
        self._positive("num_image_channels", "patch_size", "num_patch_channels", "num_frequency_bands")
        if len(self.image_size) != 2 or any(not isinstance(v, int) or v <= 0 for v in self.image_size):
            raise ConfigError(f"OpticalFlowConfig.image_size must be two positive integers, got {self.image_size!r}")
        if self.patch_size % 2 == 0:
            raise ConfigError(f"OpticalFlowConfig.patch_size must be odd, got {self.patch_size}")
        if not isinstance(self.rescale_factor, (int, float)) or self.rescale_factor <= 0:
            raise ConfigError(f"OpticalFlowConfig.rescale_factor must be > 0, got {self.rescale_factor!r}")
        if self.decoder.num_query_channels != self.num_input_channels:
            raise ConfigError(
                f"OpticalFlowConfig.decoder.num_query_channels ({self.decoder.num_query_channels}) must equal the "
                f"input width num_patch_channels + Fourier features ({self.num_input_channels}): the inputs are "
                "the queries"
            )
        if self.decoder.num_output_channels != 2:
            raise ConfigError(
                "OpticalFlowConfig.decoder.num_output_channels must be 2 (u, v), "
                f"got {self.decoder.num_output_channels}"
            )


@dataclass
class OpticalFlowOutput:
    """``flow``: ``(B, H, W, 2)`` in pixels (or ``(B, P, 2)`` at subsampled pixels); ``latents``: ``(B, N, D)``."""

    flow: Tensor
    latents: Tensor


class OpticalFlow(PerceiverIOBase):
    """Two frames ``(B, 2, 3, H, W)`` (or their 3×3 patches ``(B, 2, 27, H, W)``) -> flow ``(B, H, W, 2)``.

    >>> model = perceiver_io.create_model("optical-flow-perceiver")
    >>> flow = model(frames).flow                        # (B, H, W, 2)
    >>> flow = model(frames, chunk_size=8192).flow       # same, decoder memory bounded
    """

    config_class = OpticalFlowConfig
    config: OpticalFlowConfig

    def __init__(self, config: OpticalFlowConfig) -> None:
        super().__init__(config)
        c = config
        self.input_adapter = FlowInputAdapter(
            c.image_size, c.num_image_channels, 2, c.patch_size, c.num_patch_channels, c.num_frequency_bands
        )
        self.encoder = PerceiverEncoder(c.encoder, c.num_input_channels)
        self.query_builder = InputQueries(c.num_input_channels)
        self.decoder = PerceiverDecoder(c.decoder, c.encoder.num_latent_channels)
        self.output_adapter = FlowOutputAdapter(c.rescale_factor)

    def decode(  # type: ignore[override]
        self,
        latents: Tensor,
        queries: Tensor | None = None,
        query_mask: Tensor | None = None,
        chunk_size: int | None = None,
        *,
        inputs: Tensor | None = None,
        query_indices: Tensor | None = None,
        image_shape: Sequence[int] | None = None,
    ) -> Tensor:
        """Decode flow from ``latents (B, N, D)``; the queries are the adapted ``inputs (B, H·W, C)``.

        Returns ``(B, H, W, 2)`` (``image_shape`` = (H, W), default the config's ``image_size``), or
        ``(B, P, 2)`` for ``query_indices (P,)`` (flat pixel indices, for subsampled training).
        """
        rows = self.decode_rows(latents, queries, query_mask, chunk_size, inputs=inputs, query_indices=query_indices)
        if query_indices is not None:
            return rows / self.config.rescale_factor
        return self.output_adapter(rows, tuple(image_shape or self.config.image_size))

    def forward(  # type: ignore[override]
        self,
        frames: Tensor,
        chunk_size: int | None = None,
        query_indices: Tensor | None = None,
    ) -> OpticalFlowOutput:
        """``frames (B, 2, 3, H, W)`` or patches ``(B, 2, 27, H, W)`` -> :class:`OpticalFlowOutput`.

        The encoder runs once; with ``chunk_size`` the per-pixel queries are decoded in chunks.
        """
        x = self.input_adapter(frames)
        latents = self.encoder(x)
        flow = self.decode(
            latents, chunk_size=chunk_size, inputs=x, query_indices=query_indices, image_shape=frames.shape[-2:]
        )
        return OpticalFlowOutput(flow=flow, latents=latents)


@register_model("optical-flow-perceiver", OpticalFlow)
def optical_flow_perceiver() -> OpticalFlowConfig:
    """``deepmind/optical-flow-perceiver``: 368×496 training size, 2048 × 512 latents, 24 layers, 16 heads."""
    return OpticalFlowConfig()
