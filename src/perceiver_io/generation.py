"""Token sampling for autoregressive generation: temperature, top-k, top-p (nucleus), stop sequences.

``sample_next_token(logits (B, V), ...) -> (B,)`` applies, in this order, ``temperature``, ``top_k``
and ``top_p`` (as ``transformers``), then draws from the softmax with an optional
``torch.Generator``; ``do_sample=False`` is greedy (argmax of the raw logits).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "GenerationOutput",
    "StopSequences",
    "check_sampling_args",
    "process_logits",
    "sample_next_token",
    "top_k_filter",
    "top_p_filter",
]


@dataclass
class GenerationOutput:
    """What ``generate`` returns.

    * ``sequences (B, P + T)``: the prompts (left-padded, truncated to the context) then the new tokens;
    * ``sequence_mask (B, P + T)`` bool: real prompt tokens and generated tokens up to each row's stop;
    * ``new_tokens (B, T)``: the generated tokens, ``pad_token_id`` after a row's stop;
    * ``num_new_tokens (B,)``: generated tokens per row (a stop sequence included);
    * ``logits (B, T, V)`` or ``None``: the raw next-token logits of every step (``output_logits=True``).
    """

    sequences: Tensor
    sequence_mask: Tensor
    new_tokens: Tensor
    num_new_tokens: Tensor
    logits: Tensor | None = None


def check_sampling_args(do_sample: bool, temperature: float, top_k: int | None, top_p: float | None) -> None:
    """Raise ``ValueError`` naming the argument for values outside their ranges (``temperature`` only
    matters, and is only checked, when sampling)."""
    if not isinstance(do_sample, bool):
        raise ValueError(f"do_sample must be true or false, got {do_sample!r}")
    bad = (
        not isinstance(temperature, (int, float)) or isinstance(temperature, bool) or not 0 < temperature < float("inf")
    )
    if do_sample and bad:
        raise ValueError(f"temperature must be a positive number when sampling, got {temperature!r}")
    if top_k is not None and (not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1):
        raise ValueError(f"top_k must be None or a positive integer, got {top_k!r}")
    if top_p is not None and (not isinstance(top_p, (int, float)) or isinstance(top_p, bool) or not 0 < top_p <= 1):
        raise ValueError(f"top_p must be None or in (0, 1], got {top_p!r}")


def top_k_filter(logits: Tensor, top_k: int) -> Tensor:
    """``logits (..., V)`` with all but the ``top_k`` largest set to ``-inf`` (ties with the k-th kept)."""
    k = min(top_k, logits.shape[-1])
    kth = logits.topk(k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: Tensor, top_p: float) -> Tensor:
    """Nucleus filter: keep the smallest set of most probable tokens whose probabilities sum to at least
    ``top_p`` (a token is kept iff the tokens more probable than it sum to less than ``top_p``; the most
    probable token is always kept); the others become ``-inf``."""
    if top_p >= 1.0:
        return logits
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    probs = sorted_logits.float().softmax(dim=-1)
    before = probs.cumsum(dim=-1) - probs  # mass of the strictly more probable tokens (in sorted order)
    remove_sorted = before >= top_p
    remove_sorted[..., 0] = False
    remove = torch.zeros_like(remove_sorted).scatter(-1, order, remove_sorted)
    return logits.masked_fill(remove, float("-inf"))


def process_logits(logits: Tensor, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None):
    """``logits / temperature``, then :func:`top_k_filter`, then :func:`top_p_filter` (fp32)."""
    out = logits.float() / temperature
    if top_k is not None:
        out = top_k_filter(out, top_k)
    if top_p is not None:
        out = top_p_filter(out, top_p)
    return out


def sample_next_token(
    logits: Tensor,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """``logits (B, V)`` -> token ids ``(B,)``: argmax, or a draw from the processed distribution."""
    if not do_sample:
        return logits.argmax(dim=-1)
    probs = process_logits(logits, temperature, top_k, top_p).softmax(dim=-1)
    if generator is not None and generator.device != probs.device:
        return torch.multinomial(probs.cpu(), 1, generator=generator)[:, 0].to(probs.device)
    return torch.multinomial(probs, 1, generator=generator)[:, 0]


class StopSequences:
    """Stop sequences (token-id lists) and an optional end token; :meth:`matches` tells which rows of a
    sequence ``(B, T)`` now end with one of them (all matched positions real per ``mask``)."""

    def __init__(self, sequences: Sequence[Sequence[int]], eos_token_id: int | None, vocab_size: int) -> None:
        stops = [list(s) for s in sequences]
        if eos_token_id is not None:
            stops.append([eos_token_id])
        for s in stops:
            if not s:
                raise ValueError("stop sequences must not be empty")
            if any(not 0 <= i < vocab_size for i in s):
                raise ValueError(f"stop sequence {s} has ids outside [0, {vocab_size})")
        self.sequences = [torch.tensor(s, dtype=torch.long) for s in stops]

    def __bool__(self) -> bool:
        return bool(self.sequences)

    def matches(self, seq: Tensor, mask: Tensor) -> Tensor:
        """``(B,)`` bool: ``seq (B, T)`` ends with a stop sequence whose positions are all real."""
        hit = torch.zeros(seq.shape[0], dtype=torch.bool, device=seq.device)
        for s in self.sequences:
            n = len(s)
            if n > seq.shape[1]:
                continue
            hit |= (seq[:, -n:] == s.to(seq.device)).all(dim=1) & mask[:, -n:].all(dim=1)
        return hit
