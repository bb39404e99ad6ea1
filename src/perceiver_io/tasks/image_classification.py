"""Image classification from raw pixels with 2-D Fourier features (MNIST, Fashion-MNIST).

Images ``uint8 (N, 28, 28)`` -> normalised ``(B, 1, 28, 28)`` -> :class:`ImageClassifier`
(``prep_type="pixels"``, 784 inputs of 1 + 2·(2·num_bands + 1) channels) -> logits ``(B, 10)``.
Metric: top-1 accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from perceiver_io.adapters.image import ImageAdapterConfig
from perceiver_io.config import Config
from perceiver_io.decoder import DecoderConfig
from perceiver_io.encoder import EncoderConfig
from perceiver_io.models.classifier import ImageClassifier, ImageClassifierConfig
from perceiver_io.tasks.base import DataUnavailable, Task, register_task
from perceiver_io.training.trainer import TrainConfig

__all__ = ["ImageDataConfig", "ImageClassificationConfig", "ImageClassificationTask", "mnist_classifier_config"]


def mnist_classifier_config(num_classes: int = 10) -> ImageClassifierConfig:
    """28×28 grey images, 32 Fourier bands, 32 × 128 latents, 1 cross-attention + 6 self-attention layers (1.07M)."""
    return ImageClassifierConfig(
        image=ImageAdapterConfig(
            image_shape=(28, 28), num_image_channels=1, prep_type="pixels", position_encoding="fourier", num_bands=32
        ),
        encoder=EncoderConfig(
            num_latents=32,
            num_latent_channels=128,
            num_blocks=1,
            num_self_attends_per_block=6,
            num_cross_attention_heads=4,
            num_self_attention_heads=4,
            cross_attention_qk_channels=128,
            cross_attention_v_channels=128,
            cross_attention_widening_factor=2,
            self_attention_widening_factor=2,
        ),
        decoder=DecoderConfig(num_query_channels=128, num_heads=4, widening_factor=2, use_query_residual=True),
        num_classes=num_classes,
    )


@dataclass
class ImageDataConfig(Config):
    """``dataset``: "mnist", "fashion-mnist" or a folder of IDX files (train/t10k images and labels)."""

    dataset: str = "mnist"
    eval_batch_size: int = 256
    max_train_examples: int | None = None
    cache_dir: str | None = None

    def validate(self) -> None:
        self._positive("eval_batch_size")
        self._positive("max_train_examples", allow_none=True)


def _image_train() -> TrainConfig:
    return TrainConfig(
        max_steps=6000,
        batch_size=128,
        lr=1e-3,
        warmup_steps=500,
        weight_decay=0.05,
        eval_every=1000,
        checkpoint_every=500,
        eval_batches=20,
    )


@dataclass
class ImageClassificationConfig(Config):
    model: ImageClassifierConfig = field(default_factory=mnist_classifier_config)
    data: ImageDataConfig = field(default_factory=ImageDataConfig)
    train: TrainConfig = field(default_factory=_image_train)


MEAN, STD = 0.1307, 0.3081  # MNIST statistics; fine for Fashion-MNIST too (0.286, 0.353)


@register_task
class ImageClassificationTask(Task):
    """``perceiver-io train image-classification [data.dataset=fashion-mnist]``."""

    name = "image-classification"
    config_class = ImageClassificationConfig
    config: ImageClassificationConfig

    @classmethod
    def finalize_config(cls, cfg: Config) -> Config:
        assert isinstance(cfg, ImageClassificationConfig)
        if cfg.train.activation_checkpointing:
            cfg = cfg.replace(model={"encoder": {"activation_checkpointing": True}})
        return cfg

    def prepare_data(self) -> None:
        from perceiver_io.data import DATASETS, fetch

        d = self.config.data
        if d.dataset in DATASETS:
            try:
                fetch(d.dataset, cache_dir=d.cache_dir)
            except Exception as e:
                raise DataUnavailable(
                    f"data set {d.dataset!r} is not available ({str(e).splitlines()[0]}); "
                    f"try `perceiver-io data fetch {d.dataset}`"
                ) from None

    def _load(self, split: str) -> tuple[Tensor, Tensor]:
        from perceiver_io.data import load_image_classification

        try:
            images, labels = load_image_classification(
                self.config.data.dataset, split, cache_dir=self.config.data.cache_dir
            )
        except (FileNotFoundError, OSError, ValueError) as e:
            raise DataUnavailable(f"cannot load {self.config.data.dataset!r} ({split}): {e}") from None
        return torch.as_tensor(images), torch.as_tensor(labels).long()

    def setup(self) -> None:
        self.splits: dict[str, tuple[Tensor, Tensor]] = {}
        images, labels = self._load("train")
        if self.config.data.max_train_examples:
            images, labels = (
                images[: self.config.data.max_train_examples],
                labels[: self.config.data.max_train_examples],
            )
        self.splits["train"] = (images, labels)
        self.train_data = _Pairs(images, labels)
        self.log(f"{self.config.data.dataset}: {len(images):,} training images")

    def split_data(self, split: str) -> tuple[Tensor, Tensor]:
        if split not in self.splits:
            self.splits[split] = self._load(split)
        return self.splits[split]

    def build_model(self) -> ImageClassifier:
        return ImageClassifier(self.config.model)

    def collate(self, items: list[tuple[Tensor, Tensor]], seeds: list[int]) -> dict[str, Tensor]:
        """-> ``images (B, 1, 28, 28)`` float normalised, ``labels (B,)``."""
        images = torch.stack([x for x, _ in items]).float().div(255.0).sub(MEAN).div(STD).unsqueeze(1)
        return {"images": images, "labels": torch.stack([y for _, y in items])}

    def loss(self, model: nn.Module, batch: dict[str, Tensor]) -> Tensor:
        return F.cross_entropy(model(batch["images"]).logits.float(), batch["labels"], reduction="sum")

    @torch.no_grad()
    def evaluate(self, model: nn.Module, split: str = "valid", max_batches: int | None = None) -> dict[str, float]:
        images, labels = self.split_data(split)
        device = next(model.parameters()).device
        bs = self.config.data.eval_batch_size
        n = correct = 0
        nll = 0.0
        for b, lo in enumerate(range(0, len(images), bs)):
            if max_batches is not None and b >= max_batches:
                break
            batch = self.collate(list(zip(images[lo : lo + bs], labels[lo : lo + bs], strict=True)), [])
            logits = model(batch["images"].to(device)).logits.float().cpu()
            nll += float(F.cross_entropy(logits, batch["labels"], reduction="sum"))
            correct += int((logits.argmax(-1) == batch["labels"]).sum())
            n += len(logits)
        return {"loss": nll / n, "accuracy": correct / n, "examples": float(n)}

    def report(self, model: nn.Module, metrics: dict[str, float]) -> list[str]:
        test = self.evaluate(model, "test")
        self.test_metrics = test
        n = int(test["examples"])
        return [f"{self.config.data.dataset} test: top-1 accuracy {test['accuracy']:.2%} on {n:,} images"]


class _Pairs:
    def __init__(self, x: Tensor, y: Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        return self.x[i], self.y[i]
