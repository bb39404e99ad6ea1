"""The one read -> process -> write path that every model runs, written once.

A model is four modules set by its constructor:

* ``input_adapter``: raw inputs (bytes, images, frames, a dict of modalities) -> :class:`AdaptedInputs`;
* ``encoder``: :class:`PerceiverEncoder`, inputs ``(B, M, C)`` -> latents ``(B, N, D)``;
* ``decoder``: :class:`PerceiverDecoder`, queries ``(B, O, E)`` × latents -> rows ``(B, O, F)``
  (``None`` when the head reads the latents directly);
* ``head``: :class:`perceiver_io.heads.OutputHead`, which owns the queries, an optional per-chunk
  row function and the final step that returns the model's output dataclass.

``encode``, ``decode`` and ``forward`` live here only; a task model is its constructor.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, ClassVar

from torch import Tensor, nn

from perceiver_io.adapters.base import AdaptedInputs
from perceiver_io.checkpoints import save_pretrained
from perceiver_io.config import Config
from perceiver_io.decoder import ChunkSize, PerceiverDecoder
from perceiver_io.encoder import PerceiverEncoder
from perceiver_io.heads import OutputHead, Queries
from perceiver_io.layers.position import TrainablePositionEncoding
from perceiver_io.queries import LazyQueries
from perceiver_io.validation import check_mask

__all__ = ["PerceiverModel", "PerceiverIOBase"]


class PerceiverModel(nn.Module):
    """An assembled model built from one typed config. Subclasses set ``config_class``."""

    config_class: ClassVar[type[Config]]

    def __init__(self, config: Config) -> None:
        super().__init__()
        if not isinstance(config, self.config_class):
            raise TypeError(f"{type(self).__name__} needs a {self.config_class.__name__}, got {type(config).__name__}")
        self.config = config

    def num_parameters(self, trainable_only: bool = False) -> int:
        """Number of distinct parameters (shared weights counted once)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    def no_weight_decay(self) -> set[str]:
        """Exact names of the parameters that get no weight decay: every parameter with fewer than
        two dimensions (biases, norm scales) and every learned array that is an *embedding* rather
        than a weight matrix (latents, position embeddings, learned queries, padding and mask tokens:
        the :class:`TrainablePositionEncoding` modules and ``nn.ParameterDict`` entries)."""
        names = {n for n, p in self.named_parameters() if p.dim() < 2}
        for module_name, module in self.named_modules():
            if isinstance(module, (TrainablePositionEncoding, nn.ParameterDict)):
                prefix = f"{module_name}." if module_name else ""
                names.update(prefix + n for n, _ in module.named_parameters())
        return names

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """Write ``config.json`` and ``model.safetensors`` to ``directory`` (atomically per file)."""
        save_pretrained(self, directory)

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, **kwargs) -> PerceiverModel:
        """Load a model saved by :meth:`save_pretrained` (or a ``transformers`` checkpoint directory);
        it must be of this class (or a subclass)."""
        from perceiver_io.checkpoints import from_pretrained

        model = from_pretrained(directory, model_class=cls, **kwargs)
        if not isinstance(model, cls):
            raise TypeError(f"{os.fspath(directory)} holds a {type(model).__name__}, not a {cls.__name__}")
        return model


class PerceiverIOBase(PerceiverModel):
    """Read -> process -> write, with the stages separately callable (see the module docstring)."""

    input_adapter: nn.Module
    encoder: PerceiverEncoder
    decoder: PerceiverDecoder | None
    head: OutputHead

    def adapt(self, inputs: Any, **adapter_kwargs: Any) -> AdaptedInputs:
        """Raw inputs -> :class:`AdaptedInputs` (``inputs (B, M, C)`` plus what the head needs)."""
        parts = inputs.items() if isinstance(inputs, Mapping) else [("", inputs)]
        for key, x in parts:
            name = f"inputs[{key!r}]" if key else "inputs"
            if not isinstance(x, Tensor):
                raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
            if x.dim() == 0 or x.shape[0] == 0:
                raise ValueError(f"{name} must have a batch dimension of at least 1, got shape {tuple(x.shape)}")
        return self.input_adapter(inputs, **adapter_kwargs)

    def encode(self, inputs: Any, input_mask: Tensor | None = None, **adapter_kwargs: Any) -> Tensor:
        """Raw inputs (and ``input_mask (B, M)`` bool, True = real) -> latents ``(B, N, D)``."""
        return self.encoder(self.adapt(inputs, **adapter_kwargs).inputs, input_mask)

    def decode(
        self,
        latents: Tensor,
        queries: Tensor | Mapping[str, Tensor] | None = None,
        query_mask: Tensor | None = None,
        chunk_size: ChunkSize = "auto",
        *,
        inputs: AdaptedInputs | Tensor | None = None,
        query_indices: Any = None,
    ) -> Any:
        """Decode ``latents (B, N, D)`` into the model's output dataclass.

        Args:
            queries: ``(B, O, E)`` to decode instead of the head's own (``{group: ...}`` for a
                multi-group head).
            query_mask: ``(B, O)`` bool; ``False`` rows give zero outputs.
            chunk_size: decode at most this many queries at once; ``"auto"`` bounds memory without
                gradients (see :func:`perceiver_io.decoder.auto_chunk_size`); ``None``: one piece.
            inputs: the adapted inputs (from :meth:`adapt`), for heads whose queries or output shape
                depend on them (inputs-as-queries, per-position queries); a ``(B, M, C)`` tensor is
                taken as such.
            query_indices: decode only these output points: flat indices ``(P,)`` (or, for a
                multimodal head, ``{modality: (P_m,) or None}``).
        """
        if isinstance(inputs, Tensor):
            inputs = AdaptedInputs(inputs)
        head = self.head
        if not head.uses_decoder or self.decoder is None:
            return head.finish({}, latents, inputs, query_indices)
        b = latents.shape[0]
        groups = head.queries(latents, inputs, query_indices) if queries is None else head.given_queries(queries)
        check_mask("query_mask", query_mask, b, sum(_num_queries(q) for q in groups.values()))
        rows, start = {}, 0
        for name, q in groups.items():
            n = _num_queries(q)
            mask = None if query_mask is None else query_mask[:, start : start + n]
            rows[name] = self.decoder(latents, q, mask, chunk_size, row_fn=head.row_fn(name))
            start += n
        return head.finish(rows, latents, inputs, query_indices)

    def forward(
        self,
        inputs: Any,
        input_mask: Tensor | None = None,
        *,
        queries: Tensor | Mapping[str, Tensor] | None = None,
        query_mask: Tensor | None = None,
        chunk_size: ChunkSize = "auto",
        query_indices: Any = None,
        **adapter_kwargs: Any,
    ) -> Any:
        """Adapt, encode once, decode: ``decode(encode(inputs))`` (see :meth:`decode` for the arguments)."""
        x = self.adapt(inputs, **adapter_kwargs)
        latents = self.encoder(x.inputs, input_mask)
        return self.decode(latents, queries, query_mask, chunk_size, inputs=x, query_indices=query_indices)

    def example_inputs(self, batch_size: int = 1) -> dict[str, Any]:
        """Keyword arguments of a valid ``forward`` call with random inputs: ``model(**model.example_inputs())``."""
        return {"inputs": self.input_adapter.example_inputs(batch_size)}


def _num_queries(queries: Queries) -> int:
    return queries.num_queries if isinstance(queries, LazyQueries) else queries.shape[1]
