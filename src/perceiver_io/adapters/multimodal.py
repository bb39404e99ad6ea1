"""Multimodal adapters: several modalities share one input array and one query array.

Input side (official ``MultimodalPreprocessor``): every modality's adapter gives ``(B, M_m, C_m)``;
each is padded to the common width ``C = max_m C_m + min_padding_size`` with a learned
per-modality vector, optionally replaced row by row by a learned mask token with probability
``mask_probs[m]``, and the modalities are concatenated in **sorted** name order. The sizes
``M_m`` are returned so that outputs can be split back.

Output side (official ``MultimodalDecoder``, :class:`MultimodalHead`): each modality's head
gives queries ``(B, O_m, E_m)``, padded to ``E = max_m E_m + min_padding_size`` with learned
per-modality vectors; one shared cross-attention decodes every modality's group, and each
modality's projection and arrangement give its output.

Queries can be built for subsampled points (training: ``indices={"image": idx, ...}``) or
chunk by chunk over every point (evaluation), so that the encoder runs once however many
points are decoded.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from perceiver_io.adapters.base import AdaptedInputs, InputAdapter
from perceiver_io.heads import ModalityHead, OutputHead
from perceiver_io.queries import LazyQueries

__all__ = [
    "MultimodalInputAdapter",
    "MultimodalHead",
    "MultimodalAutoencoderOutput",
    "MultimodalOutput",
    "split_modalities",
]


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


class MultimodalInputAdapter(InputAdapter):
    """``{modality: raw input}`` -> inputs ``(B, M, C)`` with ``sizes`` ``{modality: M_m}`` (sorted order)."""

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

    def example_inputs(self, batch_size: int = 1) -> dict[str, Tensor]:
        return {m: a.example_inputs(batch_size) for m, a in self.adapters.items()}

    def forward(self, inputs: Mapping[str, Tensor], mask_probs: Mapping[str, float] | None = None) -> AdaptedInputs:
        """``inputs``: one raw tensor per modality. ``mask_probs`` overrides the configured probabilities
        (only for modalities that have a mask token). Returns ``(B, M, C)`` with ``sizes`` ``{modality: M_m}``."""
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
            x = adapter(inputs[m]).inputs
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
        return AdaptedInputs(torch.cat(parts, dim=1), sizes=sizes)


@dataclass
class MultimodalAutoencoderOutput:
    """Per-modality reconstructions.

    * ``image``: ``(B, T, C, H, W)`` when every pixel is decoded, ``(B, P, C)`` at subsampled pixels
      (also available as ``video``);
    * ``audio``: ``(B, O · samples_per_patch)`` samples;
    * ``label``: ``(B, num_classes)`` logits (also ``logits``);
    * ``latents``: ``(B, N, D)``.
    """

    image: Tensor
    audio: Tensor
    label: Tensor
    latents: Tensor | None = None

    @property
    def video(self) -> Tensor:
        return self.image

    @property
    def logits(self) -> Tensor:
        return self.label

    def to_dict(self) -> dict[str, Tensor]:
        return {"audio": self.audio, "image": self.image, "label": self.label}


@dataclass
class MultimodalOutput:
    """Any other set of modalities: ``outputs`` ``{modality: output}``; ``latents`` ``(B, N, D)``."""

    outputs: dict[str, Tensor]
    latents: Tensor


class MultimodalHead(OutputHead):
    """Per-modality heads decoded through one shared cross-attention, one query group per modality.

    Each modality's queries ``(B, O_m, E_m)`` are padded to ``E = max_m E_m + min_padding_size``
    with a learned per-modality vector. ``indices`` (``{modality: flat indices (P,) or None}``)
    subsamples output points; ``None`` for a modality (or no mapping) means all of its points.
    Each decoded chunk goes through its modality's projection at once (the row function), so only
    the projected outputs (3 values per pixel, not the decoder's 512) are kept for every point.
    """

    def __init__(self, heads: Mapping[str, ModalityHead], min_padding_size: int = 2, init_scale: float = 0.02):
        super().__init__()
        if not heads:
            raise ValueError("heads must name at least one modality")
        self.heads = nn.ModuleDict({m: heads[m] for m in sorted(heads)})
        self.groups = tuple(self.heads)
        self.query_builder = None
        self.min_padding_size = min_padding_size
        self._num_query_channels = max(h.num_query_channels for h in heads.values()) + min_padding_size
        self.padding = nn.ParameterDict(
            {
                m: _padding_parameter(self._num_query_channels - h.num_query_channels, init_scale)
                for m, h in self.heads.items()
            }
        )

    @property
    def num_query_channels(self) -> int:
        return self._num_query_channels

    def sizes(self, indices: Mapping[str, Tensor | None] | None = None) -> dict[str, int]:
        """Number of queries per modality (sorted order)."""
        indices = self._check_indices(indices)
        return {
            m: len(indices[m]) if indices.get(m) is not None else h.query_builder.num_queries()  # type: ignore[union-attr]
            for m, h in self.heads.items()
        }

    def _check_indices(self, indices: Mapping[str, Tensor | None] | None) -> Mapping[str, Tensor | None]:
        if indices is None:
            return {}
        if not isinstance(indices, Mapping):
            raise TypeError(f"query indices must be a mapping {{modality: (P,) int64 or None}}, got {type(indices)}")
        unknown = sorted(set(indices) - set(self.heads))
        if unknown:
            raise ValueError(f"query indices name unknown modalities {unknown}; modalities: {list(self.heads)}")
        return indices

    def _pad(self, m: str, q: Tensor) -> Tensor:
        return torch.cat([q, self.padding[m].to(q.dtype).expand(q.shape[0], q.shape[1], -1)], dim=-1)

    def queries(self, latents, inputs, indices=None) -> dict[str, Tensor | LazyQueries]:
        indices = self._check_indices(indices)
        b, out = latents.shape[0], {}
        for m, h in self.heads.items():
            builder = h.query_builder
            if indices.get(m) is not None:
                out[m] = self._pad(m, builder(b, indices=indices[m]))  # type: ignore[misc]
            else:
                lazy = builder.lazy(b)  # type: ignore[union-attr]
                out[m] = LazyQueries(b, lazy.num_queries, lambda s, e, m=m, lazy=lazy: self._pad(m, lazy.build(s, e)))
        return out

    def row_fn(self, group: str) -> Callable[[Tensor], Tensor] | None:
        return self.heads[group].row_fn(group)

    def finish(self, rows, latents, inputs, indices) -> MultimodalAutoencoderOutput | MultimodalOutput:
        indices = self._check_indices(indices)
        out = {m: h.arrange(rows[m], subsampled=indices.get(m) is not None) for m, h in self.heads.items()}
        if set(out) == {"audio", "image", "label"}:
            return MultimodalAutoencoderOutput(latents=latents, **out)
        return MultimodalOutput(outputs=out, latents=latents)
