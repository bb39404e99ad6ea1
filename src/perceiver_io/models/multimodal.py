"""Multimodal autoencoding (Perceiver IO, Sec. 4.3): video + audio + label in, all three out.

Read: video as 4×4 patches + 3-D Fourier features, audio as 16-sample patches + 1-D Fourier
features, the one-hot label; each padded to a common width (704) with learned per-modality
vectors, concatenated in sorted order (audio, image, label). Process: 784 × 512 latents, 8 layers.
Write: one query per pixel, per audio patch and one for the label, padded to 1026 channels, one
shared cross-attention, then per-modality projections (3 colours, 16 samples, 700 logits).

Training decodes a random subset of points (``query_indices``); evaluation decodes every point
with the encoder run **once** and the queries decoded ``chunk_size`` at a time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch

from perceiver_io.adapters.audio import AudioHead, AudioInputAdapter
from perceiver_io.adapters.image import ImageInputAdapter
from perceiver_io.adapters.label import LabelHead, LabelInputAdapter
from perceiver_io.adapters.multimodal import MultimodalAutoencoderOutput, MultimodalHead, MultimodalInputAdapter
from perceiver_io.adapters.video import VideoHead, video_image_config
from perceiver_io.config import Config, ConfigError
from perceiver_io.decoder import DecoderConfig, PerceiverDecoder
from perceiver_io.encoder import EncoderConfig, PerceiverEncoder, tiny_encoder
from perceiver_io.layers.position import num_fourier_channels
from perceiver_io.models.base import PerceiverIOBase
from perceiver_io.registry import PretrainedInfo, register_model

__all__ = [
    "AVInputsConfig",
    "av_input_adapters",
    "MultimodalAutoencoderConfig",
    "MultimodalAutoencoder",
    "MultimodalAutoencoderOutput",
    "MODALITIES",
]

MODALITIES = ("audio", "image", "label")


def _mm_encoder() -> EncoderConfig:
    return EncoderConfig(
        num_latents=784,
        num_latent_channels=512,
        num_blocks=1,
        num_self_attends_per_block=8,
        num_cross_attention_heads=1,
        num_self_attention_heads=8,
    )


def _mm_decoder() -> DecoderConfig:
    return DecoderConfig(num_output_channels=512, num_heads=1, use_query_residual=False)


def _default_mask_probs() -> dict[str, float]:
    return {"audio": 0.0, "image": 0.0, "label": 1.0}


@dataclass
class AVInputsConfig(Config):
    """The audio-visual inputs: video as patches + 3-D Fourier features, audio as patches + 1-D Fourier
    features, each padded to one width with a learned per-modality vector. Defaults: Kinetics-700
    (``deepmind/multimodal-perceiver``).

    * ``video_shape`` ``(T, H, W)``; ``image_max_resolution``: Fourier max resolution of the video
      (input patch grid and output pixel grid alike, as the official code), default the patch grid.
    * ``audio_max_resolution``: default ``(num_audio_samples,)``.
    """

    video_shape: tuple[int, int, int] = (16, 224, 224)
    num_image_channels: int = 3
    image_patch_size: int = 4
    image_temporal_patch_size: int = 1
    image_num_bands: int = 32
    image_max_resolution: tuple[int, int, int] | None = (16, 56, 56)
    num_audio_samples: int = 30720
    samples_per_patch: int = 16
    audio_num_bands: int = 192
    audio_max_resolution: tuple[int] | None = None
    input_min_padding_size: int = 4
    init_scale: float = 0.02

    def validate(self) -> None:
        name = type(self).__name__
        self._positive(
            "num_image_channels",
            "image_patch_size",
            "image_temporal_patch_size",
            "image_num_bands",
            "num_audio_samples",
            "samples_per_patch",
            "audio_num_bands",
        )
        if len(self.video_shape) != 3 or any(not isinstance(v, int) or v <= 0 for v in self.video_shape):
            raise ConfigError(f"{name}.video_shape must be 3 positive integers (T, H, W), got {self.video_shape!r}")
        t, h, w = self.video_shape
        if t % self.image_temporal_patch_size or h % self.image_patch_size or w % self.image_patch_size:
            raise ConfigError(
                f"{name}.video_shape {self.video_shape} must be divisible by the patch sizes "
                f"(image_temporal_patch_size, image_patch_size) = "
                f"({self.image_temporal_patch_size}, {self.image_patch_size})"
            )
        if self.num_audio_samples % self.samples_per_patch:
            raise ConfigError(
                f"{name}.num_audio_samples ({self.num_audio_samples}) must be divisible by "
                f"samples_per_patch ({self.samples_per_patch})"
            )
        for field_name, value, n in (
            ("image_max_resolution", self.image_max_resolution, 3),
            ("audio_max_resolution", self.audio_max_resolution, 1),
        ):
            if value is not None and (len(value) != n or any(v <= 0 for v in value)):
                raise ConfigError(f"{name}.{field_name} must be {n} positive numbers or None, got {value!r}")
        v = self.input_min_padding_size
        if not isinstance(v, int) or v < 0:
            raise ConfigError(f"{name}.input_min_padding_size must be a non-negative integer, got {v!r}")


def av_input_adapters(c: AVInputsConfig) -> dict[str, ImageInputAdapter | AudioInputAdapter]:
    """``{"audio": AudioInputAdapter, "image": ImageInputAdapter}`` (video patches) for ``c``."""
    image = ImageInputAdapter(
        video_image_config(
            c.video_shape,
            c.num_image_channels,
            c.image_patch_size,
            c.image_temporal_patch_size,
            c.image_num_bands,
            c.image_max_resolution,
        )
    )
    audio = AudioInputAdapter(c.num_audio_samples, c.samples_per_patch, c.audio_num_bands, c.audio_max_resolution)
    return {"audio": audio, "image": image}


@dataclass
class MultimodalAutoencoderConfig(AVInputsConfig):
    """Kinetics-700 autoencoder; defaults are the published model (``deepmind/multimodal-perceiver``).
    The input fields are :class:`AVInputsConfig`'s.

    * ``mask_probs``: per-modality probability that an input row is replaced by a learned mask
      token (applied in training and evaluation, as the official code). The released model uses
      ``label: 1.0`` (the label is always hidden: the model classifies); the paper trained with 0.5.
    * ``full_query_positions``: positions of the Fourier queries when *every* point is decoded:
      ``"grid"`` = ``linspace(-1, 1, n)`` (official ``BasicDecoder``), ``"index"`` = ``-1 + 2i/n``
      (the subsampled formula used in training; ``transformers`` and the colab decode this way).
    """

    num_classes: int = 700
    label_query_channels: int = 1024
    query_min_padding_size: int = 2
    mask_probs: dict[str, float] = field(default_factory=_default_mask_probs)
    full_query_positions: Literal["grid", "index"] = "grid"
    encoder: EncoderConfig = field(default_factory=_mm_encoder)
    decoder: DecoderConfig = field(default_factory=_mm_decoder)

    def query_channels(self) -> dict[str, int]:
        return {
            "audio": num_fourier_channels(1, self.audio_num_bands),
            "image": num_fourier_channels(3, self.image_num_bands),
            "label": self.label_query_channels,
        }

    def validate(self) -> None:
        super().validate()
        self._positive("num_classes", "label_query_channels")
        v = self.query_min_padding_size
        if not isinstance(v, int) or v < 0:
            raise ConfigError(
                f"MultimodalAutoencoderConfig.query_min_padding_size must be a non-negative integer, got {v!r}"
            )
        if not isinstance(self.mask_probs, dict):
            raise ConfigError(f"MultimodalAutoencoderConfig.mask_probs must be a dict, got {self.mask_probs!r}")
        for m, p in self.mask_probs.items():
            if m not in MODALITIES:
                raise ConfigError(f"MultimodalAutoencoderConfig.mask_probs: unknown modality {m!r}; known {MODALITIES}")
            if not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
                raise ConfigError(f"MultimodalAutoencoderConfig.mask_probs[{m!r}] must be in [0, 1], got {p!r}")
        width = max(self.query_channels().values()) + self.query_min_padding_size
        if self.decoder.num_query_channels not in (None, width):
            raise ConfigError(
                f"MultimodalAutoencoderConfig.decoder.num_query_channels ({self.decoder.num_query_channels}) must "
                f"be None or the padded query width max(query widths) + query_min_padding_size ({width})"
            )
        if self.decoder.num_output_channels is None:
            raise ConfigError("MultimodalAutoencoderConfig.decoder.num_output_channels must be set (512 published)")


class MultimodalAutoencoder(PerceiverIOBase):
    """``{"image": (B, T, 3, H, W), "audio": (B, S), "label": (B, K)}`` -> reconstructions of all three.

    >>> model = perceiver_io.create_model("multimodal-perceiver")
    >>> out = model(inputs, query_indices={"image": idx_img, "audio": idx_aud})   # training, subsampled
    >>> latents = model.encode(inputs)                                            # evaluation: encode once,
    >>> out = model.decode(latents)                                               # decode all points in chunks

    ``mask_probs=`` (to ``forward``/``encode``/``adapt``) overrides the configured mask-token
    probabilities for one call; ``input_mask (B, M)`` covers the concatenated (audio, image, label) rows.
    """

    config_class = MultimodalAutoencoderConfig
    config: MultimodalAutoencoderConfig

    def __init__(self, config: MultimodalAutoencoderConfig) -> None:
        super().__init__(config)
        c = config
        inputs = av_input_adapters(c)
        audio_in, image_in = inputs["audio"], inputs["image"]
        self.input_adapter = MultimodalInputAdapter(
            {"audio": audio_in, "image": image_in, "label": LabelInputAdapter(c.num_classes)},
            min_padding_size=c.input_min_padding_size,
            mask_probs=c.mask_probs,
            init_scale=c.init_scale,
        )
        self.encoder = PerceiverEncoder(c.encoder, self.input_adapter.num_channels)
        f = c.decoder.num_output_channels
        image_max_res = c.image_max_resolution or image_in.fourier.index_dims
        self.head = MultimodalHead(
            {
                "audio": AudioHead(
                    audio_in.num_patches,
                    c.audio_num_bands,
                    audio_in.position_encoding.max_resolution,
                    f,
                    c.samples_per_patch,
                    full_positions=c.full_query_positions,
                ),
                "image": VideoHead(
                    c.video_shape, c.image_num_bands, image_max_res, f, c.num_image_channels, c.full_query_positions
                ),
                "label": LabelHead(c.label_query_channels, f, c.num_classes, c.init_scale),
            },
            min_padding_size=c.query_min_padding_size,
            init_scale=c.init_scale,
        )
        self.decoder = PerceiverDecoder(c.decoder, c.encoder.num_latent_channels, self.head.num_query_channels)

    def example_inputs(self, batch_size: int = 1) -> dict:
        """Random inputs and, as in training, a random subset of 512 pixels and 64 audio patches to decode."""
        sizes = self.head.sizes()
        idx = {m: torch.randperm(sizes[m])[:n] for m, n in (("image", 512), ("audio", 64))}
        inputs = self.input_adapter.example_inputs(batch_size)
        inputs["image"] = (inputs["image"] + 1) / 2  # video in the model's training range [0, 1]
        return {"inputs": inputs, "query_indices": idx}


@register_model(
    "multimodal-perceiver",
    MultimodalAutoencoder,
    info=PretrainedInfo(
        hub_id="deepmind/multimodal-perceiver",
        hf_architecture="PerceiverForMultimodalAutoencoding",
        paper_params="20.0M",
        input_range=(0.0, 1.0),
    ),
)
def multimodal_perceiver() -> MultimodalAutoencoderConfig:
    """``deepmind/multimodal-perceiver``: 16×224×224 video, 30,720 audio samples, 700 classes, 784 × 512 latents."""
    return MultimodalAutoencoderConfig()


# the tiny presets' inputs: 2×8×8 video (4×4 patches), 64 audio samples (16 per patch)
TINY_AV_INPUTS = {
    "video_shape": (2, 8, 8),
    "image_num_bands": 2,
    "image_max_resolution": None,
    "num_audio_samples": 64,
    "audio_num_bands": 3,
}


@register_model("test-multimodal-perceiver", MultimodalAutoencoder, info=PretrainedInfo(tiny=True))
def test_multimodal_perceiver() -> MultimodalAutoencoderConfig:
    """Tiny autoencoder: 2×8×8 video (4×4 patches), 64 audio samples (16 per patch), 5 classes, 8 × 32 latents."""
    return MultimodalAutoencoderConfig(
        **TINY_AV_INPUTS,
        num_classes=5,
        label_query_channels=16,
        mask_probs={"label": 0.5},  # the paper's training setting; mask tokens only where they can be drawn
        encoder=tiny_encoder(),
        decoder=DecoderConfig(num_output_channels=16, num_heads=1, use_query_residual=False),
    )
