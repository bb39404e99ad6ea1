"""Masked language modelling on UTF-8 bytes (the paper's byte-level pre-training, at demo size).

Windows of ``seq_len - 2`` bytes from the corpus are framed as ``[CLS] bytes [SEP]``; whole-word
masking picks ``round(mask_prob · #words)`` words (≥ 1; a word is a maximal run of non-whitespace
bytes) and replaces each chosen word as a whole: 80 % by ``[MASK]`` bytes, 10 % by random bytes,
10 % unchanged. The loss is the cross-entropy on the chosen bytes. Metrics on held-out documents:
masked-byte accuracy and bits per byte (over the 256 byte values), beside two baselines on the
same masked positions: the most frequent training byte, and the unigram byte distribution of the
training text (add-one smoothed); both are fit on the non-whitespace bytes, the only ones masked.

**Plain MLM from step 0.** A Perceiver must first learn to route "the byte at position p" through its
latents to the query of position p. With the paper's random initialisation, plain whole-word MLM on
bytes gives almost no gradient for that routing, and the demo-sized model sits at the unigram solution
for about 2,000 steps (docs/bytes_vs_transformer.md). The demo model therefore starts both
cross-attentions local (``model.local_init=1.5``, see :class:`MaskedLanguageModelConfig`), which gives
the routing from step 0; the loss is plain MLM throughout.

**Copy warm-up** (optional). ``data.unmasked_loss_weight`` (default 0: off) adds the cross-entropy of
reconstructing the *visible* bytes, weighted, to the loss, for the first ``data.unmasked_loss_steps``
training steps (default 500; ``None``: all of training); after that the loss is plain MLM. Metrics
count masked bytes only.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from perceiver_io.adapters.text import CLS_ID, MASK_ID, NUM_SPECIAL_TOKENS, PAD_ID, SEP_ID, VOCAB_SIZE
from perceiver_io.config import Config, ConfigError
from perceiver_io.decoder import DecoderConfig
from perceiver_io.encoder import EncoderConfig
from perceiver_io.inference.text import STRATEGIES, Strategy, fill_masked_ids
from perceiver_io.models.mlm import MaskedLanguageModel, MaskedLanguageModelConfig, TextAdapterConfig
from perceiver_io.tasks.base import DataUnavailable, Task, example_generator, register_task
from perceiver_io.training.trainer import TrainConfig

__all__ = [
    "MLMDataConfig",
    "MLMConfig",
    "MLMTask",
    "demo_mlm_config",
    "whole_word_mask",
    "random_byte_mask",
    "mask_window",
    "IGNORE_INDEX",
]

IGNORE_INDEX = -100
_WHITESPACE = torch.tensor([9, 10, 11, 12, 13, 32]) + NUM_SPECIAL_TOKENS


def demo_mlm_config(seq_len: int = 128) -> MaskedLanguageModelConfig:
    """The demo-sized byte MLM: C = 128 byte embeddings, 64 × 128 latents, 4 self-attention layers (0.87M params);
    both cross-attentions start local (``local_init=1.5``, the best of 0.5-6 in docs/bytes_vs_transformer.md §8)."""
    return MaskedLanguageModelConfig(
        text=TextAdapterConfig(max_seq_len=seq_len, num_channels=128),
        encoder=EncoderConfig(
            num_latents=64,
            num_latent_channels=128,
            num_blocks=1,
            num_self_attends_per_block=4,
            num_cross_attention_heads=4,
            num_self_attention_heads=4,
            cross_attention_widening_factor=2,
            self_attention_widening_factor=2,
        ),
        decoder=DecoderConfig(num_query_channels=128, num_heads=4, widening_factor=2, use_query_residual=False),
        local_init=1.5,
    )


@dataclass
class MLMDataConfig(Config):
    """``corpus``: "brown", "stdlib", a folder of .txt files or a text file; ``seq_len`` includes [CLS]/[SEP]."""

    corpus: str = "brown"
    fallback_corpus: str | None = "stdlib"
    seq_len: int = 64
    stride: int | None = None
    mask_prob: float = 0.15
    masking: Literal["whole_word", "random", "mixed"] = "whole_word"
    unmasked_loss_weight: float = 0.0
    unmasked_loss_steps: int | None = 500
    max_bytes: int | None = None
    split_seed: int = 0
    eval_windows: int = 512
    eval_batch_size: int = 64
    num_fill_mask_examples: int = 6
    fill_mask_sentences: int = 256
    cache_dir: str | None = None

    def validate(self) -> None:
        self._positive("eval_windows", "eval_batch_size")
        for name in ("num_fill_mask_examples", "fill_mask_sentences"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 0:
                raise ConfigError(f"MLMDataConfig.{name} must be an integer >= 0, got {v!r}")
        self._positive("stride", "max_bytes", "unmasked_loss_steps", allow_none=True)
        if not isinstance(self.seq_len, int) or self.seq_len < 8:
            raise ConfigError(f"MLMDataConfig.seq_len must be an integer >= 8, got {self.seq_len!r}")
        if not isinstance(self.mask_prob, (int, float)) or not 0 < self.mask_prob < 1:
            raise ConfigError(f"MLMDataConfig.mask_prob must be in (0, 1), got {self.mask_prob!r}")


def _mlm_train() -> TrainConfig:
    return TrainConfig(
        max_steps=2000,
        batch_size=32,
        lr=1e-3,
        warmup_steps=100,
        weight_decay=0.01,
        eval_every=500,
        checkpoint_every=250,
    )


@dataclass
class MLMConfig(Config):
    model: MaskedLanguageModelConfig = field(default_factory=demo_mlm_config)
    data: MLMDataConfig = field(default_factory=MLMDataConfig)
    train: TrainConfig = field(default_factory=_mlm_train)


def whole_word_mask(ids: Tensor, generator: torch.Generator, mask_prob: float = 0.15) -> tuple[Tensor, Tensor, Tensor]:
    """Whole-word masking of one sequence.

    ``ids (L,)`` token ids (special ids < 6 are never chosen) -> ``(input_ids (L,), labels (L,),
    mode (L,))``: ``labels`` is the original id at chosen bytes and ``IGNORE_INDEX`` elsewhere;
    ``mode`` is 0 = not chosen, 1 = [MASK], 2 = random byte, 3 = unchanged.
    """
    special = ids < NUM_SPECIAL_TOKENS
    space = special | torch.isin(ids, _WHITESPACE)
    prev_space = torch.cat([torch.ones(1, dtype=torch.bool), space[:-1]])
    start = ~space & prev_space
    word = torch.cumsum(start.long(), 0) - 1
    word[space] = -1
    n_words = int(start.sum())
    mode = torch.zeros_like(ids)
    if n_words == 0:
        return ids.clone(), torch.full_like(ids, IGNORE_INDEX), mode
    k = max(1, round(mask_prob * n_words))
    chosen = torch.randperm(n_words, generator=generator)[:k]
    u = torch.rand(k, generator=generator)
    word_mode = torch.zeros(n_words + 1, dtype=torch.long)  # index n_words: "no word"
    word_mode[chosen] = torch.where(u < 0.8, 1, torch.where(u < 0.9, 2, 3))
    mode = word_mode[torch.where(word >= 0, word, n_words)]
    labels = torch.where(mode > 0, ids, IGNORE_INDEX)
    random_bytes = torch.randint(NUM_SPECIAL_TOKENS, VOCAB_SIZE, ids.shape, generator=generator)
    inputs = torch.where(mode == 1, MASK_ID, torch.where(mode == 2, random_bytes, ids))
    return inputs, labels, mode


def random_byte_mask(ids: Tensor, generator: torch.Generator, mask_prob: float = 0.15) -> tuple[Tensor, Tensor, Tensor]:
    """BERT's masking on bytes: each non-special, non-whitespace byte is chosen with ``mask_prob``, then 80/10/10.

    Same returns as :func:`whole_word_mask`. At least one byte is chosen when there is one to choose.
    """
    maskable = (ids >= NUM_SPECIAL_TOKENS) & ~torch.isin(ids, _WHITESPACE)
    chosen = (torch.rand(ids.shape, generator=generator) < mask_prob) & maskable
    if maskable.any() and not chosen.any():
        where = maskable.nonzero()[:, 0]
        chosen[where[torch.randint(len(where), (1,), generator=generator)]] = True
    u = torch.rand(ids.shape, generator=generator)
    mode = torch.where(chosen, torch.where(u < 0.8, 1, torch.where(u < 0.9, 2, 3)), 0)
    labels = torch.where(chosen, ids, IGNORE_INDEX)
    random_bytes = torch.randint(NUM_SPECIAL_TOKENS, VOCAB_SIZE, ids.shape, generator=generator)
    inputs = torch.where(mode == 1, MASK_ID, torch.where(mode == 2, random_bytes, ids))
    return inputs, labels, mode


def mask_window(
    ids: Tensor, generator: torch.Generator, mask_prob: float, masking: str
) -> tuple[Tensor, Tensor, Tensor]:
    """One window masked by ``masking``: ``"whole_word"``, ``"random"`` (bytes), or ``"mixed"`` (either, 50/50)."""
    if masking == "mixed":
        masking = "whole_word" if torch.rand((), generator=generator) < 0.5 else "random"
    if masking == "random":
        return random_byte_mask(ids, generator, mask_prob)
    return whole_word_mask(ids, generator, mask_prob)


def frame(window: bytes, seq_len: int) -> Tensor:
    """``[CLS] bytes [SEP]`` padded to ``seq_len`` -> ids ``(seq_len,)``."""
    ids = torch.full((seq_len,), PAD_ID, dtype=torch.long)
    body = torch.frombuffer(bytearray(window[: seq_len - 2]), dtype=torch.uint8).long() + NUM_SPECIAL_TOKENS
    ids[0] = CLS_ID
    ids[1 : 1 + len(body)] = body
    ids[1 + len(body)] = SEP_ID
    return ids


@register_task
class MLMTask(Task):
    """Byte-level masked language modelling (``perceiver-io train mlm``)."""

    name = "mlm"
    config_class = MLMConfig
    config: MLMConfig

    @classmethod
    def finalize_config(cls, cfg: Config) -> Config:
        assert isinstance(cfg, MLMConfig)
        model = cfg.model.replace(text={"max_seq_len": cfg.data.seq_len})
        if cfg.train.activation_checkpointing:
            model = model.replace(encoder={"activation_checkpointing": True})
        return cfg.replace(model=model)

    # -- data -------------------------------------------------------------------------------
    def prepare_data(self) -> None:
        d = self.config.data
        from perceiver_io.data import DATASETS, fetch

        if d.corpus in DATASETS and d.corpus != "stdlib":
            try:
                fetch(d.corpus, cache_dir=d.cache_dir)
            except Exception as e:  # network, client missing, verification
                if not d.fallback_corpus:
                    raise DataUnavailable(
                        f"data set {d.corpus!r} is not available and could not be fetched: {e}"
                    ) from None
                self.log(
                    f"note: could not fetch {d.corpus!r} ({str(e).splitlines()[0] if str(e) else type(e).__name__}); "
                    f"falling back to the {d.fallback_corpus!r} corpus"
                )
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
        from perceiver_io.data import ByteWindows, split

        d = self.config.data
        docs = self._documents()
        self.train_docs, self.valid_docs, self.test_docs = split(docs, seed=d.split_seed)
        if not self.train_docs or not self.valid_docs:
            raise DataUnavailable(f"corpus {self.corpus_name!r} has too few documents ({len(docs)}) to split")
        body = d.seq_len - 2
        self.train_data = ByteWindows(self.train_docs, body, d.stride)
        counts = np.bincount(self.train_data.data, minlength=256).astype(np.float64)
        counts[_WHITESPACE.numpy() - NUM_SPECIAL_TOKENS] = 0  # masked bytes are never whitespace
        self.byte_counts = counts  # the baselines' training statistics
        n_train = len(self.train_data.data)
        self.log(
            f"corpus {self.corpus_name}: {len(docs)} documents ({len(self.train_docs)}/{len(self.valid_docs)}/"
            f"{len(self.test_docs)} train/valid/test), {n_train / 1e6:.2f} MB of training bytes, "
            f"{len(self.train_data):,} windows of {body} bytes"
        )

    def build_model(self) -> MaskedLanguageModel:
        return MaskedLanguageModel(self.config.model)

    # -- batches and loss -------------------------------------------------------------------
    def collate(self, items: list[bytes], seeds: list[int], masking: str | None = None) -> dict[str, Tensor]:
        """-> ``input_ids (B, L)``, ``input_mask (B, L)`` bool, ``labels (B, L)`` (IGNORE_INDEX where not masked).

        ``masking`` defaults to ``data.masking`` (training); evaluation always masks whole words.
        """
        d = self.config.data
        masking = masking or d.masking
        rows = [
            mask_window(frame(w, d.seq_len), example_generator(s), d.mask_prob, masking)
            for w, s in zip(items, seeds, strict=True)
        ]
        inputs = torch.stack([r[0] for r in rows])
        labels = torch.stack([r[1] for r in rows])
        batch = {"input_ids": inputs, "input_mask": inputs != PAD_ID, "labels": labels}
        copy_phase = d.unmasked_loss_steps is None or self.step < d.unmasked_loss_steps
        if d.unmasked_loss_weight > 0 and copy_phase:  # reconstruct the visible bytes too (not in the metrics)
            visible = (labels == IGNORE_INDEX) & (inputs >= NUM_SPECIAL_TOKENS)
            batch["visible_labels"] = torch.where(visible, inputs, IGNORE_INDEX)
        return batch

    def count(self, batch: dict[str, Tensor]) -> int:
        return int((batch["labels"] != IGNORE_INDEX).sum())

    def loss(self, model: nn.Module, batch: dict[str, Tensor]) -> Tensor:
        logits = model(batch["input_ids"], batch["input_mask"]).logits.flatten(0, 1).float()
        loss = F.cross_entropy(logits, batch["labels"].flatten(), reduction="sum")
        if "visible_labels" in batch:
            w = self.config.data.unmasked_loss_weight
            loss = loss + w * F.cross_entropy(logits, batch["visible_labels"].flatten(), reduction="sum")
        return loss

    # -- evaluation -------------------------------------------------------------------------
    def _eval_windows(self, split: str) -> list[bytes]:
        from perceiver_io.data import ByteWindows

        docs = {"valid": self.valid_docs, "test": self.test_docs or self.valid_docs, "train": self.train_docs}[split]
        windows = ByteWindows(docs, self.config.data.seq_len - 2)
        n = min(len(windows), self.config.data.eval_windows)
        return [windows[i] for i in range(n)]

    @torch.no_grad()
    def evaluate(self, model: nn.Module, split: str = "valid", max_batches: int | None = None) -> dict[str, float]:
        """Masked-byte accuracy, bits/byte and the baselines on held-out windows (fixed masking seeds)."""
        d = self.config.data
        windows = self._eval_windows(split)
        device = next(model.parameters()).device
        log_unigram = torch.from_numpy(np.log2((self.byte_counts + 1) / (self.byte_counts.sum() + 256))).float()
        top_byte = int(np.argmax(self.byte_counts))
        n = correct = base_correct = 0
        bits = base_bits = nats = 0.0
        bs = d.eval_batch_size
        for b, lo in enumerate(range(0, len(windows), bs)):
            if max_batches is not None and b >= max_batches:
                break
            chunk = windows[lo : lo + bs]
            batch = self.collate(chunk, [10**12 + lo + i for i in range(len(chunk))], masking="whole_word")
            logits = model(batch["input_ids"].to(device), batch["input_mask"].to(device)).logits.float().cpu()
            labels = batch["labels"]
            sel = labels != IGNORE_INDEX
            target = labels[sel]
            lg = logits[sel]
            nats += float(F.cross_entropy(lg, target, reduction="sum"))
            byte_logp = lg[:, NUM_SPECIAL_TOKENS:].log_softmax(-1)  # over the 256 byte values
            tb = target - NUM_SPECIAL_TOKENS
            bits += float(-byte_logp.gather(1, tb[:, None]).sum()) / math.log(2)
            correct += int((byte_logp.argmax(-1) == tb).sum())
            base_correct += int((tb == top_byte).sum())
            base_bits += float(-log_unigram[tb].sum())
            n += len(tb)
        if n == 0:
            raise RuntimeError(f"no masked bytes in the {split} split")
        return {
            "loss": nats / n,
            "accuracy": correct / n,
            "bits_per_byte": bits / n,
            "baseline_most_frequent_accuracy": base_correct / n,
            "baseline_unigram_bits_per_byte": base_bits / n,
            "masked_bytes": float(n),
        }

    # -- fill-mask: examples and word scores -------------------------------------------------
    # (candidates and the word to mask use one rule, so a chosen sentence always has a word)
    def _fill_mask_cases(self, num: int) -> list[tuple[str, str, str]]:
        """Up to ``num`` held-out test sentences as ``(before, word, after)``, one word of ≥ 4 letters masked."""
        max_bytes = self.config.data.seq_len - 2
        rng = np.random.default_rng(0)
        candidates = []
        for doc in self.test_docs or self.valid_docs:
            for sent in re.split(r"(?<=[.!?])\s+", doc):
                sent = " ".join(sent.split())
                if min(40, max_bytes // 2) <= len(sent.encode("utf-8")) <= max_bytes and _maskable_words(sent):
                    candidates.append(sent)
        if not candidates:
            return []
        cases = []
        for i in sorted(rng.choice(len(candidates), size=min(num, len(candidates)), replace=False)):
            sent = candidates[int(i)]
            words = _maskable_words(sent)
            m = words[int(rng.integers(len(words)))]
            cases.append((sent[: m.start()], m.group(0), sent[m.end() :]))
        return cases

    @torch.no_grad()
    def _fill_words(self, model: nn.Module, cases: list[tuple[str, str, str]], strategy: Strategy) -> list[str]:
        """The model's filling of each case's masked word (its bytes all ``[MASK]``), decoded leniently."""
        device = next(model.parameters()).device
        model.eval()
        guesses = []
        bs = self.config.data.eval_batch_size
        for lo in range(0, len(cases), bs):
            chunk = cases[lo : lo + bs]
            starts = [1 + len(pre.encode()) for pre, _, _ in chunk]  # the word's first id, after [CLS]
            rows = []
            for (pre, word, post), lo_w in zip(chunk, starts, strict=True):
                ids = frame(pre.encode() + b"\0" * len(word) + post.encode(), self.config.data.seq_len)
                ids[lo_w : lo_w + len(word)] = MASK_ID
                rows.append(ids)
            ids = torch.stack(rows).to(device)
            filled, _ = fill_masked_ids(model, ids, ids != PAD_ID, strategy)
            for (_, word, _), lo_w, row in zip(chunk, starts, filled.cpu(), strict=True):
                out = (row[lo_w : lo_w + len(word)] - NUM_SPECIAL_TOKENS).tolist()
                guesses.append(bytes(out).decode("utf-8", errors="replace"))
        return guesses

    def fill_mask_examples(
        self, model: nn.Module, num: int | None = None, strategy: Strategy = "iterative"
    ) -> list[tuple[str, str, str]]:
        """``(original, masked, filled)`` for held-out test sentences with one word of ≥ 4 letters masked."""
        num = self.config.data.num_fill_mask_examples if num is None else num
        cases = self._fill_mask_cases(num)
        out = []
        for (pre, word, post), guess in zip(cases, self._fill_words(model, cases, strategy), strict=True):
            out.append((pre + word + post, f"{pre}[MASK×{len(word)}]{post}", pre + guess + post))
        return out

    def training_words(self) -> dict[str, int]:
        """Lower-case words (runs of ASCII letters) of the training documents and their counts."""
        if not hasattr(self, "_training_words"):
            counts: dict[str, int] = {}
            for doc in self.train_docs:
                for w in re.findall(r"[A-Za-z]+", doc):
                    w = w.lower()
                    counts[w] = counts.get(w, 0) + 1
            self._training_words = counts
        return self._training_words

    def fill_mask_scores(self, model: nn.Module, num: int | None = None) -> dict[str, float]:
        """Whole-word fill-mask on ``data.fill_mask_sentences`` held-out sentences, per decoding strategy.

        ``word_accuracy_<strategy>``: the filled word is the original (ignoring case);
        ``real_word_<strategy>``: it is a word of the training text (ignoring case), i.e. it reads as a
        word; ``distinct_real_words_<strategy>``: how many different such words (one word everywhere is
        not plausible text). Baseline ``word_accuracy_most_frequent``: the most frequent training word of
        the same length.
        """
        cases = self._fill_mask_cases(self.config.data.fill_mask_sentences if num is None else num)
        if not cases:
            return {}
        vocab = self.training_words()
        by_len: dict[int, tuple[int, str]] = {}
        for w, c in vocab.items():
            by_len[len(w)] = max(by_len.get(len(w), (0, "")), (c, w))
        truth = [word.lower() for _, word, _ in cases]
        scores = {"fill_mask_sentences": float(len(cases))}
        for strategy in STRATEGIES:
            guesses = [g.lower() for g in self._fill_words(model, cases, strategy)]
            scores[f"word_accuracy_{strategy}"] = float(np.mean([g == t for g, t in zip(guesses, truth, strict=True)]))
            scores[f"real_word_{strategy}"] = float(np.mean([g in vocab for g in guesses]))
            scores[f"distinct_real_words_{strategy}"] = float(len({g for g in guesses if g in vocab}))
        scores["word_accuracy_most_frequent"] = float(np.mean([by_len.get(len(t), (0, ""))[1] == t for t in truth]))
        return scores

    def report(self, model: nn.Module, metrics: dict[str, float]) -> list[str]:
        test = self.evaluate(model, "test")
        lines = [
            f"held-out test ({int(test['masked_bytes']):,} masked bytes on unseen documents of {self.corpus_name}):",
            f"  {'':28s} {'accuracy':>9s} {'bits/byte':>10s}",
            f"  {'Perceiver IO (this run)':28s} {test['accuracy']:9.1%} {test['bits_per_byte']:10.3f}",
            f"  {'baseline: most frequent byte':28s} {test['baseline_most_frequent_accuracy']:9.1%} {'':>10s}",
            f"  {'baseline: unigram bytes':28s} {'':>9s} {test['baseline_unigram_bits_per_byte']:10.3f}",
        ]
        words = self.fill_mask_scores(model)
        if words:
            lines += [
                f"whole-word fill-mask on {int(words['fill_mask_sentences'])} held-out sentences (one word of >= 4 "
                "letters masked in each):",
                f"  {'decoding':28s} {'right word':>10s} {'a real word':>12s} {'distinct':>9s}",
            ]
            for st in STRATEGIES:
                lines.append(
                    f"  {st:28s} {words[f'word_accuracy_{st}']:10.1%} {words[f'real_word_{st}']:12.1%} "
                    f"{int(words[f'distinct_real_words_{st}']):9d}"
                )
            lines.append(f"  {'baseline: most frequent word':28s} {words['word_accuracy_most_frequent']:10.1%}")
            lines.append(
                "  (right word: the original, ignoring case; a real word: one of the training text; "
                "distinct: different real words)"
            )
        lines.append("fill-mask examples on held-out sentences (iterative decoding):")
        for original, masked, filled in self.fill_mask_examples(model):
            lines += [f"  input : {masked}", f"  output: {filled}", f"  truth : {original}", ""]
        test.update(words)
        self.test_metrics = test
        return lines


def _maskable_words(sentence: str) -> list[re.Match]:
    """Words of at least 4 letters that start at byte 8 or later (the fill-mask examples mask one)."""
    return [m for m in re.finditer(r"\b[A-Za-z]{4,}\b", sentence) if m.start() >= 8]
