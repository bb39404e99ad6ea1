"""Splits and byte windows: deterministic train / valid / test splits, fixed-length UTF-8 byte windows."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TypeVar

import numpy as np
import torch
from torch.utils.data import Dataset

__all__ = ["ByteWindows", "split"]

T = TypeVar("T")


def split(
    items: Sequence[T], fractions: Sequence[float] = (0.9, 0.05, 0.05), seed: int = 0
) -> tuple[list[T], list[T], list[T]]:
    """Deterministic train / valid / test split of ``items`` (documents, examples), disjoint and exhaustive.

    Items are assigned by a seeded permutation (independent of Python's hash seed); each part keeps
    the original order. Split corpora by document so that held-out text is unseen.
    """
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"fractions must be three non-negative numbers summing to 1, got {tuple(fractions)}")
    n = len(items)
    order = list(range(n))
    random.Random(seed).shuffle(order)
    n_valid = round(n * fractions[1])
    n_test = round(n * fractions[2])
    n_train = max(n - n_valid - n_test, 0)
    parts = order[:n_train], order[n_train : n_train + n_valid], order[n_train + n_valid :]
    train, valid, test = ([items[i] for i in sorted(idx)] for idx in parts)
    return train, valid, test


class ByteWindows(Dataset):
    """Fixed-length windows of the UTF-8 bytes of a corpus, for byte-level language modelling.

    The documents are joined with ``separator`` and cut into windows of at most ``seq_len`` bytes
    starting every ``stride`` bytes (default ``seq_len``). With ``align=True`` each start moves back
    (at most ``stride // 4`` bytes, capped at 32) to just after whitespace, so windows tend to begin
    with a whole word at the cost of a few bytes of overlap; starts never fall inside a UTF-8
    character. With ``stride <= seq_len`` every byte lies in some window. Items are ``bytes``
    (``torch.uint8`` tensors with ``as_tensor=True``) of ``seq_len`` bytes; only the last may be shorter.
    Tokenising (byte + 6) is left to :class:`perceiver_io.adapters.text.BytesTokenizer`.
    """

    def __init__(
        self,
        documents: Sequence[str],
        seq_len: int,
        stride: int | None = None,
        separator: str = "\n\n",
        align: bool = True,
        as_tensor: bool = False,
    ) -> None:
        if isinstance(documents, str):
            raise TypeError("documents must be a sequence of strings, got one str (wrap it in a list)")
        if not isinstance(seq_len, int) or seq_len < 1:
            raise ValueError(f"seq_len must be a positive int, got {seq_len!r}")
        stride = seq_len if stride is None else stride
        if not isinstance(stride, int) or stride < 1:
            raise ValueError(f"stride must be a positive int, got {stride!r}")
        self.seq_len, self.stride, self.as_tensor = seq_len, stride, as_tensor
        self.data = np.frombuffer(separator.join(documents).encode("utf-8"), dtype=np.uint8)
        n = len(self.data)
        max_shift = min(stride // 4, 32) if align else 0
        starts: list[int] = [0] if n else []
        while starts and starts[-1] + seq_len < n:  # until a window reaches the end
            starts.append(self._aligned(starts[-1] + stride, max_shift))
        self.starts = np.asarray(starts, dtype=np.int64)

    def _aligned(self, s: int, max_shift: int) -> int:
        """``s`` moved back (at most ``max_shift`` bytes) to just after whitespace, and onto a character start."""
        data = self.data
        if max_shift:
            seg = data[s - max_shift : s]
            ws = np.flatnonzero((seg == 32) | (seg == 10) | (seg == 9) | (seg == 13))
            if len(ws):
                s = s - max_shift + int(ws[-1]) + 1
        while s > 0 and 0x80 <= data[s] < 0xC0:  # never start inside a multi-byte character
            s -= 1
        return s

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, index: int) -> bytes | torch.Tensor:
        if not -len(self) <= index < len(self):
            raise IndexError(f"window index {index} out of range for {len(self)} windows")
        start = int(self.starts[index])
        chunk = self.data[start : start + self.seq_len]
        return torch.from_numpy(chunk.copy()) if self.as_tensor else chunk.tobytes()

    @property
    def num_bytes(self) -> int:
        """Total bytes of the joined corpus."""
        return len(self.data)
