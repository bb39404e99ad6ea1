"""Multimodal adapters: several modalities share one input array and one query array.

Input side (official ``MultimodalPreprocessor``): every modality's adapter gives ``(B, M_m, C_m)``;
each is padded to the common width ``C = max_m C_m + min_padding_size`` with a learned
per-modality vector, optionally replaced row by row by a learned mask token with probability
``mask_probs[m]``, and the modalities are concatenated in **sorted** name order. The sizes
``M_m`` are returned so that outputs can be split back.

Output side (official ``MultimodalDecoder``): each modality's query builder gives
``(B, O_m, E_m)``; they are padded to ``E = max_m E_m + min_padding_size`` with learned
per-modality vectors and concatenated in sorted order; one shared cross-attention decodes them
all, and :class:`MultimodalOutputAdapter` splits the rows and applies per-modality output adapters.

Queries can be built for subsampled points (training: ``indices={"image": idx, ...}``) or
chunk by chunk over every point (evaluation: :meth:`MultimodalQueries.lazy`), so that the
encoder runs once however many points are decoded.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from perceiver_io.queries import LazyQueries, QueryBuilder

__all__ = ["MultimodalInputAdapter", "MultimodalQueries", "MultimodalOutputAdapter", "split_modalities"]


def _padding_parameter(width: int, init_scale: float) -> nn.Parameter:
    p = nn.Parameter(torch.empty(1, width))
    nn.init.trunc_normal_(p, std=init_scale, a=-2 * init_scale, b=2 * init_scale)
    return p


def split_modalities(x: Tensor, sizes: Mapping[str, int]) -> dict[str, Tensor]:
    """Split rows ``(B, sum(sizes), C)`` into ``{modality: (B, sizes[m], C)}`` in sorted name order."""
    total = sum(sizes.values())
    if x.shape[1] != total:
        raise ValueError(f"expected {total} rows for modality sizes {dict(sizes)}, got {x.shape[1]}")
    out, start = {}, 0
    for m in sorted(sizes):
        out[m] = x[:, start : start + sizes[m]]
        start += sizes[m]
    return out


class MultimodalInputAdapter(nn.Module):
    """``{modality: raw input}`` -> inputs ``(B, M, C)`` and ``{modality: M_m}`` (sorted order)."""

    def __init__(
        self,
        adapters: Mapping[str, nn.Module],
        min_padding_size: int = 2,
        mask_probs: Mapping[str, float] | None = None,
        init_scale: float = 0.02,
    ) -> None:
        super().__init__()
        if not adapters:
            raise ValueError("adapters must name at least one modality")
        mask_probs = dict(mask_probs or {})
        unknown = sorted(set(mask_probs) - set(adapters))
        if unknown:
            raise ValueError(f"mask_probs names unknown modalities {unknown}; modalities: {sorted(adapters)}")
        self.adapters = nn.ModuleDict({m: adapters[m] for m in sorted(adapters)})
        self.min_padding_size = min_padding_size
        self.mask_probs = mask_probs
        self.num_channels = max(a.num_channels for a in adapters.values()) + min_padding_size
        self.padding = nn.ParameterDict(
            {m: _padding_parameter(self.num_channels - a.num_channels, init_scale) for m, a in self.adapters.items()}
        )
        self.mask = nn.ParameterDict({m: _padding_parameter(self.num_channels, init_scale) for m in sorted(mask_probs)})

    @property
    def modalities(self) -> list[str]:
        return list(self.adapters)

    def forward(
        self, inputs: Mapping[str, Tensor], mask_probs: Mapping[str, float] | None = None
    ) -> tuple[Tensor, dict[str, int]]:
        """``inputs``: one raw tensor per modality. ``mask_probs`` overrides the configured probabilities
        (only for modalities that have a mask token). Returns ``(B, M, C)`` and ``{modality: M_m}``."""
        if not isinstance(inputs, Mapping):
            raise TypeError(f"inputs must be a mapping {{modality: tensor}} with keys {self.modalities}")
        missing = sorted(set(self.adapters) - set(inputs))
        extra = sorted(set(inputs) - set(self.adapters))
        if missing or extra:
            raise ValueError(f"inputs must have keys {self.modalities}; missing {missing}, unexpected {extra}")
        probs = dict(self.mask_probs)
        if mask_probs is not None:
            bad = sorted(set(mask_probs) - set(self.mask))
            if bad:
                raise ValueError(f"mask_probs: no mask token for {bad}; masked modalities: {sorted(self.mask)}")
            probs.update(mask_probs)
        parts, sizes, batch_size = [], {}, None
        for m, adapter in self.adapters.items():
            x = adapter(inputs[m])
            b, n, c = x.shape
            if batch_size is not None and b != batch_size:
                raise ValueError(f"inputs[{m!r}] has batch size {b}, other modalities {batch_size}")
            batch_size = b
            x = torch.cat([x, self.padding[m].to(x.dtype).expand(b, n, -1)], dim=-1)
            p = probs.get(m, 0.0)
            if p > 0.0:
                masked = torch.rand(b, n, 1, device=x.device) < p
                x = torch.where(masked, self.mask[m].to(x.dtype).expand(b, n, -1), x)
            parts.append(x)
            sizes[m] = n
        return torch.cat(parts, dim=1), sizes


class MultimodalQueries(QueryBuilder):
    """Per-modality query builders -> one padded query array ``(B, O, E)`` in sorted modality order.

    ``indices`` (a mapping ``{modality: flat indices (P,) or None}``) subsamples output points;
    ``None`` for a modality (or no mapping) means all of its points.
    """

    def __init__(self, builders: Mapping[str, QueryBuilder], min_padding_size: int = 2, init_scale: float = 0.02):
        super().__init__()
        if not builders:
            raise ValueError("builders must name at least one modality")
        self.builders = nn.ModuleDict({m: builders[m] for m in sorted(builders)})
        self.min_padding_size = min_padding_size
        self.num_channels = max(b.num_channels for b in builders.values()) + min_padding_size
        self.padding = nn.ParameterDict(
            {m: _padding_parameter(self.num_channels - b.num_channels, init_scale) for m, b in self.builders.items()}
        )

    def sizes(self, indices: Mapping[str, Tensor | None] | None = None) -> dict[str, int]:
        """Number of queries per modality (sorted order)."""
        indices = self._check_indices(indices)
        return {
            m: (len(indices[m]) if indices.get(m) is not None else b.num_queries()) for m, b in self.builders.items()
        }

    def num_queries(self, inputs: Tensor | None = None) -> int:
        return sum(self.sizes().values())

    def _check_indices(self, indices: Mapping[str, Tensor | None] | None) -> Mapping[str, Tensor | None]:
        if indices is None:
            return {}
        if not isinstance(indices, Mapping):
            raise TypeError(f"query indices must be a mapping {{modality: (P,) int64 or None}}, got {type(indices)}")
        unknown = sorted(set(indices) - set(self.builders))
        if unknown:
            raise ValueError(f"query indices name unknown modalities {unknown}; modalities: {list(self.builders)}")
        return indices

    def _pad(self, m: str, q: Tensor) -> Tensor:
        return torch.cat([q, self.padding[m].to(q.dtype).expand(q.shape[0], q.shape[1], -1)], dim=-1)

    def forward(
        self,
        batch_size: int,
        inputs: Tensor | None = None,
        indices: Mapping[str, Tensor | None] | None = None,
    ) -> Tensor:
        """All (or the ``indices``) queries ``(B, O, E)``; ``inputs`` only fixes the device."""
        indices = self._check_indices(indices)
        parts = [self._pad(m, b(batch_size, inputs=inputs, indices=indices.get(m))) for m, b in self.builders.items()]
        return torch.cat(parts, dim=1)

    def chunk(self, batch_size: int, start: int, end: int, inputs: Tensor | None = None) -> Tensor:
        """Rows ``start:end`` of the full query array, built only for the modalities they cover."""
        parts, offset = [], 0
        for m, b in self.builders.items():
            n = b.num_queries()
            s, e = max(start, offset), min(end, offset + n)
            if s < e:
                parts.append(self._pad(m, b.chunk(batch_size, s - offset, e - offset, inputs=inputs)))
            offset += n
        return torch.cat(parts, dim=1)

    def lazy(self, batch_size: int, inputs: Tensor | None = None) -> LazyQueries:
        return LazyQueries(batch_size, self.num_queries(), lambda s, e: self.chunk(batch_size, s, e, inputs))


class MultimodalOutputAdapter(nn.Module):
    """Decoded rows ``(B, O, F)`` -> ``{modality: output}``, splitting by the query sizes."""

    def __init__(self, adapters: Mapping[str, nn.Module]) -> None:
        super().__init__()
        self.adapters = nn.ModuleDict({m: adapters[m] for m in sorted(adapters)})

    def forward(
        self, x: Tensor, sizes: Mapping[str, int], kwargs: Mapping[str, dict] | None = None
    ) -> dict[str, Tensor]:
        """``kwargs[m]`` are extra keyword arguments for modality ``m``'s adapter."""
        kwargs = kwargs or {}
        parts = split_modalities(x, sizes)
        return {m: adapter(parts[m], **kwargs.get(m, {})) for m, adapter in self.adapters.items()}
