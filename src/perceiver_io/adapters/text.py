"""UTF-8 bytes text: tokenizer, input adapter (token + learned position embeddings), masked-LM head.

The tokenizer needs no vocabulary file: token id = byte value + 6; ids 0..5 are reserved for
``[PAD] [BOS] [EOS] [MASK] [CLS] [SEP]``; the vocabulary has 262 entries (DeepMind's
``BytesTokenizer``, also ``transformers``' ``PerceiverTokenizer``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from perceiver_io.adapters.base import AdaptedInputs, InputAdapter
from perceiver_io.config import Config
from perceiver_io.heads import OutputHead
from perceiver_io.layers.position import TrainablePositionEncoding
from perceiver_io.queries import LearnedQueries
from perceiver_io.validation import check_tensor

__all__ = [
    "BytesTokenizer",
    "TextAdapterConfig",
    "TextInputAdapter",
    "MaskedLanguageHead",
    "MaskedLanguageModelOutput",
    "PAD_ID",
    "BOS_ID",
    "EOS_ID",
    "MASK_ID",
    "CLS_ID",
    "SEP_ID",
    "NUM_SPECIAL_TOKENS",
    "VOCAB_SIZE",
]

PAD_ID, BOS_ID, EOS_ID, MASK_ID, CLS_ID, SEP_ID = range(6)
NUM_SPECIAL_TOKENS = 6
VOCAB_SIZE = 256 + NUM_SPECIAL_TOKENS  # 262

SPECIAL_TOKENS: dict[int, str] = {
    PAD_ID: "[PAD]",
    BOS_ID: "[BOS]",
    EOS_ID: "[EOS]",
    MASK_ID: "[MASK]",
    CLS_ID: "[CLS]",
    SEP_ID: "[SEP]",
}


class BytesTokenizer:
    """Text <-> byte ids. ``encode``/``decode`` round-trip any Unicode string.

    With ``parse_mask=True`` (the default) every literal ``"[MASK]"`` in the text becomes one
    ``MASK_ID`` (one masked byte); write it ``k`` times to mask ``k`` bytes, or use
    :meth:`mask_span`. ``decode`` renders special ids as their names (``"[MASK]"`` ...), so
    ``decode(encode(text)) == text`` for every text.
    """

    pad_id, bos_id, eos_id, mask_id, cls_id, sep_id = PAD_ID, BOS_ID, EOS_ID, MASK_ID, CLS_ID, SEP_ID
    vocab_size = VOCAB_SIZE
    num_special_tokens = NUM_SPECIAL_TOKENS
    mask_token = "[MASK]"

    def encode(self, text: str, add_special_tokens: bool = False, parse_mask: bool = True) -> list[int]:
        """``text`` -> ids; ``add_special_tokens`` wraps them as ``[CLS] ... [SEP]`` (as ``transformers``)."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        pieces = re.split(r"(\[MASK\])", text) if parse_mask else [text]
        ids: list[int] = []
        for piece in pieces:
            if parse_mask and piece == self.mask_token:
                ids.append(MASK_ID)
            elif piece:
                ids.extend(b + NUM_SPECIAL_TOKENS for b in piece.encode("utf-8"))
        if add_special_tokens:
            ids = [CLS_ID, *ids, SEP_ID]
        return ids

    def decode(self, ids: Sequence[int] | Tensor, skip_special_tokens: bool = False) -> str:
        """ids -> text; invalid UTF-8 byte runs (e.g. a predicted half character) become U+FFFD."""
        if isinstance(ids, Tensor):
            ids = ids.tolist()
        parts: list[str] = []
        run = bytearray()
        for i in ids:
            i = int(i)
            if not 0 <= i < VOCAB_SIZE:
                raise ValueError(f"token id must be in [0, {VOCAB_SIZE}), got {i}")
            if i >= NUM_SPECIAL_TOKENS:
                run.append(i - NUM_SPECIAL_TOKENS)
                continue
            if run:
                parts.append(run.decode("utf-8", errors="replace"))
                run = bytearray()
            if not skip_special_tokens:
                parts.append(SPECIAL_TOKENS[i])
        if run:
            parts.append(run.decode("utf-8", errors="replace"))
        return "".join(parts)

    def mask_span(self, text: str, start: int, end: int) -> str:
        """``text`` with the UTF-8 bytes ``start:end`` replaced by one ``[MASK]`` each."""
        data = text.encode("utf-8")
        if not 0 <= start <= end <= len(data):
            raise ValueError(f"span {start}:{end} is outside the {len(data)} bytes of text")
        return (
            data[:start].decode("utf-8", errors="replace")
            + self.mask_token * (end - start)
            + data[end:].decode("utf-8", errors="replace")
        )

    def __call__(
        self,
        texts: str | Sequence[str],
        max_length: int | None = None,
        pad_to_max_length: bool = False,
        add_special_tokens: bool = True,
        parse_mask: bool = True,
    ) -> tuple[Tensor, Tensor]:
        """Batch-encode: returns ``input_ids (B, L)`` int64 and ``input_mask (B, L)`` bool (True = real).

        Sequences longer than ``max_length`` are truncated; shorter ones are padded with ``PAD_ID``
        to the longest sequence (or to ``max_length`` with ``pad_to_max_length``).
        """
        if isinstance(texts, str):
            texts = [texts]
        seqs = [self.encode(t, add_special_tokens, parse_mask) for t in texts]
        if max_length is not None:
            if max_length <= 0:
                raise ValueError(f"max_length must be positive, got {max_length}")
            seqs = [s[:max_length] for s in seqs]
        length = max_length if (pad_to_max_length and max_length) else max((len(s) for s in seqs), default=0)
        ids = torch.full((len(seqs), length), PAD_ID, dtype=torch.long)
        mask = torch.zeros((len(seqs), length), dtype=torch.bool)
        for row, s in enumerate(seqs):
            ids[row, : len(s)] = torch.tensor(s, dtype=torch.long)
            mask[row, : len(s)] = True
        return ids, mask


@dataclass
class TextAdapterConfig(Config):
    """Token ids ``(B, L)`` -> embeddings ``(B, L, num_channels)``; ``L <= max_seq_len``."""

    vocab_size: int = VOCAB_SIZE
    max_seq_len: int = 2048
    num_channels: int = 768
    init_scale: float = 0.02

    def validate(self) -> None:
        self._positive("vocab_size", "max_seq_len", "num_channels")


class TextInputAdapter(InputAdapter):
    """Token embedding plus learned position embedding (added): ``(B, L)`` int -> ``(B, L, C)``."""

    def __init__(self, config: TextAdapterConfig) -> None:
        super().__init__()
        self.config = config
        self.token_embedding = nn.Embedding(config.vocab_size, config.num_channels)
        s = config.init_scale
        nn.init.trunc_normal_(self.token_embedding.weight, std=s, a=-2 * s, b=2 * s)
        self.position_embedding = TrainablePositionEncoding(config.max_seq_len, config.num_channels, config.init_scale)

    @property
    def num_channels(self) -> int:
        return self.config.num_channels

    def check_input_ids(self, input_ids: Tensor, name: str = "input_ids") -> None:
        check_tensor(name, input_ids, 2, f"(B, L) with L <= {self.config.max_seq_len}")
        if input_ids.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8, torch.int8):
            raise TypeError(f"{name} must be an integer tensor, got dtype {input_ids.dtype}")
        if input_ids.shape[1] > self.config.max_seq_len:
            raise ValueError(
                f"{name} has length {input_ids.shape[1]}, more than max_seq_len ({self.config.max_seq_len})"
            )
        if input_ids.numel() and not torch.compiler.is_compiling():
            lo, hi = int(input_ids.min()), int(input_ids.max())
            if lo < 0 or hi >= self.config.vocab_size:
                raise ValueError(f"{name} must be in [0, {self.config.vocab_size}), got values in [{lo}, {hi}]")

    def forward(self, input_ids: Tensor) -> AdaptedInputs:
        """``input_ids (B, L)`` -> inputs ``(B, L, C)``; position ``i`` gets position embedding ``i``."""
        self.check_input_ids(input_ids)
        length = input_ids.shape[1]
        x = self.token_embedding(input_ids.long()) + self.position_embedding.embeddings[:length]
        return AdaptedInputs(x, index_shape=(length,))

    def example_inputs(self, batch_size: int = 1) -> Tensor:
        """Random byte ids ``(B, max_seq_len)`` (no special tokens)."""
        v = self.config.vocab_size
        return torch.randint(min(NUM_SPECIAL_TOKENS, v - 1), v, (batch_size, self.config.max_seq_len))


@dataclass
class MaskedLanguageModelOutput:
    """``logits``: ``(B, L, vocab_size)``; ``latents``: ``(B, N, D)``."""

    logits: Tensor
    latents: Tensor


class MaskedLanguageHead(OutputHead):
    """One learned query per position; logits from the tied token embedding ``E (V, C)``: ``x·Eᵀ + b``.

    Inputs of length ``L`` are decoded at positions ``0..L-1`` (all ``max_seq_len`` without inputs),
    or at ``indices (P,)``.
    """

    def __init__(self, token_embedding: nn.Embedding, max_seq_len: int, init_scale: float = 0.02) -> None:
        super().__init__()
        vocab_size, width = token_embedding.weight.shape
        self.query_builder = LearnedQueries(max_seq_len, width, init_scale, per_input_position=True)
        self.bias = nn.Parameter(torch.zeros(vocab_size))
        self._tied = [token_embedding]  # the input adapter's module; a list keeps it out of this head's state

    def finish(self, rows, latents, inputs, indices) -> MaskedLanguageModelOutput:
        x = rows["outputs"]
        logits = torch.matmul(x, self._tied[0].weight.t().to(x.dtype)) + self.bias.to(x.dtype)
        return MaskedLanguageModelOutput(logits=logits, latents=latents)
