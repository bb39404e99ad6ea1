"""Classifiers: one learned query cross-attends to the latents; a Linear layer gives the logits.

* :class:`ImageClassifier`: images ``(B, C, H, W)`` -> logits ``(B, num_classes)``; presets
  ``vision-perceiver-fourier`` / ``-learned`` / ``-conv`` (the ImageNet models of the paper).
* :class:`TextClassifier`: byte ids ``(B, L)`` -> logits ``(B, num_classes)``
  (``transformers``' ``PerceiverForSequenceClassification``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from perceiver_io.adapters.image import ImageAdapterConfig, ImageInputAdapter
from perceiver_io.adapters.text import TextAdapterConfig, TextInputAdapter
from perceiver_io.config import Config, ConfigError
from perceiver_io.decoder import DecoderConfig, PerceiverDecoder
from perceiver_io.encoder import EncoderConfig, PerceiverEncoder, tiny_encoder
from perceiver_io.heads import ClassificationHead, ClassifierOutput
from perceiver_io.models.base import PerceiverIOBase
from perceiver_io.queries import LearnedQueries
from perceiver_io.registry import PretrainedInfo, register_model

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
    return DecoderConfig(num_heads=1, use_query_residual=True)


def _check_num_classes(config: Config) -> None:
    name = type(config).__name__
    config._positive("num_classes")
    out = config.decoder.num_output_channels  # type: ignore[attr-defined]
    if out not in (None, config.num_classes):  # type: ignore[attr-defined]
        raise ConfigError(
            f"{name}.decoder.num_output_channels ({out}) must be None or num_classes ({config.num_classes})"  # type: ignore[attr-defined]
        )


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


def _classifier_parts(model: PerceiverIOBase, num_input_channels: int) -> None:
    """Encoder, one learned class query of the latent width (by default), decoder projecting to ``num_classes``."""
    c = model.config
    e = c.decoder.num_query_channels or c.encoder.num_latent_channels  # type: ignore[attr-defined]
    model.encoder = PerceiverEncoder(c.encoder, num_input_channels)  # type: ignore[attr-defined]
    model.head = ClassificationHead(LearnedQueries(1, e, c.query_init_scale))  # type: ignore[attr-defined]
    decoder = c.decoder.replace(num_output_channels=c.num_classes)  # type: ignore[attr-defined]
    model.decoder = PerceiverDecoder(decoder, c.encoder.num_latent_channels, e)  # type: ignore[attr-defined]


class ImageClassifier(PerceiverIOBase):
    """``model(images (B, C, H, W))`` -> :class:`ClassifierOutput` with ``logits (B, num_classes)``."""

    config_class = ImageClassifierConfig
    config: ImageClassifierConfig

    def __init__(self, config: ImageClassifierConfig) -> None:
        super().__init__(config)
        self.input_adapter = ImageInputAdapter(config.image)
        _classifier_parts(self, self.input_adapter.num_channels)


@dataclass
class TextClassifierConfig(Config):
    """Text classifier on UTF-8 bytes; the class query is ``decoder.num_query_channels`` wide
    (default: the latent width)."""

    text: TextAdapterConfig = field(default_factory=TextAdapterConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    decoder: DecoderConfig = field(default_factory=_classification_decoder)
    num_classes: int = 2
    query_init_scale: float = 0.02

    def validate(self) -> None:
        _check_num_classes(self)


class TextClassifier(PerceiverIOBase):
    """``model(input_ids (B, L), input_mask (B, L))`` -> :class:`ClassifierOutput` with ``logits (B, num_classes)``."""

    config_class = TextClassifierConfig
    config: TextClassifierConfig

    def __init__(self, config: TextClassifierConfig) -> None:
        super().__init__(config)
        self.input_adapter = TextInputAdapter(config.text)
        _classifier_parts(self, config.text.num_channels)


@register_model(
    "vision-perceiver-fourier",
    ImageClassifier,
    info=PretrainedInfo(
        hub_id="deepmind/vision-perceiver-fourier",
        hf_architecture="PerceiverForImageClassificationFourier",
        paper_params="48.4M",
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
        crop_size=224,
        resize_size=256,
    ),
)
def vision_perceiver_fourier() -> ImageClassifierConfig:
    """ImageNet, raw pixels + 2-D Fourier features (64 bands): 3 + 258 = 261 input channels (48.4M in the paper)."""
    return ImageClassifierConfig(
        image=ImageAdapterConfig(image_shape=(224, 224), prep_type="pixels", position_encoding="fourier", num_bands=64)
    )


@register_model(
    "vision-perceiver-learned",
    ImageClassifier,
    info=PretrainedInfo(
        hub_id="deepmind/vision-perceiver-learned",
        hf_architecture="PerceiverForImageClassificationLearned",
        paper_params="62.3M",
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
        crop_size=224,
        resize_size=256,
    ),
)
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


@register_model(
    "vision-perceiver-conv",
    ImageClassifier,
    info=PretrainedInfo(
        hub_id="deepmind/vision-perceiver-conv",
        hf_architecture="PerceiverForImageClassificationConvProcessing",
        paper_params="48.6M",
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
        crop_size=224,
        resize_size=256,
    ),
)
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


@register_model("test-vision-perceiver", ImageClassifier, info=PretrainedInfo(tiny=True, mean=(0.5,), std=(0.5,)))
def test_vision_perceiver() -> ImageClassifierConfig:
    """Tiny image classifier: 16×16 pixels + 2-D Fourier features (4 bands), 8 × 32 latents, 5 classes."""
    return vision_perceiver_fourier().replace(
        image={"image_shape": (16, 16), "num_bands": 4},
        encoder=tiny_encoder(num_blocks=2, num_self_attends_per_block=1),
        num_classes=5,
    )


@register_model("test-vision-perceiver-conv", ImageClassifier, info=PretrainedInfo(tiny=True))
def test_vision_perceiver_conv() -> ImageClassifierConfig:
    """Tiny conv + max-pool classifier: 32×32 -> 8×8 × 8 + Fourier features, learned-position variant's shape."""
    return vision_perceiver_conv().replace(
        image={"image_shape": (32, 32), "out_channels": 8, "num_bands": 4},
        encoder=tiny_encoder(num_self_attends_per_block=1),
        num_classes=3,
    )


@register_model("test-vision-perceiver-learned", ImageClassifier, info=PretrainedInfo(tiny=True))
def test_vision_perceiver_learned() -> ImageClassifierConfig:
    """Tiny 1×1-conv classifier with learned, projected positions (the ``-learned`` preset's shape)."""
    return vision_perceiver_learned().replace(
        image={"image_shape": (8, 8), "out_channels": 8, "num_position_channels": 8, "project_pos_dim": 8},
        encoder=tiny_encoder(num_self_attends_per_block=1),
        num_classes=3,
    )


@register_model("test-text-classifier", TextClassifier, info=PretrainedInfo(tiny=True))
def test_text_classifier() -> TextClassifierConfig:
    """Tiny byte-level text classifier: 32 bytes, C = 16, 8 × 32 latents, 2 classes."""
    return TextClassifierConfig(
        text=TextAdapterConfig(max_seq_len=32, num_channels=16),
        encoder=tiny_encoder(),
        num_classes=2,
    )
