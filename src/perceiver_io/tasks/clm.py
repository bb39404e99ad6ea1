"""Causal language modelling with Perceiver AR: bytes of a text corpus, or the official copy task.

``data.task=text`` (default): windows of ``seq_len + 1`` bytes (token = byte + 6) of the corpus the
``mlm`` task uses (Brown, split by document); the model reads the first ``seq_len`` and predicts the
next byte at its ``N`` latent positions (the last ``N``), so training windows start every ``N`` bytes
(``data.stride``) and every byte is a target once per epoch. Metric on held-out documents: bits per
byte (full-vocabulary cross-entropy / ln 2) of each byte given at least ``seq_len - N`` bytes of context
(``data.eval_windows`` windows spread evenly over the split, each scoring its last ``N`` bytes), beside
the unigram byte baseline of the training text.

``data.task=copy``: the official ``random_mirrored`` task: ``[BOS]`` then ``seq_len / 2`` random bytes
then the same bytes reversed; the loss covers the latent positions, the metric is the accuracy on
the reversed half (teacher-forced per byte, whole half, and by greedy cached generation from the
first half). Examples are generated from their seeds; nothing is fetched.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from perceiver_io.adapters.text import BOS_ID, NUM_SPECIAL_TOKENS, PAD_ID, BytesTokenizer
from perceiver_io.config import Config, ConfigError
from perceiver_io.models.perceiver_ar import PerceiverAR, PerceiverARConfig, causal_lm_loss, perceiver_ar_bytes_small
from perceiver_io.tasks.base import DataUnavailable, Task, example_generator, register_task
from perceiver_io.training.trainer import TrainConfig

__all__ = ["CLMDataConfig", "CLMConfig", "CLMTask", "copy_example"]

_DEFAULT_SEQ_LEN = {"text": 2048, "copy": 32}


@dataclass
class CLMDataConfig(Config):
    """``task``: "text" or "copy". ``seq_len``: input tokens per example (the model's context); ``None``:
    2,048 for text, 32 for copy. ``stride``: training-window step in bytes (``None``: the latent count).
    ``corpus``/``fallback_corpus``: as the ``mlm`` task (brown | stdlib | a folder of .txt | a text file)."""

    task: Literal["text", "copy"] = "text"
    corpus: str = "brown"
    fallback_corpus: str | None = "stdlib"
    seq_len: int | None = None
    stride: int | None = None
    max_bytes: int | None = None
    split_seed: int = 0
    eval_windows: int = 64
    eval_batch_size: int = 8
    copy_train_examples: int = 1_000_000
    copy_eval_examples: int = 512
    copy_generate_examples: int = 64
    num_samples: int = 2
    sample_prompt_bytes: int = 200
    sample_tokens: int = 200
    cache_dir: str | None = None

    def validate(self) -> None:
        self._positive("eval_windows", "eval_batch_size", "copy_train_examples", "copy_eval_examples")
        self._positive("stride", "max_bytes", "seq_len", allow_none=True)
        for name in ("copy_generate_examples", "num_samples", "sample_prompt_bytes", "sample_tokens"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ConfigError(f"CLMDataConfig.{name} must be a non-negative integer, got {v!r}")
        if self.task == "copy" and self.seq_len is not None and (self.seq_len < 2 or self.seq_len % 2):
            raise ConfigError(f"CLMDataConfig.seq_len must be even and >= 2 for the copy task, got {self.seq_len}")


def _clm_train() -> TrainConfig:
    return TrainConfig(
        max_steps=1200,
        batch_size=8,
        lr=5e-4,
        warmup_steps=120,
        weight_decay=0.01,
        grad_clip=1.0,
        eval_every=300,
        checkpoint_every=250,
    )


@dataclass
class CLMConfig(Config):
    model: PerceiverARConfig = field(default_factory=perceiver_ar_bytes_small)
    data: CLMDataConfig = field(default_factory=CLMDataConfig)
    train: TrainConfig = field(default_factory=_clm_train)


def copy_example(seed: int, seq_len: int) -> Tensor:
    """``(seq_len + 1,)`` ids: ``[BOS]``, ``seq_len / 2`` random byte ids, the same reversed."""
    s = torch.randint(NUM_SPECIAL_TOKENS, NUM_SPECIAL_TOKENS + 256, (seq_len // 2,), generator=example_generator(seed))
    return torch.cat([torch.tensor([BOS_ID]), s, s.flip(0)])


@register_task
class CLMTask(Task):
    """Causal LM with Perceiver AR on bytes or the copy task (``perceiver-io train clm``)."""

    name = "clm"
    config_class = CLMConfig
    config: CLMConfig

    @classmethod
    def finalize_config(cls, cfg: Config) -> Config:
        """``seq_len`` default per task; the model's context = ``seq_len``; ``num_latents`` is capped at
        ``seq_len`` (copy task: at ``seq_len / 2``, the scored half, as the official configs)."""
        assert isinstance(cfg, CLMConfig)
        d = cfg.data
        seq_len = d.seq_len or _DEFAULT_SEQ_LEN[d.task]
        if d.task == "copy" and seq_len % 2:
            raise ConfigError(f"CLMDataConfig.seq_len must be even for the copy task, got {seq_len}")
        n = cfg.model.num_latents
        if n > seq_len:
            n = seq_len // 2 if d.task == "copy" else seq_len
        if d.task == "copy" and n < seq_len // 2:
            raise ConfigError(
                f"model.num_latents ({n}) must be >= seq_len / 2 ({seq_len // 2}) for the copy task: "
                "the latents must cover the reversed half"
            )
        model = cfg.model.replace(max_context_length=seq_len, num_latents=n)
        if cfg.train.activation_checkpointing:
            model = model.replace(activation_checkpointing=True)
        return cfg.replace(model=model, data=d.replace(seq_len=seq_len))

    # -- data -------------------------------------------------------------------------------------
    def prepare_data(self) -> None:
        d = self.config.data
        if d.task == "copy":
            return
        from perceiver_io.data import DATASETS, fetch

        if d.corpus in DATASETS and d.corpus != "stdlib":
            try:
                fetch(d.corpus, cache_dir=d.cache_dir)
            except Exception as e:  # network, client missing, verification
                if not d.fallback_corpus:
                    raise DataUnavailable(
                        f"data set {d.corpus!r} is not available and could not be fetched: {e}"
                    ) from None
                self.log(f"note: could not fetch {d.corpus!r} ({type(e).__name__}); using {d.fallback_corpus!r}")
                self._fallback = True

    def _documents(self) -> list[str]:
        from perceiver_io.data import load_text_corpus

        d = self.config.data
        corpus = d.fallback_corpus if getattr(self, "_fallback", False) else d.corpus
        try:
            docs = load_text_corpus(corpus, cache_dir=d.cache_dir, max_bytes=d.max_bytes)
        except (FileNotFoundError, OSError, ValueError) as e:
            if corpus != d.corpus or not d.fallback_corpus:
                raise DataUnavailable(f"corpus {corpus!r} is not available: {e}") from None
            self.log(f"note: corpus {d.corpus!r} is not available ({e}); falling back to {d.fallback_corpus!r}")
            corpus = d.fallback_corpus
            docs = load_text_corpus(corpus, cache_dir=d.cache_dir, max_bytes=d.max_bytes)
        self.corpus_name = corpus
        return docs

    def setup(self) -> None:
        d, m = self.config.data, self.config.model
        if d.task == "copy":
            self.train_data = range(d.copy_train_examples)
            self.log(f"copy task: {d.seq_len // 2} random bytes then their reverse; {m.num_latents} latents")
            if m.absolute_positions == "none":
                self.log(
                    "note: with rotary positions only, latents see distances, not where the mirror point is; "
                    "model.absolute_positions=sinusoidal (the official copy configs) learns the task"
                )
            return
        from perceiver_io.data import ByteWindows, split

        docs = self._documents()
        self.train_docs, self.valid_docs, self.test_docs = split(docs, seed=d.split_seed)
        if not self.train_docs or not self.valid_docs:
            raise DataUnavailable(f"corpus {self.corpus_name!r} has too few documents ({len(docs)}) to split")
        self.train_data = ByteWindows(self.train_docs, d.seq_len + 1, d.stride or m.num_latents, align=False)
        self.byte_counts = np.bincount(self.train_data.data, minlength=256).astype(np.float64)
        self.log(
            f"corpus {self.corpus_name}: {len(docs)} documents ({len(self.train_docs)}/{len(self.valid_docs)}/"
            f"{len(self.test_docs)} train/valid/test), {self.train_data.num_bytes / 1e6:.2f} MB of training bytes, "
            f"{len(self.train_data):,} windows of {d.seq_len + 1} bytes"
        )

    def build_model(self) -> PerceiverAR:
        return PerceiverAR(self.config.model)

    # -- batches and loss -------------------------------------------------------------------------
    def collate(self, items: list, seeds: list[int]) -> dict[str, Tensor]:
        """-> ``input_ids (B, seq_len + 1)`` (left-padded), ``input_mask (B, seq_len + 1)`` bool."""
        length = self.config.data.seq_len + 1
        if self.config.data.task == "copy":
            ids = torch.stack([copy_example(s, length - 1) for s in seeds])
            return {"input_ids": ids, "input_mask": torch.ones_like(ids, dtype=torch.bool)}
        ids = torch.full((len(items), length), PAD_ID, dtype=torch.long)
        for row, window in enumerate(items):
            body = torch.frombuffer(bytearray(window), dtype=torch.uint8).long() + NUM_SPECIAL_TOKENS
            if len(body):
                ids[row, -len(body) :] = body
        return {"input_ids": ids, "input_mask": ids != PAD_ID}

    def _scored(self, batch: dict[str, Tensor]) -> Tensor:
        """``(B, n)`` bool: the targets the latents predict (both the target and its input real)."""
        mask = batch["input_mask"]
        n = min(self.config.model.num_latents, mask.shape[1] - 1)
        return (mask[:, 1:] & mask[:, :-1])[:, -n:]

    def count(self, batch: dict[str, Tensor]) -> int:
        return int(self._scored(batch).sum())

    def _logits(self, model: nn.Module, batch: dict[str, Tensor]) -> Tensor:
        ids, mask = batch["input_ids"], batch["input_mask"]
        return model(ids[:, :-1], mask[:, :-1]).logits

    def loss(self, model: nn.Module, batch: dict[str, Tensor]) -> Tensor:
        logits = self._logits(model, batch)
        targets = batch["input_ids"][:, 1:][:, -logits.shape[1] :]
        return causal_lm_loss(logits, targets, self._scored(batch), self.config.model.z_loss, reduction="sum")

    # -- evaluation -------------------------------------------------------------------------------
    def _eval_windows(self, split: str) -> list[bytes]:
        from perceiver_io.data import ByteWindows

        d = self.config.data
        docs = {"valid": self.valid_docs, "test": self.test_docs or self.valid_docs, "train": self.train_docs}[split]
        windows = ByteWindows(docs, d.seq_len + 1, self.config.model.num_latents, align=False)
        # evenly spread over the split; distinct windows score distinct bytes (each its last N)
        picks = np.unique(np.linspace(0, len(windows) - 1, min(len(windows), d.eval_windows)).round().astype(int))
        return [windows[int(i)] for i in picks]

    @torch.no_grad()
    def evaluate(self, model: nn.Module, split: str = "valid", max_batches: int | None = None) -> dict[str, float]:
        if self.config.data.task == "copy":
            return self._evaluate_copy(model, split, max_batches)
        d = self.config.data
        device = next(model.parameters()).device
        windows = self._eval_windows(split)
        log_unigram = torch.from_numpy(np.log2((self.byte_counts + 1) / (self.byte_counts.sum() + 256))).float()
        nats = base_bits = 0.0
        n = correct = 0
        for b, lo in enumerate(range(0, len(windows), d.eval_batch_size)):
            if max_batches is not None and b >= max_batches:
                break
            batch = self.collate(windows[lo : lo + d.eval_batch_size], [0] * len(windows[lo : lo + d.eval_batch_size]))
            logits = self._logits(model, {k: v.to(device) for k, v in batch.items()}).float().cpu()
            scored = self._scored(batch)
            targets = batch["input_ids"][:, 1:][:, -logits.shape[1] :]
            nats += float(causal_lm_loss(logits, targets, scored, 0.0, reduction="sum"))
            correct += int(((logits.argmax(-1) == targets) & scored).sum())
            base_bits += float(-log_unigram[(targets - NUM_SPECIAL_TOKENS).clamp_min(0)][scored].sum())
            n += int(scored.sum())
        if n == 0:
            raise RuntimeError(f"no scored bytes in the {split} split")
        return {
            "loss": nats / n,
            "bits_per_byte": nats / n / math.log(2),
            "accuracy": correct / n,
            "baseline_unigram_bits_per_byte": base_bits / n,
            "scored_bytes": float(n),
        }

    def _evaluate_copy(self, model: nn.Module, split: str, max_batches: int | None) -> dict[str, float]:
        d = self.config.data
        device = next(model.parameters()).device
        half = d.seq_len // 2
        offset = {"valid": 10**12, "test": 2 * 10**12, "train": 0}[split]
        correct = total = exact = examples = 0
        nats = 0.0
        for b, lo in enumerate(range(0, d.copy_eval_examples, d.eval_batch_size)):
            if max_batches is not None and b >= max_batches:
                break
            seeds = [offset + i for i in range(lo, min(lo + d.eval_batch_size, d.copy_eval_examples))]
            batch = self.collate([None] * len(seeds), seeds)
            logits = self._logits(model, {k: v.to(device) for k, v in batch.items()}).float().cpu()
            targets = batch["input_ids"][:, -half:]
            pred = logits[:, -half:].argmax(-1)
            nats += float(causal_lm_loss(logits[:, -half:], targets, reduction="sum"))
            hits = pred == targets
            correct += int(hits.sum())
            total += hits.numel()
            exact += int(hits.all(dim=1).sum())
            examples += len(seeds)
        metrics = {
            "loss": nats / total,
            "accuracy": correct / total,
            "sequence_accuracy": exact / examples,
        }
        k = min(d.copy_generate_examples, d.copy_eval_examples)
        if k:
            metrics["generate_accuracy"] = self._copy_generate_accuracy(model, offset, k)
        return metrics

    def _copy_generate_accuracy(self, model: nn.Module, offset: int, k: int) -> float:
        """Greedy cached generation of the reversed half from ``[BOS]`` and the first half."""
        half = self.config.data.seq_len // 2
        net = getattr(model, "module", model)
        ids = torch.stack([copy_example(offset + i, 2 * half) for i in range(k)])
        out = net.generate(ids[:, : half + 1], half)
        return float((out.new_tokens.cpu() == ids[:, half + 1 :]).float().mean())

    # -- report -----------------------------------------------------------------------------------
    def report(self, model: nn.Module, metrics: dict[str, float]) -> list[str]:
        test = self.evaluate(model, "test")
        self.test_metrics = test
        if self.config.data.task == "copy":
            lines = [
                f"held-out copy sequences ({self.config.data.copy_eval_examples}, reversed half of "
                f"{self.config.data.seq_len // 2} bytes):",
                f"  accuracy (teacher-forced): {test['accuracy']:.1%}, "
                f"whole half right: {test['sequence_accuracy']:.1%}",
            ]
            if "generate_accuracy" in test:
                lines.append(f"  accuracy (greedy generation from the first half): {test['generate_accuracy']:.1%}")
            return lines
        lines = [
            f"held-out test ({int(test['scored_bytes']):,} bytes of unseen documents of {self.corpus_name}):",
            f"  {'Perceiver AR (this run)':28s} {test['bits_per_byte']:7.3f} bits/byte",
            f"  {'baseline: unigram bytes':28s} {test['baseline_unigram_bits_per_byte']:7.3f} bits/byte",
        ]
        for prompt, text in self.samples(model):
            lines += [f"  prompt : {prompt!r}", f"  sampled: {text!r}", ""]
        return lines

    def samples(self, model: nn.Module, num: int | None = None) -> list[tuple[str, str]]:
        """``(prompt, continuation)`` pairs: the first bytes of test documents continued by nucleus
        sampling (temperature 0.8, top-p 0.95, fixed seed)."""
        d = self.config.data
        num = d.num_samples if num is None else num
        net = getattr(model, "module", model)
        tok = BytesTokenizer()
        out = []
        for doc in (self.test_docs or self.valid_docs)[:num]:
            prompt = doc.encode("utf-8")[: d.sample_prompt_bytes].decode("utf-8", errors="ignore")
            ids = torch.tensor([tok.encode(prompt, parse_mask=False)])
            g = torch.Generator().manual_seed(0)
            gen = net.generate(ids, d.sample_tokens, do_sample=True, temperature=0.8, top_p=0.95, generator=g)
            out.append((prompt, tok.decode(gen.new_tokens[0, : int(gen.num_new_tokens[0])], skip_special_tokens=True)))
        return out
