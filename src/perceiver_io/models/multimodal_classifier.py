"""Audio-visual classification from raw signals (Perceiver IO, Sec. 4.3 / AudioSet; Perceiver, Sec. 4.2).

The inputs are the multimodal autoencoder's (:class:`~perceiver_io.models.multimodal.AVInputsConfig`):
video as patches + 3-D Fourier features and/or audio as patches + 1-D Fourier features, padded to
one width with learned modality vectors; ``modalities`` chooses audio, video (``"image"``) or both.
The latents are read out by one of two heads, everything else equal:

* ``head="attention"``: Perceiver IO's decoder, one learned query cross-attending to the latents;
* ``head="pool"``: the Perceiver's classifier, the latents averaged, then a Linear layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from perceiver_io.adapters.multimodal import MultimodalInputAdapter
from perceiver_io.config import ConfigError
from perceiver_io.decoder import DecoderConfig
from perceiver_io.encoder import EncoderConfig, PerceiverEncoder, tiny_encoder
from perceiver_io.heads import PoolingClassificationHead
from perceiver_io.models.base import PerceiverIOBase
from perceiver_io.models.classifier import _check_num_classes, _classification_decoder, _classifier_parts
from perceiver_io.models.multimodal import TINY_AV_INPUTS, AVInputsConfig, _mm_encoder, av_input_adapters
from perceiver_io.registry import PretrainedInfo, register_model

__all__ = ["MultimodalClassifierConfig", "MultimodalClassifier", "INPUT_MODALITIES"]

INPUT_MODALITIES = ("audio", "image")


def _av_encoder() -> EncoderConfig:
    # the Perceiver IO AudioSet model's processor (Appendix E): the multimodal autoencoder's, with 512 latents
    return _mm_encoder().replace(num_latents=512)


@dataclass
class MultimodalClassifierConfig(AVInputsConfig):
    """Audio and/or video in, ``num_classes`` logits out. Input fields: :class:`AVInputsConfig`'s.

    * ``modalities``: the inputs read, a non-empty subset of ``("audio", "image")``;
    * ``head``: ``"attention"`` (a learned query and the decoder) or ``"pool"`` (average of the
      latents + Linear, no decoder; ``decoder`` is then unused).
    """

    modalities: tuple[str, ...] = INPUT_MODALITIES
    head: Literal["attention", "pool"] = "attention"
    num_classes: int = 527
    query_init_scale: float = 0.02
    encoder: EncoderConfig = field(default_factory=_av_encoder)
    decoder: DecoderConfig = field(default_factory=_classification_decoder)

    def validate(self) -> None:
        super().validate()
        _check_num_classes(self)
        m = tuple(self.modalities)
        if not m or len(set(m)) != len(m) or any(x not in INPUT_MODALITIES for x in m):
            raise ConfigError(
                f"MultimodalClassifierConfig.modalities must be a non-empty subset of {INPUT_MODALITIES} "
                f"without repeats, got {self.modalities!r}"
            )
        if self.head not in ("attention", "pool"):
            raise ConfigError(f"MultimodalClassifierConfig.head must be 'attention' or 'pool', got {self.head!r}")


class MultimodalClassifier(PerceiverIOBase):
    """``model({"audio": (B, S), "image": (B, T, C, H, W)})`` (the configured ``modalities``) ->
    :class:`ClassifierOutput` with ``logits (B, num_classes)`` and ``latents (B, N, D)``."""

    config_class = MultimodalClassifierConfig
    config: MultimodalClassifierConfig

    def __init__(self, config: MultimodalClassifierConfig) -> None:
        super().__init__(config)
        adapters = av_input_adapters(config)
        self.input_adapter = MultimodalInputAdapter(
            {m: adapters[m] for m in config.modalities},
            min_padding_size=config.input_min_padding_size,
            init_scale=config.init_scale,
        )
        if config.head == "attention":
            _classifier_parts(self, self.input_adapter.num_channels)
        else:
            self.encoder = PerceiverEncoder(config.encoder, self.input_adapter.num_channels)
            self.decoder = None
            self.head = PoolingClassificationHead(config.encoder.num_latent_channels, config.num_classes)


def _tiny(head: str) -> MultimodalClassifierConfig:
    return MultimodalClassifierConfig(
        **TINY_AV_INPUTS,  # type: ignore[arg-type]
        num_classes=5,
        head=head,  # type: ignore[arg-type]
        encoder=tiny_encoder(),
    )


@register_model("test-av-classifier", MultimodalClassifier, info=PretrainedInfo(tiny=True))
def test_av_classifier() -> MultimodalClassifierConfig:
    """Tiny audio + video classifier, attention decoder: 2×8×8 video, 64 audio samples, 5 classes, 8 × 32 latents."""
    return _tiny("attention")


@register_model("test-av-classifier-pool", MultimodalClassifier, info=PretrainedInfo(tiny=True))
def test_av_classifier_pool() -> MultimodalClassifierConfig:
    """The same with the Perceiver's pooled head (no decoder)."""
    return _tiny("pool")
