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

from collections.abc import Mapping
from dataclasses import dataclass, field

from torch import Tensor

from perceiver_io.adapters.audio import AudioInputAdapter, AudioOutputAdapter, AudioQueries
from perceiver_io.adapters.label import LabelInputAdapter, LabelOutputAdapter
from perceiver_io.adapters.multimodal import MultimodalInputAdapter, MultimodalOutputAdapter, MultimodalQueries
from perceiver_io.adapters.video import VideoInputAdapter, VideoOutputAdapter, VideoQueries
from perceiver_io.config import Config, ConfigError
from perceiver_io.decoder import DecoderConfig, PerceiverDecoder
from perceiver_io.encoder import EncoderConfig, PerceiverEncoder
from perceiver_io.layers.position import num_fourier_channels
from perceiver_io.models.perceiver_io import PerceiverIOBase
from perceiver_io.models.registry import register_model
from perceiver_io.queries import LazyQueries, LearnedQueries

__all__ = ["MultimodalAutoencoderConfig", "MultimodalAutoencoder", "MultimodalAutoencoderOutput", "MODALITIES"]

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
    return DecoderConfig(num_query_channels=1026, num_output_channels=512, num_heads=1, use_query_residual=False)


def _default_mask_probs() -> dict[str, float]:
    return {"audio": 0.0, "image": 0.0, "label": 1.0}


@dataclass
class MultimodalAutoencoderConfig(Config):
    """Kinetics-700 autoencoder; defaults are the published model (``deepmind/multimodal-perceiver``).

    * ``video_shape`` ``(T, H, W)``; ``image_max_resolution``: Fourier max resolution of the video
      (input patch grid and output pixel grid alike, as the official code), default the patch grid.
    * ``audio_max_resolution``: default ``(num_audio_samples,)``.
    * ``mask_probs``: per-modality probability that an input row is replaced by a learned mask
      token (applied in training and evaluation, as the official code). The released model uses
      ``label: 1.0`` (the label is always hidden: the model classifies); the paper trained with 0.5.
    * ``full_query_positions``: positions of the Fourier queries when *every* point is decoded:
      ``"grid"`` = ``linspace(-1, 1, n)`` (official ``BasicDecoder``), ``"index"`` = ``-1 + 2i/n``
      (the subsampled formula used in training; ``transformers`` and the colab decode this way).
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
    num_classes: int = 700
    label_query_channels: int = 1024
    input_min_padding_size: int = 4
    query_min_padding_size: int = 2
    mask_probs: dict[str, float] = field(default_factory=_default_mask_probs)
    full_query_positions: str = "grid"
    init_scale: float = 0.02
    encoder: EncoderConfig = field(default_factory=_mm_encoder)
    decoder: DecoderConfig = field(default_factory=_mm_decoder)

    def query_channels(self) -> dict[str, int]:
        return {
            "audio": num_fourier_channels(1, self.audio_num_bands),
            "image": num_fourier_channels(3, self.image_num_bands),
            "label": self.label_query_channels,
        }

    def validate(self) -> None:
        self._positive(
            "num_image_channels",
            "image_patch_size",
            "image_temporal_patch_size",
            "image_num_bands",
            "num_audio_samples",
            "samples_per_patch",
            "audio_num_bands",
            "num_classes",
            "label_query_channels",
        )
        if len(self.video_shape) != 3 or any(not isinstance(v, int) or v <= 0 for v in self.video_shape):
            raise ConfigError(
                "MultimodalAutoencoderConfig.video_shape must be 3 positive integers (T, H, W), "
                f"got {self.video_shape!r}"
            )
        t, h, w = self.video_shape
        if t % self.image_temporal_patch_size or h % self.image_patch_size or w % self.image_patch_size:
            raise ConfigError(
                f"MultimodalAutoencoderConfig.video_shape {self.video_shape} must be divisible by the patch sizes "
                f"(image_temporal_patch_size, image_patch_size) = "
                f"({self.image_temporal_patch_size}, {self.image_patch_size})"
            )
        if self.num_audio_samples % self.samples_per_patch:
            raise ConfigError(
                f"MultimodalAutoencoderConfig.num_audio_samples ({self.num_audio_samples}) must be divisible by "
                f"samples_per_patch ({self.samples_per_patch})"
            )
        for name, value, n in (
            ("image_max_resolution", self.image_max_resolution, 3),
            ("audio_max_resolution", self.audio_max_resolution, 1),
        ):
            if value is not None and (len(value) != n or any(v <= 0 for v in value)):
                raise ConfigError(
                    f"MultimodalAutoencoderConfig.{name} must be {n} positive numbers or None, got {value!r}"
                )
        for name in ("input_min_padding_size", "query_min_padding_size"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 0:
                raise ConfigError(f"MultimodalAutoencoderConfig.{name} must be a non-negative integer, got {v!r}")
        if not isinstance(self.mask_probs, dict):
            raise ConfigError(f"MultimodalAutoencoderConfig.mask_probs must be a dict, got {self.mask_probs!r}")
        for m, p in self.mask_probs.items():
            if m not in MODALITIES:
                raise ConfigError(f"MultimodalAutoencoderConfig.mask_probs: unknown modality {m!r}; known {MODALITIES}")
            if not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
                raise ConfigError(f"MultimodalAutoencoderConfig.mask_probs[{m!r}] must be in [0, 1], got {p!r}")
        self._one_of("full_query_positions", ("grid", "index"))
        width = max(self.query_channels().values()) + self.query_min_padding_size
        if self.decoder.num_query_channels != width:
            raise ConfigError(
                f"MultimodalAutoencoderConfig.decoder.num_query_channels ({self.decoder.num_query_channels}) must "
                f"equal the padded query width max(query widths) + query_min_padding_size ({width})"
            )
        if self.decoder.num_output_channels is None:
            raise ConfigError("MultimodalAutoencoderConfig.decoder.num_output_channels must be set (512 published)")


@dataclass
class MultimodalAutoencoderOutput:
    """Per-modality reconstructions.

    * ``image``: ``(B, T, C, H, W)`` when every pixel is decoded, ``(B, P, C)`` at subsampled pixels
      (also available as ``video``);
    * ``audio``: ``(B, O · samples_per_patch)`` samples;
    * ``label``: ``(B, num_classes)`` logits (also ``logits``);
    * ``latents``: ``(B, N, D)``.
    """

    image: Tensor
    audio: Tensor
    label: Tensor
    latents: Tensor | None = None

    @property
    def video(self) -> Tensor:
        return self.image

    @property
    def logits(self) -> Tensor:
        return self.label

    def to_dict(self) -> dict[str, Tensor]:
        return {"audio": self.audio, "image": self.image, "label": self.label}


class MultimodalAutoencoder(PerceiverIOBase):
    """``{"image": (B, T, 3, H, W), "audio": (B, S), "label": (B, K)}`` -> reconstructions of all three.

    >>> model = perceiver_io.create_model("multimodal-perceiver")
    >>> out = model(inputs, query_indices={"image": idx_img, "audio": idx_aud})   # training, subsampled
    >>> latents = model.encode(inputs)                                            # evaluation: encode once,
    >>> out = model.decode(latents, chunk_size=8192)                              # decode all points in chunks
    """

    config_class = MultimodalAutoencoderConfig
    config: MultimodalAutoencoderConfig

    def __init__(self, config: MultimodalAutoencoderConfig) -> None:
        super().__init__(config)
        c = config
        t, h, w = c.video_shape
        image_in = VideoInputAdapter(
            c.video_shape,
            c.num_image_channels,
            c.image_patch_size,
            c.image_temporal_patch_size,
            c.image_num_bands,
            c.image_max_resolution,
        )
        audio_in = AudioInputAdapter(
            c.num_audio_samples, c.samples_per_patch, c.audio_num_bands, c.audio_max_resolution
        )
        self.input_adapter = MultimodalInputAdapter(
            {"audio": audio_in, "image": image_in, "label": LabelInputAdapter(c.num_classes)},
            min_padding_size=c.input_min_padding_size,
            mask_probs=c.mask_probs,
            init_scale=c.init_scale,
        )
        self.encoder = PerceiverEncoder(c.encoder, self.input_adapter.num_channels)
        image_max_res = c.image_max_resolution or image_in.position_encoding.index_dims
        self.query_builder = MultimodalQueries(
            {
                "audio": AudioQueries(
                    (audio_in.num_patches,),
                    c.audio_num_bands,
                    audio_in.position_encoding.max_resolution,
                    full_positions=c.full_query_positions,
                ),
                "image": VideoQueries(
                    c.video_shape, c.image_num_bands, image_max_res, full_positions=c.full_query_positions
                ),
                "label": LearnedQueries(1, c.label_query_channels, c.init_scale),
            },
            min_padding_size=c.query_min_padding_size,
            init_scale=c.init_scale,
        )
        self.decoder = PerceiverDecoder(c.decoder, c.encoder.num_latent_channels)
        f = self.decoder.num_output_channels
        self.output_adapter = MultimodalOutputAdapter(
            {
                "audio": AudioOutputAdapter(f, c.samples_per_patch),
                "image": VideoOutputAdapter(f, c.video_shape, c.num_image_channels),
                "label": LabelOutputAdapter(f, c.num_classes),
            }
        )

    def encode(  # type: ignore[override]
        self,
        inputs: Mapping[str, Tensor],
        input_mask: Tensor | None = None,
        mask_probs: Mapping[str, float] | None = None,
    ) -> Tensor:
        """``inputs`` ``{"image", "audio", "label"}`` -> latents ``(B, N, D)``.

        ``input_mask (B, M)`` covers the concatenated inputs (audio, image, label rows);
        ``mask_probs`` overrides the configured mask-token probabilities for this call.
        """
        x, _ = self.input_adapter(inputs, mask_probs)
        return self.encoder(x, input_mask)

    def decode(  # type: ignore[override]
        self,
        latents: Tensor,
        query_indices: Mapping[str, Tensor | None] | None = None,
        chunk_size: int | None = None,
    ) -> MultimodalAutoencoderOutput:
        """Decode ``latents (B, N, D)``: all points (``query_indices=None``), or per modality the flat
        indices given (``None`` for a modality: all of its points). ``chunk_size`` decodes at most that
        many queries at once; the encoder is not re-run."""
        b = latents.shape[0]
        sizes = self.query_builder.sizes(query_indices)
        if query_indices is None and chunk_size is not None:
            out = self._decode_chunked(latents, sizes, chunk_size)
        else:
            if query_indices is not None:
                queries = self.query_builder(b, inputs=latents, indices=query_indices)
            else:
                queries = self.query_builder(b, inputs=latents)
            rows = self.decoder(latents, queries.to(latents.dtype), None, chunk_size)
            subsampled = query_indices is not None and query_indices.get("image") is not None
            out = self.output_adapter(rows, sizes, {"image": {"subsampled": subsampled}})
        return MultimodalAutoencoderOutput(image=out["image"], audio=out["audio"], label=out["label"], latents=latents)

    def _decode_chunked(self, latents: Tensor, sizes: Mapping[str, int], chunk_size: int) -> dict[str, Tensor]:
        """All points, built and decoded ``chunk_size`` queries at a time, one modality after another;
        each chunk goes through its modality's output projection at once, so only the projected
        outputs (3 channels per pixel, not the decoder's 512) are kept for all 804,737 points."""
        queries = self.query_builder.lazy(latents.shape[0], inputs=latents)
        out, start = {}, 0
        for m in sorted(sizes):  # the order of the query rows (see split_modalities)
            adapter = self.output_adapter.adapters[m]
            part = LazyQueries(queries.batch_size, sizes[m], lambda s, e, o=start: queries.build(o + s, o + e))
            out[m] = adapter.arrange(self.decoder(latents, part, None, chunk_size, row_fn=adapter.projection))
            start += sizes[m]
        return out

    def forward(  # type: ignore[override]
        self,
        inputs: Mapping[str, Tensor],
        query_indices: Mapping[str, Tensor | None] | None = None,
        chunk_size: int | None = None,
        input_mask: Tensor | None = None,
        mask_probs: Mapping[str, float] | None = None,
    ) -> MultimodalAutoencoderOutput:
        """Encode once, then decode (see :meth:`decode`)."""
        return self.decode(self.encode(inputs, input_mask, mask_probs), query_indices, chunk_size)


@register_model("multimodal-perceiver", MultimodalAutoencoder)
def multimodal_perceiver() -> MultimodalAutoencoderConfig:
    """``deepmind/multimodal-perceiver``: 16×224×224 video, 30,720 audio samples, 700 classes, 784 × 512 latents."""
    return MultimodalAutoencoderConfig()
