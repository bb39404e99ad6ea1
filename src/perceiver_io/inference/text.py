"""Fill masked bytes with the byte-level masked language model."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from perceiver_io.adapters.text import BytesTokenizer
from perceiver_io.inference.common import model_device as _model_device
from perceiver_io.inference.common import require_model as _require


@dataclass
class BytePrediction:
    """One candidate for a masked byte: the byte value (0-255), its text (``repr``-safe) and probability."""

    byte: int
    text: str
    probability: float


@dataclass
class FillMaskResult:
    """``text``: the input with every ``[MASK]`` replaced by the most likely byte (invalid UTF-8 -> U+FFFD);
    ``filled_bytes``: the same as raw bytes; ``positions``: byte offsets of the masked bytes in
    ``filled_bytes``; ``predictions``: per masked byte, the top-k candidates (most likely first)."""

    text: str
    filled_bytes: bytes
    positions: list[int] = field(default_factory=list)
    predictions: list[list[BytePrediction]] = field(default_factory=list)


def _byte_text(b: int) -> str:
    return chr(b) if b < 0x80 else f"\\x{b:02x}"


@torch.no_grad()
def fill_mask(
    model: torch.nn.Module, texts: str | Sequence[str], top_k: int = 5
) -> FillMaskResult | list[FillMaskResult]:
    """Fill every ``[MASK]`` (one byte each; write ``[MASK][MASK]`` for two bytes) in ``texts``.

    ``model``: a ``MaskedLanguageModel``. A single string gives one :class:`FillMaskResult`, a list
    gives a list. Only byte ids (not special tokens) are predicted.
    """
    _require(model, "MaskedLanguageModel", "fill_mask")
    single = isinstance(texts, str)
    batch = [texts] if single else list(texts)
    if not batch:
        raise ValueError("texts is empty")
    if not 1 <= top_k <= 256:
        raise ValueError(f"top_k must be in [1, 256], got {top_k}")
    tok = BytesTokenizer()
    max_len = model.config.text.max_seq_len
    for i, t in enumerate(batch):
        if not isinstance(t, str):
            raise TypeError(f"texts[{i}] must be a str, got {type(t).__name__}")
        n = len(tok.encode(t)) + 2
        if n > max_len:
            raise ValueError(f"texts[{i}] is {n} tokens with [CLS]/[SEP], more than the model's max_seq_len {max_len}")
    model.eval()
    device = _model_device(model)
    ids, mask = tok(batch)
    logits = model(ids.to(device), mask.to(device)).logits.float().cpu()  # (B, L, V)
    probs = logits[..., tok.num_special_tokens :].softmax(-1)  # (B, L, 256) over bytes only
    results = []
    for row in range(len(batch)):
        length = int(mask[row].sum())
        seq = ids[row, 1 : length - 1].clone()  # drop [CLS] ... [SEP]
        p = probs[row, 1 : length - 1]
        positions = (seq == tok.mask_id).nonzero().flatten().tolist()
        preds = []
        for pos in positions:
            values, idx = p[pos].topk(top_k)
            preds.append(
                [BytePrediction(int(b), _byte_text(int(b)), float(v)) for v, b in zip(values, idx, strict=True)]
            )
            seq[pos] = int(idx[0]) + tok.num_special_tokens
        data = bytes(int(i) - tok.num_special_tokens for i in seq if int(i) >= tok.num_special_tokens)
        results.append(FillMaskResult(data.decode("utf-8", errors="replace"), data, positions, preds))
    return results[0] if single else results
