"""Output-query builders: learned, Fourier features of a grid, or the inputs themselves.

A builder makes the query array ``(B, O, E)`` that the decoder cross-attends from. Every
builder can produce

* all queries: ``builder(batch_size, inputs=...)``;
* a random subset for training, at flat indices: ``builder(batch_size, indices=idx)``;
* a contiguous chunk of the full set: ``builder.chunk(batch_size, start, end)``, so that the
  decoder can build and decode huge query sets (every pixel of a video) piece by piece.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from perceiver_io.layers.position import FourierPositionEncoding, TrainablePositionEncoding, index_positions
from perceiver_io.validation import check_indices

__all__ = ["QueryBuilder", "LearnedQueries", "FourierQueries", "InputQueries", "LazyQueries"]


@dataclass
class LazyQueries:
    """Queries ``(B, O, E)`` that are built chunk by chunk: ``build(start, end) -> (B, end-start, E)``."""

    batch_size: int
    num_queries: int
    build: Callable[[int, int], Tensor]


class QueryBuilder(nn.Module):
    """Base class. ``num_channels`` is the query width E."""

    num_channels: int

    def num_queries(self, inputs: Tensor | None = None) -> int:
        raise NotImplementedError

    def forward(self, batch_size: int, inputs: Tensor | None = None, indices: Tensor | None = None) -> Tensor:
        raise NotImplementedError

    def chunk(self, batch_size: int, start: int, end: int, inputs: Tensor | None = None) -> Tensor:
        """Rows ``start:end`` of the full query set ``(B, end-start, E)``."""
        return self(batch_size, inputs=inputs)[:, start:end]

    def lazy(self, batch_size: int, inputs: Tensor | None = None) -> LazyQueries:
        """All queries, built on demand ``build(start, end)``; the whole range is built in one call."""
        n = self.num_queries(inputs)

        def build(start: int, end: int) -> Tensor:
            if (start, end) == (0, n):
                return self(batch_size, inputs=inputs)
            return self.chunk(batch_size, start, end, inputs)

        return LazyQueries(batch_size, n, build)


class LearnedQueries(QueryBuilder):
    """A learned ``(O, E)`` query array (one row for classification, one per position for MLM).

    ``per_input_position=True``: one query per input row, so inputs ``(B, L, C)`` get the first
    ``L`` rows (``L <= O``; all ``O`` without inputs).
    """

    def __init__(
        self, num_queries: int, num_channels: int, init_scale: float = 0.02, per_input_position: bool = False
    ) -> None:
        super().__init__()
        self.num_channels = num_channels
        self.per_input_position = per_input_position
        self.embedding = TrainablePositionEncoding(num_queries, num_channels, init_scale)

    def num_queries(self, inputs: Tensor | None = None) -> int:
        n = self.embedding.num_positions
        if self.per_input_position and inputs is not None:
            if inputs.shape[1] > n:
                raise ValueError(f"inputs have {inputs.shape[1]} positions, more than the {n} learned queries")
            return inputs.shape[1]
        return n

    def forward(self, batch_size: int, inputs: Tensor | None = None, indices: Tensor | None = None) -> Tensor:
        if indices is None and self.per_input_position and inputs is not None:
            return self.chunk(batch_size, 0, self.num_queries(inputs))
        if indices is not None:
            check_indices("query_indices", indices, self.embedding.num_positions)
        return self.embedding(batch_size, indices)

    def chunk(self, batch_size: int, start: int, end: int, inputs: Tensor | None = None) -> Tensor:
        return self.embedding.embeddings[start:end].unsqueeze(0).expand(batch_size, -1, -1)


class FourierQueries(QueryBuilder):
    """Fourier features of the output grid ``index_dims``: one query per output point.

    Subsampled decoding (``indices``) uses the official ``-1 + 2·i/n`` positions. Decoding every
    point (``forward`` without indices, or ``chunk``) uses ``full_positions``:

    * ``"grid"`` (default): ``linspace(-1, 1, n)``, the official ``BasicDecoder`` without subsampling;
    * ``"index"``: ``-1 + 2·i/n``, the positions a model trained on subsampled points saw; decoding
      every point in chunks of indices (the official colab, ``transformers``) gives these.
    """

    def __init__(
        self,
        index_dims: Sequence[int],
        num_bands: int,
        max_resolution: Sequence[int] | None = None,
        concat_pos: bool = True,
        sine_only: bool = False,
        full_positions: str = "grid",
    ) -> None:
        super().__init__()
        if full_positions not in ("grid", "index"):
            raise ValueError(f"full_positions must be 'grid' or 'index', got {full_positions!r}")
        self.full_positions = full_positions
        self.encoding = FourierPositionEncoding(index_dims, num_bands, max_resolution, concat_pos, sine_only)
        self.num_channels = self.encoding.num_channels
        # follows model.to(device): the queries are built where the model lives when no inputs are given
        self.register_buffer("_device_anchor", torch.empty(0), persistent=False)

    def num_queries(self, inputs: Tensor | None = None) -> int:
        return math.prod(self.encoding.index_dims)

    def _device(self, inputs: Tensor | None) -> torch.device:
        return inputs.device if inputs is not None else self._device_anchor.device

    def forward(self, batch_size: int, inputs: Tensor | None = None, indices: Tensor | None = None) -> Tensor:
        if indices is not None:
            check_indices("query_indices", indices, self.num_queries())
        if indices is None and self.full_positions == "index":
            indices = torch.arange(self.num_queries(), device=self._device(inputs))
        return self.encoding(batch_size, indices=indices, device=self._device(inputs))

    def chunk(self, batch_size: int, start: int, end: int, inputs: Tensor | None = None) -> Tensor:
        idx = torch.arange(start, end, device=self._device(inputs))
        formula = "grid" if self.full_positions == "grid" else "subsampled"
        pos = index_positions(idx, self.encoding.index_dims, formula=formula)
        return self.encoding.features(pos).unsqueeze(0).expand(batch_size, -1, -1)


class InputQueries(QueryBuilder):
    """The (preprocessed) inputs ``(B, M, C)`` are the queries, one output per input (optical flow)."""

    def __init__(self, num_channels: int) -> None:
        super().__init__()
        self.num_channels = num_channels

    def _require(self, inputs: Tensor | None) -> Tensor:
        if inputs is None:
            raise ValueError("InputQueries needs the inputs: pass inputs=(B, M, C)")
        return inputs

    def num_queries(self, inputs: Tensor | None = None) -> int:
        return self._require(inputs).shape[1]

    def forward(self, batch_size: int, inputs: Tensor | None = None, indices: Tensor | None = None) -> Tensor:
        x = self._require(inputs)
        if indices is None:
            return x
        check_indices("query_indices", indices, x.shape[1])
        return x[:, indices]

    def chunk(self, batch_size: int, start: int, end: int, inputs: Tensor | None = None) -> Tensor:
        return self._require(inputs)[:, start:end]
