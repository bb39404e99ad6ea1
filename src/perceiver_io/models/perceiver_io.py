"""The generic Perceiver IO on ``(B, M, C)`` inputs, with learned, Fourier-grid, inputs-as-queries
or caller-given output queries (:class:`QueryConfig`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from perceiver_io.adapters.base import IdentityInputAdapter
from perceiver_io.config import Config, ConfigError
from perceiver_io.decoder import DecoderConfig, PerceiverDecoder
from perceiver_io.encoder import EncoderConfig, PerceiverEncoder, tiny_encoder
from perceiver_io.heads import PerceiverIOOutput, QueryHead
from perceiver_io.layers.position import num_fourier_channels
from perceiver_io.models.base import PerceiverIOBase
from perceiver_io.queries import FourierQueries, InputQueries, LearnedQueries, QueryBuilder
from perceiver_io.registry import PretrainedInfo, register_model

__all__ = ["QueryConfig", "PerceiverIOConfig", "PerceiverIOBase", "PerceiverIO", "PerceiverIOOutput"]


@dataclass
class QueryConfig(Config):
    """How output queries are made.

    ``kind``: ``"learned"`` (``num_queries`` learned rows), ``"fourier"`` (Fourier features of
    the grid ``index_dims``), ``"inputs"`` (the inputs are the queries) or ``"given"`` (the
    caller passes ``queries=`` to ``forward``/``decode``).
    """

    kind: Literal["learned", "fourier", "inputs", "given"] = "learned"
    num_queries: int = 1
    index_dims: tuple[int, ...] | None = None
    num_bands: int = 64
    max_resolution: tuple[int, ...] | None = None
    concat_pos: bool = True
    sine_only: bool = False
    init_scale: float = 0.02

    def validate(self) -> None:
        self._positive("num_queries", "num_bands")
        if self.kind == "fourier" and not self.index_dims:
            raise ConfigError("QueryConfig.index_dims must be given when kind='fourier'")
        if self.index_dims is not None and any(not isinstance(n, int) or n <= 0 for n in self.index_dims):
            raise ConfigError(f"QueryConfig.index_dims must be positive integers, got {self.index_dims!r}")

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
    """The generic model on ``(B, M, num_input_channels)`` inputs; the decoder's query width is
    derived from ``queries`` (leave ``decoder.num_query_channels`` None, except for ``"given"`` queries)."""

    num_input_channels: int = 64
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    queries: QueryConfig = field(default_factory=QueryConfig)

    def validate(self) -> None:
        self._positive("num_input_channels")
        if self.queries.kind == "given" and self.decoder.num_query_channels is None:
            raise ConfigError("PerceiverIOConfig.decoder.num_query_channels must be set when queries.kind='given'")
        if self.queries.kind == "learned" and self.decoder.num_query_channels is None:
            return  # learned queries take the decoder's width; default below
        q = self.decoder.num_query_channels
        width = self.queries.num_channels(self.num_input_channels, q if q is not None else 0)
        if q is not None and width != q:
            raise ConfigError(
                f"PerceiverIOConfig.decoder.num_query_channels ({q}) must equal the width of the "
                f"{self.queries.kind!r} queries ({width}), or be None to derive it"
            )

    @property
    def num_query_channels(self) -> int:
        """The query width E: the decoder's if given, else the query builder's (learned: the latent width)."""
        if self.decoder.num_query_channels is not None:
            return self.decoder.num_query_channels
        return self.queries.num_channels(self.num_input_channels, self.encoder.num_latent_channels)


class PerceiverIO(PerceiverIOBase):
    """Generic Perceiver IO on ``(B, M, C)`` inputs; stages are separately callable.

    >>> model = PerceiverIO(PerceiverIOConfig(num_input_channels=3, ...))
    >>> latents = model.encode(inputs, input_mask)                  # (B, N, D)
    >>> outputs = model.decode(latents, chunk_size=4096).outputs    # (B, O, F)
    """

    config_class = PerceiverIOConfig
    config: PerceiverIOConfig

    def __init__(self, config: PerceiverIOConfig) -> None:
        super().__init__(config)
        e = config.num_query_channels
        self.input_adapter = IdentityInputAdapter(config.num_input_channels)
        self.encoder = PerceiverEncoder(config.encoder, config.num_input_channels)
        self.head = QueryHead(config.queries.build(config.num_input_channels, e))
        self.decoder = PerceiverDecoder(config.decoder, config.encoder.num_latent_channels, e)


@register_model("perceiver-io-tiny", PerceiverIO, info=PretrainedInfo(tiny=True))
def perceiver_io_tiny() -> PerceiverIOConfig:
    """A tiny generic model for tests and demos: 32 inputs channels, 16 × 64 latents, 10 outputs."""
    return PerceiverIOConfig(
        num_input_channels=32,
        encoder=tiny_encoder(num_latents=16, num_latent_channels=64, num_blocks=2),
        decoder=DecoderConfig(num_output_channels=10, num_heads=1),
        queries=QueryConfig(kind="learned", num_queries=1),
    )


@register_model("test-perceiver-io-fourier", PerceiverIO, info=PretrainedInfo(tiny=True))
def test_perceiver_io_fourier() -> PerceiverIOConfig:
    """Tiny generic model decoding one query per point of a 6×5 Fourier grid (3 outputs per point)."""
    return PerceiverIOConfig(
        num_input_channels=12,
        encoder=tiny_encoder(num_blocks=2, num_self_attends_per_block=1),
        decoder=DecoderConfig(num_output_channels=3, num_heads=1),
        queries=QueryConfig(kind="fourier", index_dims=(6, 5), num_bands=4),
    )


@register_model("test-perceiver-io-inputs", PerceiverIO, info=PretrainedInfo(tiny=True))
def test_perceiver_io_inputs() -> PerceiverIOConfig:
    """Tiny generic model whose queries are its inputs (one output row per input row)."""
    return PerceiverIOConfig(
        num_input_channels=12,
        encoder=tiny_encoder(),
        decoder=DecoderConfig(num_output_channels=5, num_heads=2, use_query_residual=True),
        queries=QueryConfig(kind="inputs"),
    )


@register_model("perceiver-io-base", PerceiverIO)
def perceiver_io_base() -> PerceiverIOConfig:
    """The official encoder defaults (512 × 1024 latents, 8 blocks × 6 shared layers), one learned query."""
    return PerceiverIOConfig(
        num_input_channels=261,
        encoder=EncoderConfig(),
        decoder=DecoderConfig(num_output_channels=1000),
        queries=QueryConfig(kind="learned", num_queries=1),
    )
