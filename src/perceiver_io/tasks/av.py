"""Audio-visual digits (:mod:`perceiver_io.data.av`): multimodal autoencoding (``av-autoencode``,
Perceiver IO Sec. 4.3 at CPU scale) and audio-visual classification (``av-classify``).

``av-autoencode``:

Video ``(B, T, 1, S, S)`` in [0, 1], audio ``(B, L)`` in [-1, 1] and the one-hot label go into one
:class:`~perceiver_io.models.multimodal.MultimodalAutoencoder`; each modality is padded to a common
width with learned modality vectors, and the label row is replaced by a learned mask token with
probability ``model.mask_probs["label"]`` (0.5, the paper's setting). Training decodes
``data.video_queries`` random pixels and ``data.audio_queries`` random audio patches per step (the
same subset for the whole batch) plus the label; the loss is the squared error on video and audio
(per point; ``data.loss="l1"``: absolute error, as the paper's training, which here settles on black
frames and silence) and ``data.label_weight`` × cross-entropy on the label, per example.
Evaluation encodes each clip once **with the label masked** and decodes every point in chunks.

Metrics: video PSNR (pixels in [0, 1]) and audio PSNR (samples in [-1, 1], peak 1), each also for
the best constant prediction (the training set's mean clip and silence), and label accuracy with
the label hidden. The compression ratio is inputs (values) per latent value.

``av-classify``: audio, video or both (``model.modalities``) into a
:class:`~perceiver_io.models.multimodal_classifier.MultimodalClassifier` read out by an attention
decoder or by average pooling of the latents (``model.head``); cross-entropy; accuracy.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from perceiver_io.config import Config, ConfigError
from perceiver_io.data.av import AVDigitsConfig
from perceiver_io.decoder import DecoderConfig
from perceiver_io.encoder import EncoderConfig
from perceiver_io.metrics import psnr_from_mse
from perceiver_io.models.multimodal import MultimodalAutoencoder, MultimodalAutoencoderConfig
from perceiver_io.models.multimodal_classifier import MultimodalClassifier, MultimodalClassifierConfig
from perceiver_io.tasks.base import DataUnavailable, Task, example_generator, register_task
from perceiver_io.training.trainer import TrainConfig

__all__ = [
    "AVClipsConfig",
    "AVDataConfig",
    "AVAutoencodeConfig",
    "AVAutoencodeTask",
    "AVClassifyConfig",
    "AVClassifyTask",
    "av_digits_autoencoder",
    "av_digits_classifier",
]


@dataclass
class AVClipsConfig(Config):
    """The clips (``clips``: :class:`~perceiver_io.data.av.AVDigitsConfig`), where they are cached and
    the evaluation batch size."""

    clips: AVDigitsConfig = field(default_factory=AVDigitsConfig)
    eval_batch_size: int = 50
    cache_dir: str | None = None

    def validate(self) -> None:
        self._positive("eval_batch_size")


@dataclass
class AVDataConfig(AVClipsConfig):
    """``av-autoencode``'s data: the clips and what training decodes."""

    video_queries: int = 1024
    audio_queries: int = 128
    label_weight: float = 0.1
    loss: Literal["l1", "mse"] = "mse"

    def validate(self) -> None:
        super().validate()
        self._positive("video_queries", "audio_queries")
        if self.label_weight < 0:
            raise ConfigError(f"AVDataConfig.label_weight must be >= 0, got {self.label_weight!r}")


_AV_DIGITS_INPUTS = {
    "video_shape": (8, 32, 32),
    "num_image_channels": 1,
    "image_num_bands": 8,
    "image_max_resolution": None,
    "num_audio_samples": 8192,
    "audio_num_bands": 16,
}


def _av_digits_encoder() -> EncoderConfig:
    return EncoderConfig(
        num_latents=128,
        num_latent_channels=128,
        num_blocks=1,
        num_self_attends_per_block=4,
        num_cross_attention_heads=1,
        num_self_attention_heads=4,
        cross_attention_widening_factor=1,
        self_attention_widening_factor=2,
    )


def av_digits_autoencoder() -> MultimodalAutoencoderConfig:
    """CPU size: 8 × 32² grey video (4×4 patches), 8,192 audio samples (16 per patch), 10 classes;
    128 × 128 latents, 4 self-attention layers; label masked with probability 0.5."""
    return MultimodalAutoencoderConfig(
        **_AV_DIGITS_INPUTS,
        num_classes=10,
        label_query_channels=64,
        mask_probs={"label": 0.5},
        full_query_positions="index",  # decode every point at the positions training's subsets use
        encoder=_av_digits_encoder(),
        decoder=DecoderConfig(num_output_channels=128, num_heads=1, use_query_residual=False),
    )


def av_digits_classifier() -> MultimodalClassifierConfig:
    """The autoencoder's inputs and latents (128 × 128, 4 layers), audio + video, 10 classes, attention
    decoder (``head="pool"``: average of the latents)."""
    return MultimodalClassifierConfig(**_AV_DIGITS_INPUTS, num_classes=10, encoder=_av_digits_encoder())


def _av_train() -> TrainConfig:
    return TrainConfig(
        max_steps=1500, batch_size=16, lr=1e-3, warmup_steps=100, weight_decay=0.1, eval_every=500,
        checkpoint_every=250,
    )  # fmt: skip


@dataclass
class AVAutoencodeConfig(Config):
    model: MultimodalAutoencoderConfig = field(default_factory=av_digits_autoencoder)
    data: AVDataConfig = field(default_factory=AVDataConfig)
    train: TrainConfig = field(default_factory=_av_train)


@dataclass
class AVClassifyConfig(Config):
    model: MultimodalClassifierConfig = field(default_factory=av_digits_classifier)
    data: AVClipsConfig = field(default_factory=AVClipsConfig)
    train: TrainConfig = field(default_factory=_av_train)


class _Clips:
    """``(video uint8 (T, S, S), audio float32 (L,), label int)`` per index."""

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        self.video, self.audio, self.label = arrays["video"], arrays["audio"], arrays["label"]
        self.voice = arrays["voice"]

    def __len__(self) -> int:
        return len(self.label)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray, int]:
        return self.video[i], self.audio[i], int(self.label[i])


class _AVTask(Task):
    """What both audio-visual tasks share: the clips, the model's input shapes from ``data.clips``, and
    batches of ``video (B, T, 1, S, S)`` in [0, 1], ``audio (B, L)``, ``label (B,)``."""

    config: AVAutoencodeConfig | AVClassifyConfig

    def __init__(self, config: Config, log=print) -> None:
        super().__init__(config, log)
        self.splits: dict[str, _Clips] = {}

    @classmethod
    def finalize_config(cls, cfg: Config) -> Config:
        assert isinstance(cfg, (AVAutoencodeConfig, AVClassifyConfig))
        c = cfg.data.clips
        cfg = cfg.replace(
            model={"video_shape": (c.frames, c.image_size, c.image_size), "num_image_channels": 1,
                   "num_audio_samples": c.num_samples, "num_classes": 10},
        )  # fmt: skip
        if cfg.train.activation_checkpointing:
            cfg = cfg.replace(model={"encoder": {"activation_checkpointing": True}})
        return cfg

    def prepare_data(self) -> None:
        from perceiver_io.data import fetch

        try:
            fetch("mnist", cache_dir=self.config.data.cache_dir)
        except Exception as e:
            raise DataUnavailable(f"MNIST is not available ({str(e).splitlines()[0]})") from None

    def split(self, split: str) -> _Clips:
        if split not in self.splits:
            from perceiver_io.data.av import load_av_digits
            from perceiver_io.data.speech import SpeechUnavailable

            d = self.config.data
            try:
                self.splits[split] = _Clips(load_av_digits(split, d.clips, d.cache_dir))
            except (SpeechUnavailable, FileNotFoundError, OSError) as e:
                raise DataUnavailable(f"audio-visual digits ({split}): {e}") from None
        return self.splits[split]

    def setup(self) -> None:
        self.train_data = self.split("train")
        c = self.config.data.clips
        self.log(
            f"audio-visual digits: {len(self.train_data):,} training clips of {c.frames}×{c.image_size}² video "
            f"and {c.num_samples:,} audio samples at {c.sample_rate:,} Hz ({c.num_samples / c.sample_rate:.2f} s)"
        )

    def collate(self, items: list[tuple[np.ndarray, np.ndarray, int]], seeds: list[int]) -> dict[str, Tensor]:
        """-> ``video (B, T, 1, S, S)`` in [0, 1], ``audio (B, L)``, ``label (B,)``."""
        return {
            "video": torch.from_numpy(np.stack([v for v, _, _ in items])).float().div(255).unsqueeze(2),
            "audio": torch.from_numpy(np.stack([a for _, a, _ in items])),
            "label": torch.tensor([y for _, _, y in items]),
        }

    def eval_batches(self, split: str, max_batches: int | None = None) -> Iterator[dict[str, Tensor]]:
        """Batches of ``data.eval_batch_size`` clips of ``split`` (the first ``max_batches`` of them)."""
        clips = self.split(split)
        bs = self.config.data.eval_batch_size
        n = len(clips) if max_batches is None else min(len(clips), max_batches * bs)
        for lo in range(0, n, bs):
            yield _AVTask.collate(self, [clips[i] for i in range(lo, min(n, lo + bs))], [])


@register_task
class AVAutoencodeTask(_AVTask):
    """``perceiver-io train av-autoencode``: see the module docstring."""

    name = "av-autoencode"
    config_class = AVAutoencodeConfig
    config: AVAutoencodeConfig

    def setup(self) -> None:
        super().setup()
        video = self.train_data.video.astype(np.float32) / 255
        self.mean_video = torch.from_numpy(video.mean(0))  # the best constant video (L2), (T, S, S)

    def build_model(self) -> MultimodalAutoencoder:
        return MultimodalAutoencoder(self.config.model)

    def collate(self, items: list[tuple[np.ndarray, np.ndarray, int]], seeds: list[int]) -> dict[str, Tensor]:
        """-> ``video (B, T, 1, S, S)``, ``audio (B, L)``, ``label (B,)``, and the decoded points
        ``video_indices (P_v,)`` (flat pixels) and ``audio_indices (P_a,)`` (patches)."""
        d, m = self.config.data, self.config.model
        batch = super().collate(items, seeds)
        g = example_generator(seeds[0] + 1)
        pixels = batch["video"][0].numel()
        patches = m.num_audio_samples // m.samples_per_patch
        batch["video_indices"] = torch.randperm(pixels, generator=g)[: min(d.video_queries, pixels)]
        batch["audio_indices"] = torch.randperm(patches, generator=g)[: min(d.audio_queries, patches)]
        return batch

    def loss(self, model: nn.Module, batch: dict[str, Tensor]) -> Tensor:
        """Per example: mean squared error (``data.loss="l1"``: absolute error) over the decoded pixels
        + the same over the decoded audio samples + ``label_weight`` × cross-entropy of the label;
        summed over the batch."""
        inputs = {"image": batch["video"], "audio": batch["audio"], "label": batch["label"]}
        vi, ai = batch["video_indices"], batch["audio_indices"]
        out = model(inputs, query_indices={"image": vi, "audio": ai})
        b = batch["video"].shape[0]
        video_t = batch["video"].flatten(1)[:, vi, None]  # (B, P_v, 1); pixels in (T, C=1, H, W) order
        spp = self.config.model.samples_per_patch
        audio_t = batch["audio"].view(b, -1, spp)[:, ai].flatten(1)  # (B, P_a · spp)
        err = (lambda e: e.abs()) if self.config.data.loss == "l1" else (lambda e: e.square())  # noqa: E731
        video = err(out.image.float() - video_t).flatten(1).mean(1)
        audio = err(out.audio.float() - audio_t).mean(1)
        label_ce = F.cross_entropy(out.label.float(), batch["label"], reduction="none")
        return (video + audio + self.config.data.label_weight * label_ce).sum()

    @torch.no_grad()
    def evaluate(self, model: nn.Module, split: str = "valid", max_batches: int | None = None) -> dict[str, float]:
        device = next(model.parameters()).device
        se_v = se_a = se_v0 = se_a0 = 0.0
        correct = n = 0
        mean_video = self.mean_video.to(device)
        for batch in self.eval_batches(split, max_batches):
            n += len(batch["label"])
            video, audio, label = (batch[k].to(device) for k in ("video", "audio", "label"))
            out = model({"image": video, "audio": audio, "label": label}, mask_probs={"label": 1.0})
            se_v += float((out.image.float() - video).square().sum())
            se_a += float((out.audio.float() - audio).square().sum())
            se_v0 += float((mean_video[:, None] - video).square().sum())
            se_a0 += float(audio.square().sum())
            correct += int((out.label.argmax(-1) == label).sum())
        m = self.config.model
        pixels = n * m.video_shape[0] * m.video_shape[1] * m.video_shape[2]
        samples = n * m.num_audio_samples
        mse_v, mse_a = se_v / pixels, se_a / samples
        return {
            "loss": mse_v + mse_a,
            "video_psnr": psnr_from_mse(mse_v),
            "audio_psnr": psnr_from_mse(mse_a),
            "label_accuracy": correct / n,
            "baseline_video_psnr": psnr_from_mse(se_v0 / pixels),
            "baseline_audio_psnr": psnr_from_mse(se_a0 / samples),
            "clips": float(n),
        }

    def compression_ratio(self) -> float:
        """Input values per latent value: (video pixels + audio samples + classes) / (N · D)."""
        m = self.config.model
        t, h, w = m.video_shape
        values = t * h * w * m.num_image_channels + m.num_audio_samples + m.num_classes
        return values / (m.encoder.num_latents * m.encoder.num_latent_channels)

    def report(self, model: nn.Module, metrics: dict[str, float]) -> list[str]:
        test = self.evaluate(model, "test")
        self.test_metrics = test
        e = self.config.model.encoder
        return [
            f"audio-visual digits test ({int(test['clips'])} clips, unseen digit images and voices), label hidden; "
            f"{e.num_latents} × {e.num_latent_channels} latents (compression {self.compression_ratio():.2f}×)",
            f"video PSNR {test['video_psnr']:.2f} dB (mean clip {test['baseline_video_psnr']:.2f} dB); "
            f"audio PSNR {test['audio_psnr']:.2f} dB (silence {test['baseline_audio_psnr']:.2f} dB); "
            f"label accuracy {test['label_accuracy']:.2%} (chance 10 %)",
        ]


@register_task
class AVClassifyTask(_AVTask):
    """``perceiver-io train av-classify``: the digit from its sound, its sight or both
    (``model.modalities``), read out by an attention decoder or pooled latents (``model.head``)."""

    name = "av-classify"
    config_class = AVClassifyConfig
    config: AVClassifyConfig

    def build_model(self) -> MultimodalClassifier:
        return MultimodalClassifier(self.config.model)

    def inputs(self, batch: dict[str, Tensor], device: torch.device | str = "cpu") -> dict[str, Tensor]:
        """The model's inputs: the configured ``model.modalities`` of ``batch``."""
        x = {"image": batch["video"], "audio": batch["audio"]}
        return {m: x[m].to(device) for m in self.config.model.modalities}

    def _logits(self, model: nn.Module, batch: dict[str, Tensor]) -> Tensor:
        return model(self.inputs(batch, next(model.parameters()).device)).logits.float()

    def loss(self, model: nn.Module, batch: dict[str, Tensor]) -> Tensor:
        """Cross-entropy of the label, summed over the batch."""
        return F.cross_entropy(self._logits(model, batch), batch["label"], reduction="sum")

    @torch.no_grad()
    def evaluate(self, model: nn.Module, split: str = "valid", max_batches: int | None = None) -> dict[str, float]:
        nll, correct, n = 0.0, 0, 0
        for batch in self.eval_batches(split, max_batches):
            n += len(batch["label"])
            logits = self._logits(model, batch).cpu()
            nll += float(F.cross_entropy(logits, batch["label"], reduction="sum"))
            correct += int((logits.argmax(-1) == batch["label"]).sum())
        return {"loss": nll / n, "accuracy": correct / n, "clips": float(n)}

    def report(self, model: nn.Module, metrics: dict[str, float]) -> list[str]:
        test = self.evaluate(model, "test")
        self.test_metrics = test
        m = self.config.model
        return [
            f"audio-visual digits test ({int(test['clips'])} clips, unseen digit images and voices): "
            f"{' + '.join(m.modalities)}, {m.head} head: accuracy {test['accuracy']:.2%} (chance 10 %)"
        ]
