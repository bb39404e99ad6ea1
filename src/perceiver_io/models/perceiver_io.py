"""The generic Perceiver IO: input adapter -> encoder (read + process) -> decoder (write) -> output adapter.

Inputs are already ``(B, M, C)`` arrays here; modality adapters (bytes, images, audio, …)
wrap this model in ``perceiver_io.adapters``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor, nn

from perceiver_io.config import Config, ConfigError
from perceiver_io.decoder import DecoderConfig, PerceiverDecoder
from perceiver_io.encoder import EncoderConfig, PerceiverEncoder
from perceiver_io.layers.position import num_fourier_channels
from perceiver_io.models.base import PerceiverModel
from perceiver_io.models.registry import register_model
from perceiver_io.queries import FourierQueries, InputQueries, LazyQueries, LearnedQueries, QueryBuilder

__all__ = ["QueryConfig", "PerceiverIOConfig", "PerceiverIOBase", "PerceiverIO", "PerceiverIOOutput"]


@dataclass
class QueryConfig(Config):
    """How output queries are made.

    ``kind``: ``"learned"`` (``num_queries`` learned rows), ``"fourier"`` (Fourier features of
    the grid ``index_dims``), ``"inputs"`` (the inputs are the queries) or ``"given"`` (the
    caller passes ``queries=`` to ``forward``/``decode``).
    """

    kind: str = "learned"
    num_queries: int = 1
    index_dims: tuple[int, ...] | None = None
    num_bands: int = 64
    max_resolution: tuple[int, ...] | None = None
    concat_pos: bool = True
    sine_only: bool = False
    init_scale: float = 0.02

    def validate(self) -> None:
        self._one_of("kind", ("learned", "fourier", "inputs", "given"))
        self._positive("num_queries", "num_bands")
        if self.kind == "fourier" and not self.index_dims:
            raise ConfigError("QueryConfig.index_dims must be given when kind='fourier'")

    def num_channels(self, num_input_channels: int, num_query_channels: int) -> int:
        if self.kind == "fourier":
            return num_fourier_channels(len(self.index_dims or ()), self.num_bands, self.concat_pos, self.sine_only)
        if self.kind == "inputs":
            return num_input_channels
        return num_query_channels

    def build(self, num_input_channels: int, num_query_channels: int) -> QueryBuilder | None:
        if self.kind == "learned":
            return LearnedQueries(self.num_queries, num_query_channels, self.init_scale)
        if self.kind == "fourier":
            return FourierQueries(
                self.index_dims or (), self.num_bands, self.max_resolution, self.concat_pos, self.sine_only
            )
        if self.kind == "inputs":
            return InputQueries(num_input_channels)
        return None


@dataclass
class PerceiverIOConfig(Config):
    num_input_channels: int = 64
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    queries: QueryConfig = field(default_factory=QueryConfig)

    def validate(self) -> None:
        self._positive("num_input_channels")
        width = self.queries.num_channels(self.num_input_channels, self.decoder.num_query_channels)
        if width != self.decoder.num_query_channels:
            raise ConfigError(
                f"PerceiverIOConfig.decoder.num_query_channels ({self.decoder.num_query_channels}) must equal the "
                f"width of the {self.queries.kind!r} queries ({width})"
            )


@dataclass
class PerceiverIOOutput:
    """``outputs``: ``(B, O, F)``; ``latents``: ``(B, N, D)`` final latents."""

    outputs: Tensor
    latents: Tensor


class PerceiverIOBase(PerceiverModel):
    """Read -> process -> write, with the stages separately callable.

    Subclasses set five modules in ``__init__``: ``input_adapter`` (raw input -> ``(B, M, C)``),
    ``encoder`` (:class:`PerceiverEncoder`), ``query_builder`` (:class:`QueryBuilder` or None),
    ``decoder`` (:class:`PerceiverDecoder`) and ``output_adapter`` (``(B, O, F)`` -> result).
    """

    input_adapter: nn.Module
    encoder: PerceiverEncoder
    query_builder: QueryBuilder | None
    decoder: PerceiverDecoder
    output_adapter: nn.Module

    def encode(self, inputs: Tensor, input_mask: Tensor | None = None) -> Tensor:
        """``inputs (B, M, C)``, ``input_mask (B, M)`` -> latents ``(B, N, D)``."""
        return self.encoder(self.input_adapter(inputs), input_mask)

    def decode(
        self,
        latents: Tensor,
        queries: Tensor | None = None,
        query_mask: Tensor | None = None,
        chunk_size: int | None = None,
        *,
        inputs: Tensor | None = None,
        query_indices: Tensor | None = None,
    ) -> Tensor:
        """Decode ``(B, O, E)`` queries (default: the configured builder's) -> ``(B, O, F)``.

        ``query_indices (P,)`` decodes only those output points (subsampled training);
        ``inputs`` (adapted, ``(B, M, C)``) are needed when the inputs are the queries.
        """
        rows = self.decode_rows(latents, queries, query_mask, chunk_size, inputs=inputs, query_indices=query_indices)
        return self.output_adapter(rows)

    def decode_rows(
        self,
        latents: Tensor,
        queries: Tensor | None = None,
        query_mask: Tensor | None = None,
        chunk_size: int | None = None,
        *,
        inputs: Tensor | None = None,
        query_indices: Tensor | None = None,
    ) -> Tensor:
        """The decoder's rows ``(B, O, F)`` before the output adapter (see :meth:`decode`)."""
        if queries is None:
            queries = self._build_queries(latents.shape[0], inputs, query_indices, chunk_size)
        return self.decoder(latents, queries, query_mask, chunk_size)

    def _build_queries(
        self, batch_size: int, inputs: Tensor | None, indices: Tensor | None, chunk_size: int | None
    ) -> Tensor | LazyQueries:
        if self.query_builder is None:
            raise ValueError("this model's queries are kind='given': pass queries=(B, O, E)")
        if indices is not None:
            return self.query_builder(batch_size, inputs=inputs, indices=indices)
        if chunk_size is not None:
            return self.query_builder.lazy(batch_size, inputs=inputs)
        return self.query_builder(batch_size, inputs=inputs)

    def forward(
        self,
        inputs: Tensor,
        input_mask: Tensor | None = None,
        queries: Tensor | None = None,
        query_mask: Tensor | None = None,
        chunk_size: int | None = None,
        query_indices: Tensor | None = None,
    ) -> PerceiverIOOutput:
        x = self.input_adapter(inputs)
        latents = self.encoder(x, input_mask)
        outputs = self.decode(latents, queries, query_mask, chunk_size, inputs=x, query_indices=query_indices)
        return PerceiverIOOutput(outputs=outputs, latents=latents)


class PerceiverIO(PerceiverIOBase):
    """Generic Perceiver IO on ``(B, M, C)`` inputs; stages are separately callable.

    >>> model = PerceiverIO(PerceiverIOConfig(num_input_channels=3, ...))
    >>> latents = model.encode(inputs, input_mask)            # (B, N, D)
    >>> outputs = model.decode(latents, chunk_size=4096)      # (B, O, F)
    """

    config_class = PerceiverIOConfig
    config: PerceiverIOConfig

    def __init__(self, config: PerceiverIOConfig) -> None:
        super().__init__(config)
        self.input_adapter = nn.Identity()
        self.encoder = PerceiverEncoder(config.encoder, config.num_input_channels)
        self.query_builder = config.queries.build(config.num_input_channels, config.decoder.num_query_channels)
        self.decoder = PerceiverDecoder(config.decoder, config.encoder.num_latent_channels)
        self.output_adapter = nn.Identity()


@register_model("perceiver-io-tiny", PerceiverIO)
def perceiver_io_tiny() -> PerceiverIOConfig:
    """A tiny generic model for tests and demos: 32 inputs channels, 16 × 64 latents, 10 outputs."""
    return PerceiverIOConfig(
        num_input_channels=32,
        encoder=EncoderConfig(
            num_latents=16,
            num_latent_channels=64,
            num_blocks=2,
            num_self_attends_per_block=2,
            num_cross_attention_heads=1,
            num_self_attention_heads=4,
        ),
        decoder=DecoderConfig(num_query_channels=64, num_output_channels=10, num_heads=1),
        queries=QueryConfig(kind="learned", num_queries=1),
    )


@register_model("perceiver-io-base", PerceiverIO)
def perceiver_io_base() -> PerceiverIOConfig:
    """The official encoder defaults (512 × 1024 latents, 8 blocks × 6 shared layers), one learned query."""
    return PerceiverIOConfig(
        num_input_channels=261,
        encoder=EncoderConfig(),
        decoder=DecoderConfig(num_query_channels=1024, num_output_channels=1000),
        queries=QueryConfig(kind="learned", num_queries=1),
    )
