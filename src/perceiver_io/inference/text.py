"""Fill masked bytes with the byte-level masked language model."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor

from perceiver_io.adapters.text import MASK_ID, NUM_SPECIAL_TOKENS, BytesTokenizer
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


Strategy = Literal["iterative", "independent"]
STRATEGIES: tuple[str, ...] = ("iterative", "independent")


@torch.no_grad()
def fill_masked_ids(
    model: torch.nn.Module, input_ids: Tensor, input_mask: Tensor, strategy: Strategy = "iterative"
) -> tuple[Tensor, Tensor]:
    """Replace every ``[MASK]`` id of ``input_ids`` (B, L) by a byte id; ``input_mask`` (B, L) bool.

    ``"independent"``: one forward pass, every masked byte its own argmax (as ``transformers``'
    fill-mask does). ``"iterative"``: one pass per masked byte, in order of confidence: each pass
    fixes, in every sequence, the still-masked byte whose most likely value is the most probable,
    and the next pass sees it (mask-predict decoding; a masked word's bytes then agree with each
    other). Returns the filled ids (B, L) and, per position, the distribution over the 256 byte
    values it was filled from (B, L, 256; zeros at positions that were not masked).
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    ids = input_ids.clone()
    masked = ids == MASK_ID
    filled_from = torch.zeros(*ids.shape, 256, device=ids.device)
    while bool(masked.any()):
        logits = model(ids, input_mask).logits
        probs = logits[..., NUM_SPECIAL_TOKENS:].float().softmax(-1)  # (B, L, 256): bytes only
        conf, best = probs.max(-1)
        if strategy == "independent":
            pick = masked
        else:  # the most confident masked position of every row that still has one
            pos = conf.masked_fill(~masked, -1.0).argmax(-1)  # (B,)
            pick = torch.zeros_like(masked).scatter_(1, pos[:, None], True) & masked
        ids[pick] = best[pick] + NUM_SPECIAL_TOKENS
        filled_from[pick] = probs[pick]
        masked &= ~pick
    return ids, filled_from


@torch.no_grad()
def fill_mask(
    model: torch.nn.Module, texts: str | Sequence[str], top_k: int = 5, strategy: Strategy = "iterative"
) -> FillMaskResult | list[FillMaskResult]:
    """Fill every ``[MASK]`` (one byte each; write ``[MASK][MASK]`` for two bytes) in ``texts``.

    ``model``: a ``MaskedLanguageModel``. A single string gives one :class:`FillMaskResult`, a list
    gives a list. Only byte ids (not special tokens) are predicted; ``strategy`` as in
    :func:`fill_masked_ids` (the candidates of a byte are those of the pass that fixed it).
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
            raise ValueError(f"texts[{i}] is {n} tokens with [CLS]/[SEP], more than max_seq_len ({max_len})")
    model.eval()
    device = _model_device(model)
    ids, mask = tok(batch)
    filled, probs = fill_masked_ids(model, ids.to(device), mask.to(device), strategy)
    filled, probs = filled.cpu(), probs.cpu()
    results = []
    for row in range(len(batch)):
        length = int(mask[row].sum())
        positions = (ids[row, 1 : length - 1] == tok.mask_id).nonzero().flatten().tolist()
        seq = filled[row, 1 : length - 1]  # drop [CLS] ... [SEP]
        preds = []
        for pos in positions:
            values, idx = probs[row, 1 + pos].topk(top_k)
            preds.append(
                [BytePrediction(int(b), _byte_text(int(b)), float(v)) for v, b in zip(values, idx, strict=True)]
            )
        data = bytes(int(i) - tok.num_special_tokens for i in seq if int(i) >= tok.num_special_tokens)
        results.append(FillMaskResult(data.decode("utf-8", errors="replace"), data, positions, preds))
    return results[0] if single else results
