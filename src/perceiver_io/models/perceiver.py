"""The original Perceiver (Jaegle et al. 2021, arXiv 2103.03206): no query decoder.

The latents cross-attend to the inputs before every block (the first cross-attention has its
own weights, the later ones share one set), the final latents are averaged over the latent
index and a zero-initialised Linear layer gives the logits (DeepMind's ``ProjectionDecoder``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from perceiver_io.adapters.base import IdentityInputAdapter
from perceiver_io.adapters.image import ImageAdapterConfig, ImageInputAdapter
from perceiver_io.config import Config, ConfigError
from perceiver_io.encoder import EncoderConfig, PerceiverEncoder, tiny_encoder
from perceiver_io.heads import ClassifierOutput, PoolingClassificationHead
from perceiver_io.models.base import PerceiverIOBase
from perceiver_io.registry import PretrainedInfo, register_model

__all__ = ["PerceiverConfig", "Perceiver", "ClassifierOutput"]


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


class Perceiver(PerceiverIOBase):
    """``model(inputs)`` -> :class:`ClassifierOutput` (``logits (B, num_classes)``, ``latents (B, N, D)``).

    ``inputs`` are images ``(B, C, H, W)`` with an image adapter, otherwise ``(B, M, C)``. The head
    reads the latents directly (there is no query decoder: ``decoder`` is ``None``).
    """

    config_class = PerceiverConfig
    config: PerceiverConfig

    def __init__(self, config: PerceiverConfig) -> None:
        super().__init__(config)
        if config.image is not None:
            self.input_adapter: nn.Module = ImageInputAdapter(config.image)
            num_input_channels = config.image.num_channels()
        else:
            num_input_channels = config.num_input_channels  # type: ignore[assignment]
            self.input_adapter = IdentityInputAdapter(num_input_channels)
        self.encoder = PerceiverEncoder(config.encoder, num_input_channels)
        self.decoder = None
        self.head = PoolingClassificationHead(config.encoder.num_latent_channels, config.num_classes)


@register_model("perceiver-fourier", Perceiver)
def perceiver_fourier() -> PerceiverConfig:
    """The original Perceiver on ImageNet: pixels + 2-D Fourier features, 8 cross-attends (7 shared),
    8 blocks × 6 shared self-attends, 512 × 1024 latents (42.1M in the Perceiver IO paper's Table 7)."""
    return PerceiverConfig(image=ImageAdapterConfig(image_shape=(224, 224), prep_type="pixels", num_bands=64))


@register_model("test-perceiver", Perceiver, info=PretrainedInfo(tiny=True))
def test_perceiver() -> PerceiverConfig:
    """Tiny original Perceiver on 12×12 pixels: 3 cross-attends (2 shared), 8 × 32 latents, 4 classes."""
    return PerceiverConfig(
        image=ImageAdapterConfig(image_shape=(12, 12), prep_type="pixels", num_bands=4),
        encoder=tiny_encoder(num_blocks=3, num_self_attends_per_block=1, cross_attend_every_block=True),
        num_classes=4,
    )
