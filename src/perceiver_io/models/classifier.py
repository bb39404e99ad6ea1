"""Classifiers: one learned query cross-attends to the latents; a Linear layer gives the logits.

* :class:`ImageClassifier`: images ``(B, C, H, W)`` -> logits ``(B, num_classes)``; presets
  ``vision-perceiver-fourier`` / ``-learned`` / ``-conv`` (the ImageNet models of the paper).
* :class:`TextClassifier`: byte ids ``(B, L)`` -> logits ``(B, num_classes)``
  (``transformers``' ``PerceiverForSequenceClassification``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor

from perceiver_io.adapters.image import ClassificationOutputAdapter, ImageAdapterConfig, ImageInputAdapter
from perceiver_io.adapters.text import TextAdapterConfig, TextInputAdapter
from perceiver_io.config import Config, ConfigError
from perceiver_io.decoder import DecoderConfig, PerceiverDecoder
from perceiver_io.encoder import EncoderConfig, PerceiverEncoder
from perceiver_io.models.perceiver_io import PerceiverIOBase
from perceiver_io.models.registry import register_model
from perceiver_io.queries import LearnedQueries

__all__ = [
    "ClassifierOutput",
    "ImageClassifierConfig",
    "ImageClassifier",
    "TextClassifierConfig",
    "TextClassifier",
]


def _imagenet_encoder() -> EncoderConfig:
    # official PerceiverEncoder defaults: 512 × 1024 latents, 8 blocks × 6 shared self-attends, 1 cross head
    return EncoderConfig(
        num_latents=512,
        num_latent_channels=1024,
        num_blocks=8,
        num_self_attends_per_block=6,
        num_cross_attention_heads=1,
        num_self_attention_heads=8,
        cross_attention_widening_factor=1,
        self_attention_widening_factor=1,
    )


def _classification_decoder() -> DecoderConfig:
    return DecoderConfig(num_query_channels=1024, num_heads=1, use_query_residual=True)


def _check_num_classes(config: Config) -> None:
    name = type(config).__name__
    config._positive("num_classes")
    out = config.decoder.num_output_channels  # type: ignore[attr-defined]
    if out not in (None, config.num_classes):  # type: ignore[attr-defined]
        raise ConfigError(
            f"{name}.decoder.num_output_channels ({out}) must be None or num_classes ({config.num_classes})"  # type: ignore[attr-defined]
        )


@dataclass
class ClassifierOutput:
    """``logits``: ``(B, num_classes)``; ``latents``: ``(B, N, D)``."""

    logits: Tensor
    latents: Tensor


@dataclass
class ImageClassifierConfig(Config):
    """Image classifier; the decoder's output width is ``num_classes``. Defaults: ImageNet, 2-D Fourier features."""

    image: ImageAdapterConfig = field(default_factory=ImageAdapterConfig)
    encoder: EncoderConfig = field(default_factory=_imagenet_encoder)
    decoder: DecoderConfig = field(default_factory=_classification_decoder)
    num_classes: int = 1000
    query_init_scale: float = 0.02

    def validate(self) -> None:
        _check_num_classes(self)


class _ClassifierMixin:
    """Shared parts of the classifiers (a mixin, so that it is not registered as a model class)."""

    def _build(self, num_input_channels: int) -> None:
        c = self.config
        self.encoder = PerceiverEncoder(c.encoder, num_input_channels)
        self.query_builder = LearnedQueries(1, c.decoder.num_query_channels, c.query_init_scale)
        self.decoder = PerceiverDecoder(
            c.decoder.replace(num_output_channels=c.num_classes), c.encoder.num_latent_channels
        )
        self.output_adapter = ClassificationOutputAdapter()

    def forward(self, inputs: Tensor, input_mask: Tensor | None = None) -> ClassifierOutput:  # type: ignore[override]
        latents = self.encode(inputs, input_mask)
        return ClassifierOutput(logits=self.decode(latents), latents=latents)


class ImageClassifier(_ClassifierMixin, PerceiverIOBase):
    """``model(images (B, C, H, W))`` -> :class:`ClassifierOutput` with ``logits (B, num_classes)``."""

    config_class = ImageClassifierConfig
    config: ImageClassifierConfig

    def __init__(self, config: ImageClassifierConfig) -> None:
        super().__init__(config)
        self.input_adapter = ImageInputAdapter(config.image)
        self._build(self.input_adapter.num_channels)

    def encode(self, images: Tensor, input_mask: Tensor | None = None) -> Tensor:  # type: ignore[override]
        """``images (B, C, H, W)`` -> latents ``(B, N, D)``."""
        return self.encoder(self.input_adapter(images), input_mask)


@dataclass
class TextClassifierConfig(Config):
    """Text classifier on UTF-8 bytes; the class query is ``decoder.num_query_channels`` wide."""

    text: TextAdapterConfig = field(default_factory=TextAdapterConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    decoder: DecoderConfig = field(default_factory=_classification_decoder)
    num_classes: int = 2
    query_init_scale: float = 0.02

    def validate(self) -> None:
        _check_num_classes(self)


class TextClassifier(_ClassifierMixin, PerceiverIOBase):
    """``model(input_ids (B, L), input_mask (B, L))`` -> :class:`ClassifierOutput` with ``logits (B, num_classes)``."""

    config_class = TextClassifierConfig
    config: TextClassifierConfig

    def __init__(self, config: TextClassifierConfig) -> None:
        super().__init__(config)
        self.input_adapter = TextInputAdapter(config.text)
        self._build(config.text.num_channels)


@register_model("vision-perceiver-fourier", ImageClassifier)
def vision_perceiver_fourier() -> ImageClassifierConfig:
    """ImageNet, raw pixels + 2-D Fourier features (64 bands): 3 + 258 = 261 input channels (48.4M in the paper)."""
    return ImageClassifierConfig(
        image=ImageAdapterConfig(image_shape=(224, 224), prep_type="pixels", position_encoding="fourier", num_bands=64)
    )


@register_model("vision-perceiver-learned", ImageClassifier)
def vision_perceiver_learned() -> ImageClassifierConfig:
    """ImageNet, 1×1 conv to 256 + learned positions (256, projected to 256): 512 channels (62.3M in the paper)."""
    return ImageClassifierConfig(
        image=ImageAdapterConfig(
            image_shape=(224, 224),
            prep_type="conv1x1",
            out_channels=256,
            position_encoding="trainable",
            num_position_channels=256,
            project_pos_dim=256,
        )
    )


@register_model("vision-perceiver-conv", ImageClassifier)
def vision_perceiver_conv() -> ImageClassifierConfig:
    """ImageNet, conv + max-pool to 56² × 64 + 2-D Fourier features: 64 + 258 = 322 channels (48.6M in the paper)."""
    return ImageClassifierConfig(
        image=ImageAdapterConfig(
            image_shape=(224, 224),
            prep_type="conv",
            spatial_downsample=4,
            out_channels=64,
            position_encoding="fourier",
            num_bands=64,
        )
    )
