"""Optical flow (Perceiver IO, Sec. 4.2): two frames in, a per-pixel flow field out.

Read: both frames' 3×3 patches + 2-D Fourier features, one input row per pixel (322 channels).
Process: 2048 × 512 latents, 24 self-attention layers. Write: **the inputs are the queries**
(one per pixel, no query residual), a zero-initialised ``Linear(2)``, ÷ ``rescale_factor``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from perceiver_io.adapters.flow import FlowHead, OpticalFlowOutput, flow_image_config
from perceiver_io.adapters.image import ImageInputAdapter
from perceiver_io.config import Config, ConfigError
from perceiver_io.decoder import DecoderConfig, PerceiverDecoder
from perceiver_io.encoder import EncoderConfig, PerceiverEncoder, tiny_encoder
from perceiver_io.models.base import PerceiverIOBase
from perceiver_io.registry import PretrainedInfo, register_model

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
    return DecoderConfig(num_output_channels=2, num_heads=1, use_query_residual=False, output_init="zeros")


@dataclass
class OpticalFlowConfig(Config):
    """Optical-flow model; defaults are the published model (``deepmind/optical-flow-perceiver``).

    ``image_size`` is the training resolution (Fourier ``max_resolution``); other sizes run too.
    The decoder's query width is the input width ``num_patch_channels + 2·(2K+1)`` (322).
    """

    image_size: tuple[int, int] = (368, 496)
    num_image_channels: int = 3
    patch_size: int = 3
    num_patch_channels: int = 64
    num_frequency_bands: int = 64
    rescale_factor: float = 100.0
    encoder: EncoderConfig = field(default_factory=_flow_encoder)
    decoder: DecoderConfig = field(default_factory=_flow_decoder)

    def image(self):
        return flow_image_config(
            self.image_size, self.num_image_channels, self.patch_size, self.num_patch_channels, self.num_frequency_bands
        )

    @property
    def num_input_channels(self) -> int:
        return self.image().num_channels()

    def validate(self) -> None:
        self._positive("num_image_channels", "patch_size", "num_patch_channels", "num_frequency_bands")
        if len(self.image_size) != 2 or any(not isinstance(v, int) or v <= 0 for v in self.image_size):
            raise ConfigError(f"OpticalFlowConfig.image_size must be two positive integers, got {self.image_size!r}")
        if self.patch_size % 2 == 0:
            raise ConfigError(f"OpticalFlowConfig.patch_size must be odd, got {self.patch_size}")
        if not isinstance(self.rescale_factor, (int, float)) or self.rescale_factor <= 0:
            raise ConfigError(f"OpticalFlowConfig.rescale_factor must be > 0, got {self.rescale_factor!r}")
        if self.decoder.num_query_channels not in (None, self.num_input_channels):
            raise ConfigError(
                f"OpticalFlowConfig.decoder.num_query_channels ({self.decoder.num_query_channels}) must be None or "
                f"the input width num_patch_channels + Fourier features ({self.num_input_channels}): the inputs "
                "are the queries"
            )
        if self.decoder.num_output_channels != 2:
            raise ConfigError(
                "OpticalFlowConfig.decoder.num_output_channels must be 2 (u, v), "
                f"got {self.decoder.num_output_channels}"
            )


class OpticalFlow(PerceiverIOBase):
    """Two frames ``(B, 2, 3, H, W)`` (or their 3×3 patches ``(B, 2, 27, H, W)``) -> flow ``(B, H, W, 2)``.

    >>> model = perceiver_io.create_model("optical-flow-perceiver")
    >>> flow = model(frames).flow                        # (B, H, W, 2); decoder memory bounded ("auto")
    >>> flow = model(frames, query_indices=idx).flow     # (B, P, 2) at flat pixel indices (training)
    """

    config_class = OpticalFlowConfig
    config: OpticalFlowConfig

    def __init__(self, config: OpticalFlowConfig) -> None:
        super().__init__(config)
        c = config
        self.input_adapter = ImageInputAdapter(c.image())
        self.encoder = PerceiverEncoder(c.encoder, c.num_input_channels)
        self.head = FlowHead(c.num_input_channels, c.rescale_factor)
        self.decoder = PerceiverDecoder(c.decoder, c.encoder.num_latent_channels, c.num_input_channels)

    def example_inputs(self, batch_size: int = 1) -> dict:
        """Two random frames at a small size (any size runs: 32×48), in the model's input range (-1, 1)."""
        return {"inputs": torch.rand(batch_size, 2, self.config.num_image_channels, 32, 48) * 2 - 1}


@register_model(
    "optical-flow-perceiver",
    OpticalFlow,
    info=PretrainedInfo(
        hub_id="deepmind/optical-flow-perceiver",
        hf_architecture="PerceiverForOpticalFlow",
        paper_params="27.9M (the released architecture has 41.1M)",
        input_range=(-1.0, 1.0),
        output_scale=20.0,
        tile_size=(368, 496),
    ),
)
def optical_flow_perceiver() -> OpticalFlowConfig:
    """``deepmind/optical-flow-perceiver``: 368×496 training size, 2048 × 512 latents, 24 layers, 16 heads."""
    return OpticalFlowConfig()


@register_model(
    "optical-flow-perceiver-small",
    OpticalFlow,
    info=PretrainedInfo(input_range=(-1.0, 1.0), output_scale=20.0, tile_size=(64, 64)),
)
def optical_flow_perceiver_small() -> OpticalFlowConfig:
    """The CPU preset of ``perceiver-io train flow``: 64×64 training size, 7×7 patches of both frames
    (the published model's are 3×3) projected to 64 channels, 16 Fourier bands (64 + 66 = 130 input
    channels), 128 × 128 latents, 6 self-attention layers (4 heads), widening 2, cross-attention keys
    64 wide in the encoder and decoder (1.0M parameters; about 0.65 s per training step of 8 pairs on
    one CPU thread). Unlike the published decoder, the query (each pixel's own patches and position)
    is added to the attention output, and the attention starts at zero (``attention_init="zeros"``):
    with the published decoder the CPU run stays at zero flow. The larger patches let a pixel's own
    query see motions of up to 3 px; at 32×32 they cut the test EPE after 1,500 steps from 1.10
    (3×3) to 0.99 (5×5) and 0.98 (9×9) (docs/results.md §5)."""
    return OpticalFlowConfig(
        image_size=(64, 64),
        patch_size=7,
        num_frequency_bands=16,
        encoder=EncoderConfig(
            num_latents=128,
            num_latent_channels=128,
            num_blocks=1,
            num_self_attends_per_block=6,
            num_cross_attention_heads=1,
            num_self_attention_heads=4,
            cross_attention_qk_channels=64,
            cross_attention_v_channels=128,
            cross_attention_widening_factor=2,
            self_attention_widening_factor=2,
        ),
        decoder=_flow_decoder().replace(
            num_qk_channels=64, num_v_channels=128, use_query_residual=True, attention_init="zeros"
        ),
    )


@register_model("test-optical-flow", OpticalFlow, info=PretrainedInfo(tiny=True, input_range=(-1.0, 1.0)))
def test_optical_flow() -> OpticalFlowConfig:
    """Tiny flow model: 12×16 training size, 8 Fourier bands, 16 × 32 latents, 2 layers."""
    return OpticalFlowConfig(
        image_size=(12, 16),
        num_patch_channels=8,
        num_frequency_bands=8,
        encoder=tiny_encoder(num_latents=16),
    )
