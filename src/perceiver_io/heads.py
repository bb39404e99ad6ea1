"""Output heads: everything task-specific on the write side of a model, behind one interface.

A head owns

* its **queries**: ``queries(latents, inputs, indices) -> {group: (B, O_g, E) or LazyQueries}``,
  built from its query builder (learned, Fourier grid, inputs-as-queries, per modality), for all
  output points or for the flat ``indices`` of a subsampled set (training);
* an optional per-chunk **row function** ``row_fn(group)``, applied to each decoded chunk so that
  only its (narrower) result is kept for every query (e.g. a modality's output projection);
* the **final step** ``finish(rows, latents, inputs, indices) -> output dataclass`` (reshape,
  rescale, tied-embedding logits, split by modality).

Queries come in named *groups* decoded one after another (one group, ``"outputs"``, except for
multimodal heads: one per modality), so a chunk never straddles two row functions.
:class:`perceiver_io.models.PerceiverIOBase` implements ``encode``/``decode``/``forward`` once
on this interface; DeepMind's ``AbstractPerceiverDecoder`` (``decoder_query`` / ``output_shape``
/ ``__call__``) is the model. Heads with ``uses_decoder = False`` read the latents directly
(the original Perceiver's average-pool classifier) and build no queries.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from perceiver_io.queries import LazyQueries, QueryBuilder

if TYPE_CHECKING:
    from perceiver_io.adapters.base import AdaptedInputs

__all__ = [
    "OutputHead",
    "QueryHead",
    "ClassificationHead",
    "PoolingClassificationHead",
    "ModalityHead",
    "PerceiverIOOutput",
    "ClassifierOutput",
    "Queries",
]

Queries = Tensor | LazyQueries


@dataclass
class PerceiverIOOutput:
    """``outputs``: ``(B, O, F)``; ``latents``: ``(B, N, D)`` final latents."""

    outputs: Tensor
    latents: Tensor


@dataclass
class ClassifierOutput:
    """``logits``: ``(B, num_classes)``; ``latents``: ``(B, N, D)``."""

    logits: Tensor
    latents: Tensor


class OutputHead(nn.Module):
    """Base class; see the module docstring. Subclasses set ``query_builder`` (or override :meth:`queries`)."""

    groups: tuple[str, ...] = ("outputs",)
    uses_decoder: bool = True
    query_builder: QueryBuilder | None

    @property
    def num_query_channels(self) -> int:
        """Width E of the queries (the decoder's ``num_query_channels``)."""
        if self.query_builder is None:
            raise ValueError(f"{type(self).__name__} has no query builder: its query width is not known")
        return self.query_builder.num_channels

    def queries(self, latents: Tensor, inputs: AdaptedInputs | None, indices: Any = None) -> dict[str, Queries]:
        """Queries per group for ``latents (B, N, D)``: lazily built over every output point, or at
        the flat ``indices (P,)``."""
        if self.query_builder is None:
            raise ValueError("this model's queries are kind='given': pass queries=(B, O, E)")
        b, x = latents.shape[0], None if inputs is None else inputs.inputs
        if indices is not None:
            return {self.groups[0]: self.query_builder(b, inputs=x, indices=indices)}
        return {self.groups[0]: self.query_builder.lazy(b, inputs=x)}

    def given_queries(self, queries: Tensor | Mapping[str, Tensor]) -> dict[str, Queries]:
        """Caller-supplied queries: a tensor for a one-group head, else ``{group: (B, O_g, E)}``."""
        if isinstance(queries, Mapping):
            if set(queries) != set(self.groups):
                raise ValueError(f"queries must have keys {list(self.groups)}, got {sorted(queries)}")
            return {g: queries[g] for g in self.groups}
        if len(self.groups) != 1:
            raise ValueError(f"this head decodes groups {list(self.groups)}: pass queries as {{group: (B, O, E)}}")
        return {self.groups[0]: queries}

    def row_fn(self, group: str) -> Callable[[Tensor], Tensor] | None:
        """A row-wise map applied to each decoded chunk of ``group`` (``None``: keep the decoder's rows)."""
        return None

    def finish(self, rows: dict[str, Tensor], latents: Tensor, inputs: AdaptedInputs | None, indices: Any) -> Any:
        """Decoded rows per group -> the model's output dataclass."""
        raise NotImplementedError


class QueryHead(OutputHead):
    """The generic head: its query builder's queries (or given ones); outputs are the rows ``(B, O, F)``."""

    def __init__(self, query_builder: QueryBuilder | None) -> None:
        super().__init__()
        self.query_builder = query_builder

    def finish(self, rows, latents, inputs, indices) -> PerceiverIOOutput:
        return PerceiverIOOutput(outputs=rows["outputs"], latents=latents)


class ClassificationHead(OutputHead):
    """One learned query; its decoded row (projected to ``num_classes`` by the decoder) is the logits ``(B, K)``."""

    def __init__(self, query_builder: QueryBuilder) -> None:
        super().__init__()
        self.query_builder = query_builder

    def finish(self, rows, latents, inputs, indices) -> ClassifierOutput:
        return ClassifierOutput(logits=rows["outputs"][:, 0], latents=latents)


class PoolingClassificationHead(OutputHead):
    """The original Perceiver's head: average over the latents, then ``Linear`` (zero-initialised)."""

    uses_decoder = False

    def __init__(self, num_latent_channels: int, num_classes: int) -> None:
        super().__init__()
        self.query_builder = None
        self.projection = nn.Linear(num_latent_channels, num_classes)
        nn.init.zeros_(self.projection.weight)
        nn.init.zeros_(self.projection.bias)

    def finish(self, rows, latents, inputs, indices) -> ClassifierOutput:
        return ClassifierOutput(logits=self.projection(torch.mean(latents, dim=1)), latents=latents)


class ModalityHead(OutputHead):
    """One modality of a multimodal head: its query builder, a ``projection`` applied to each decoded
    chunk (the row function) and ``arrange`` (projected rows -> this modality's output)."""

    def __init__(self, query_builder: QueryBuilder, projection: nn.Module) -> None:
        super().__init__()
        self.query_builder = query_builder
        self.projection = projection

    def row_fn(self, group: str) -> Callable[[Tensor], Tensor] | None:
        return self.projection

    def arrange(self, y: Tensor, subsampled: bool = False) -> Tensor:
        raise NotImplementedError

    def finish(self, rows, latents, inputs, indices) -> Tensor:
        return self.arrange(rows["outputs"], subsampled=indices is not None)
