"""Sentence polarity on UTF-8 bytes (movie-review sentences), from scratch or fine-tuned from an MLM run.

``[CLS] bytes [SEP]`` ``(B, L)`` -> :class:`TextClassifier` -> logits ``(B, 2)``; metric: accuracy.
``init_from=RUN_DIR`` (or ``RUN_DIR/model``) of an ``mlm`` run copies the byte embeddings, position
embeddings and the whole encoder (latents, cross-attention, self-attention layers) into the
classifier; the class query and decoder start fresh. Without it the same architecture trains from scratch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from perceiver_io.adapters.text import CLS_ID, NUM_SPECIAL_TOKENS, PAD_ID, SEP_ID, TextAdapterConfig
from perceiver_io.config import Config, ConfigError
from perceiver_io.decoder import DecoderConfig
from perceiver_io.encoder import EncoderConfig
from perceiver_io.models.classifier import TextClassifier, TextClassifierConfig
from perceiver_io.tasks.base import DataUnavailable, Task, register_task
from perceiver_io.tasks.mlm import demo_mlm_config
from perceiver_io.training.checkpoint import CheckpointError
from perceiver_io.training.trainer import TrainConfig

__all__ = ["TextDataConfig", "TextClassificationConfig", "TextClassificationTask", "mlm_model_dir"]


def _text_model() -> TextClassifierConfig:
    mlm = demo_mlm_config(128)
    return TextClassifierConfig(
        text=mlm.text,
        encoder=mlm.encoder,
        decoder=DecoderConfig(num_query_channels=128, num_heads=4, widening_factor=2, use_query_residual=True),
        num_classes=2,
    )


@dataclass
class TextDataConfig(Config):
    """``path``: the sentiment file/folder (default: the fetched cache); ``seq_len`` includes [CLS]/[SEP]."""

    path: str | None = None
    seq_len: int = 128
    split_seed: int = 0
    eval_batch_size: int = 128
    cache_dir: str | None = None

    def validate(self) -> None:
        self._positive("eval_batch_size")
        if not isinstance(self.seq_len, int) or self.seq_len < 4:
            raise ConfigError(f"TextDataConfig.seq_len must be an integer >= 4, got {self.seq_len!r}")


def _text_train() -> TrainConfig:
    return TrainConfig(
        max_steps=1000,
        batch_size=64,
        lr=5e-4,
        warmup_steps=100,
        weight_decay=0.05,
        eval_every=250,
        checkpoint_every=250,
    )


@dataclass
class TextClassificationConfig(Config):
    model: TextClassifierConfig = field(default_factory=_text_model)
    data: TextDataConfig = field(default_factory=TextDataConfig)
    train: TrainConfig = field(default_factory=_text_train)
    init_from: str | None = None


def mlm_model_dir(path: str | Path) -> Path:
    """An MLM model directory from ``RUN_DIR`` or ``RUN_DIR/model``."""
    p = Path(path)
    if (p / "model" / "config.json").is_file():
        p = p / "model"
    if not (p / "config.json").is_file():
        raise CheckpointError(f"init_from: {str(path)!r} is neither an mlm run directory nor a model directory")
    return p


@register_task
class TextClassificationTask(Task):
    """``perceiver-io train text-classification [init_from=runs/mlm-.../model]``."""

    name = "text-classification"
    config_class = TextClassificationConfig
    config: TextClassificationConfig

    @classmethod
    def finalize_config(cls, cfg: Config) -> Config:
        assert isinstance(cfg, TextClassificationConfig)
        model = cfg.model
        if cfg.init_from:
            path = mlm_model_dir(cfg.init_from) / "config.json"
            try:
                meta = json.loads(path.read_text())
                text, encoder = meta["config"]["text"], meta["config"]["encoder"]
            except (ValueError, KeyError) as e:
                raise CheckpointError(f"init_from: {path} is not a perceiver-io MLM config ({e})") from None
            model = model.replace(text=TextAdapterConfig.from_dict(text), encoder=EncoderConfig.from_dict(encoder))
            if cfg.data.seq_len > model.text.max_seq_len:
                raise ConfigError(
                    f"data.seq_len ({cfg.data.seq_len}) exceeds the pre-trained model's max_seq_len "
                    f"({model.text.max_seq_len})"
                )
        else:
            model = model.replace(text={"max_seq_len": cfg.data.seq_len})
        if cfg.train.activation_checkpointing:
            model = model.replace(encoder={"activation_checkpointing": True})
        return cfg.replace(model=model)

    def prepare_data(self) -> None:
        if self.config.data.path is None:
            from perceiver_io.data import fetch

            try:
                fetch("sentiment", cache_dir=self.config.data.cache_dir)
            except Exception as e:
                raise DataUnavailable(
                    f"movie-review sentences are not available ({str(e).splitlines()[0]}); "
                    "try `perceiver-io data fetch sentiment` or set data.path"
                ) from None

    def setup(self) -> None:
        from perceiver_io.data import load_sentiment, split

        d = self.config.data
        try:
            items = load_sentiment(d.path, cache_dir=d.cache_dir)
        except (FileNotFoundError, OSError, ValueError) as e:
            raise DataUnavailable(f"cannot load the sentiment data: {e}") from None
        self.splits = dict(
            zip(("train", "valid", "test"), split(items, (0.8, 0.1, 0.1), seed=d.split_seed), strict=True)
        )
        self.train_data = self.splits["train"]
        n = {k: len(v) for k, v in self.splits.items()}
        self.log(f"sentiment: {n['train']:,}/{n['valid']:,}/{n['test']:,} train/valid/test sentences")

    def build_model(self) -> TextClassifier:
        model = TextClassifier(self.config.model)
        if self.config.init_from:
            from perceiver_io.checkpoints import from_pretrained

            src = mlm_model_dir(self.config.init_from)
            try:
                mlm = from_pretrained(src)
                model.input_adapter.load_state_dict(mlm.input_adapter.state_dict())
                model.encoder.load_state_dict(mlm.encoder.state_dict())
            except (OSError, ValueError, RuntimeError, AttributeError) as e:
                raise CheckpointError(
                    f"init_from: cannot load the encoder from {src}: {str(e).splitlines()[0]}"
                ) from None
            self.log(f"initialised the byte embeddings and encoder from {src}")
        return model

    def collate(self, items: list[tuple[str, int]], seeds: list[int]) -> dict[str, Tensor]:
        """-> ``input_ids (B, L)``, ``input_mask (B, L)``, ``labels (B,)``."""
        seq_len = self.config.data.seq_len
        ids = torch.full((len(items), seq_len), PAD_ID, dtype=torch.long)
        for row, (text, _) in enumerate(items):
            body = [b + NUM_SPECIAL_TOKENS for b in text.encode("utf-8")[: seq_len - 2]]
            seq = [CLS_ID, *body, SEP_ID]
            ids[row, : len(seq)] = torch.tensor(seq)
        labels = torch.tensor([y for _, y in items], dtype=torch.long)
        return {"input_ids": ids, "input_mask": ids != PAD_ID, "labels": labels}

    def loss(self, model: nn.Module, batch: dict[str, Tensor]) -> Tensor:
        logits = model(batch["input_ids"], batch["input_mask"]).logits.float()
        return F.cross_entropy(logits, batch["labels"], reduction="sum")

    @torch.no_grad()
    def evaluate(self, model: nn.Module, split: str = "valid", max_batches: int | None = None) -> dict[str, float]:
        items = self.splits[split]
        device = next(model.parameters()).device
        bs = self.config.data.eval_batch_size
        n = correct = 0
        nll = 0.0
        for b, lo in enumerate(range(0, len(items), bs)):
            if max_batches is not None and b >= max_batches:
                break
            batch = self.collate(items[lo : lo + bs], [])
            logits = model(batch["input_ids"].to(device), batch["input_mask"].to(device)).logits.float().cpu()
            nll += float(F.cross_entropy(logits, batch["labels"], reduction="sum"))
            correct += int((logits.argmax(-1) == batch["labels"]).sum())
            n += len(logits)
        return {"loss": nll / n, "accuracy": correct / n, "examples": float(n)}

    def report(self, model: nn.Module, metrics: dict[str, float]) -> list[str]:
        test = self.evaluate(model, "test")
        self.test_metrics = test
        how = f"fine-tuned from {self.config.init_from}" if self.config.init_from else "from scratch"
        return [f"sentiment test accuracy ({how}): {test['accuracy']:.2%} on {int(test['examples']):,} sentences"]
