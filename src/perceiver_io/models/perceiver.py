"""The original Perceiver (Jaegle et al. 2021, arXiv 2103.03206): no query decoder.

The latents cross-attend to the inputs before every block (the first cross-attention has its
own weights, the later ones share one set), the final latents are averaged over the latent
index and a zero-initialised Linear layer gives the logits (DeepMind's ``ProjectionDecoder``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from perceiver_io.adapters.image import ImageAdapterConfig, ImageInputAdapter
from perceiver_io.config import Config, ConfigError
from perceiver_io.encoder import EncoderConfig, PerceiverEncoder
from perceiver_io.models.base import PerceiverModel
from perceiver_io.models.classifier import ClassifierOutput
from perceiver_io.models.registry import register_model

__all__ = ["PerceiverConfig", "Perceiver"]


def _perceiver_encoder() -> EncoderConfig:
    return EncoderConfig(
        num_latents=512,
        num_latent_channels=1024,
        num_blocks=8,
        num_self_attends_per_block=6,
        num_cross_attention_heads=1,
        num_self_attention_heads=8,
        cross_attend_every_block=True,
    )


@dataclass
class PerceiverConfig(Config):
    """``image``: an image adapter, or ``None`` for ready-made inputs ``(B, M, num_input_channels)``."""

    image: ImageAdapterConfig | None = field(default_factory=ImageAdapterConfig)
    num_input_channels: int | None = None
    encoder: EncoderConfig = field(default_factory=_perceiver_encoder)
    num_classes: int = 1000

    def validate(self) -> None:
        self._positive("num_classes")
        self._positive("num_input_channels", allow_none=True)
        if self.image is None and self.num_input_channels is None:
            raise ConfigError("PerceiverConfig.num_input_channels must be given when image is None")
        if self.image is not None and self.num_input_channels not in (None, self.image.num_channels()):
            raise ConfigError(
                f"PerceiverConfig.num_input_channels ({self.num_input_channels}) must be None or the image "
                f"adapter's width ({self.image.num_channels()})"
            )


class Perceiver(PerceiverModel):
    """``model(inputs)`` -> :class:`ClassifierOutput` (``logits (B, num_classes)``, ``latents (B, N, D)``).

    ``inputs`` are images ``(B, C, H, W)`` with an image adapter, otherwise ``(B, M, C)``.
    """

    config_class = PerceiverConfig
    config: PerceiverConfig

    def __init__(self, config: PerceiverConfig) -> None:
        super().__init__(config)
        if config.image is not None:
            self.input_adapter: nn.Module = ImageInputAdapter(config.image)
            num_input_channels = config.image.num_channels()
        else:
            self.input_adapter = nn.Identity()
            num_input_channels = config.num_input_channels
        self.encoder = PerceiverEncoder(config.encoder, num_input_channels)  # type: ignore[arg-type]
        self.head = nn.Linear(config.encoder.num_latent_channels, config.num_classes)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def encode(self, inputs: Tensor, input_mask: Tensor | None = None) -> Tensor:
        """Inputs -> latents ``(B, N, D)``."""
        return self.encoder(self.input_adapter(inputs), input_mask)

    def decode(self, latents: Tensor) -> Tensor:
        """Average over latents, then Linear: ``(B, N, D)`` -> ``(B, num_classes)``."""
        return self.head(torch.mean(latents, dim=1))

    def forward(self, inputs: Tensor, input_mask: Tensor | None = None) -> ClassifierOutput:
        latents = self.encode(inputs, input_mask)
        return ClassifierOutput(logits=self.decode(latents), latents=latents)


@register_model("perceiver-fourier", Perceiver)
def perceiver_fourier() -> PerceiverConfig:
    """The original Perceiver on ImageNet: pixels + 2-D Fourier features, 8 cross-attends (7 shared),
    8 blocks × 6 shared self-attends, 512 × 1024 latents (42.1M in the Perceiver IO paper's Table 7)."""
    return PerceiverConfig(image=ImageAdapterConfig(image_shape=(224, 224), prep_type="pixels", num_bands=64))
