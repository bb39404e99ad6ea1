"""Masked language model on UTF-8 bytes (``deepmind/language-perceiver``).

Token ids ``(B, L)`` -> token + learned position embeddings ``(B, L, C)`` -> latents ``(B, N, D)``
-> one learned query per output position ``(B, L, C)`` -> tied embedding decoder
``x·Eᵀ + b`` -> logits ``(B, L, vocab_size)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch

from perceiver_io.adapters.text import (
    MaskedLanguageHead,
    MaskedLanguageModelOutput,
    TextAdapterConfig,
    TextInputAdapter,
)
from perceiver_io.config import Config, ConfigError
from perceiver_io.decoder import DecoderConfig, PerceiverDecoder
from perceiver_io.encoder import EncoderConfig, PerceiverEncoder, tiny_encoder
from perceiver_io.layers.init import identity_qk_
from perceiver_io.layers.position import sinusoid_codes
from perceiver_io.models.base import PerceiverIOBase
from perceiver_io.registry import PretrainedInfo, register_model

__all__ = ["MaskedLanguageModelConfig", "MaskedLanguageModel", "MaskedLanguageModelOutput"]


def _language_encoder() -> EncoderConfig:
    return EncoderConfig(
        num_latents=256,
        num_latent_channels=1280,
        num_blocks=1,
        num_self_attends_per_block=26,
        num_cross_attention_heads=8,
        num_self_attention_heads=8,
        cross_attention_qk_channels=256,
        cross_attention_v_channels=1280,
        self_attention_qk_channels=256,
        self_attention_v_channels=1280,
        cross_attention_widening_factor=1,
        self_attention_widening_factor=1,
    )


def _language_decoder() -> DecoderConfig:
    return DecoderConfig(
        num_output_channels=None,
        num_heads=8,
        num_qk_channels=256,
        num_v_channels=768,
        use_query_residual=False,
    )


@dataclass
class MaskedLanguageModelConfig(Config):
    """Defaults are the published language model (C = 768, 256 × 1280 latents, 26 layers).

    The queries are learned position embeddings of width ``text.num_channels`` (the decoder's
    ``num_query_channels``, derived); the tied embedding decoder needs no output projection.

    ``local_init`` (not in the paper; ``None``: the paper's random initialisation) starts both
    cross-attentions local, so that position p has a route to output p from step 0. With
    ``K = min(text.num_channels, encoder.num_latent_channels)``, the first K channels of the input
    positions and of the queries start as the Transformer's sinusoids of width K (std
    ``3·text.init_scale``), those of latent n as the unit-scale sinusoid at ``n + ½``, and both
    cross-attentions' query and key projections as ``local_init·I`` (their first input channels).
    Positions are measured in latent spacings (byte p sits at ``p·N/L``), so the attention windows
    cover the same number of latents whatever M/N. Latent n then reads the inputs near
    ``(n + ½)·L/N`` and query p the latents near p. Everything stays trainable. See
    docs/bytes_vs_transformer.md for why (plain MLM on bytes otherwise sits on a unigram plateau
    for thousands of steps).
    """

    text: TextAdapterConfig = field(default_factory=TextAdapterConfig)
    encoder: EncoderConfig = field(default_factory=_language_encoder)
    decoder: DecoderConfig = field(default_factory=_language_decoder)
    local_init: float | None = None

    def validate(self) -> None:
        c = self.text.num_channels
        if self.local_init is not None and (not isinstance(self.local_init, (int, float)) or self.local_init <= 0):
            raise ConfigError(
                f"MaskedLanguageModelConfig.local_init must be None or a positive scale, got {self.local_init!r}"
            )
        if self.decoder.num_query_channels not in (None, c):
            raise ConfigError(
                f"MaskedLanguageModelConfig.decoder.num_query_channels ({self.decoder.num_query_channels}) must be "
                f"None or text.num_channels ({c}): the queries are learned position embeddings of that width"
            )
        if self.decoder.num_output_channels not in (None, c):
            raise ConfigError(
                f"MaskedLanguageModelConfig.decoder.num_output_channels must be None or text.num_channels ({c}) for "
                f"the tied embedding decoder, got {self.decoder.num_output_channels}"
            )


class MaskedLanguageModel(PerceiverIOBase):
    """Byte-level masked LM. ``model(input_ids (B, L), input_mask (B, L))`` -> :class:`MaskedLanguageModelOutput`.

    As in ``transformers``, the mask only hides padding from the encoder; every position (padding
    too) gets logits.
    """

    config_class = MaskedLanguageModelConfig
    config: MaskedLanguageModelConfig

    def __init__(self, config: MaskedLanguageModelConfig) -> None:
        super().__init__(config)
        c = config
        self.input_adapter = TextInputAdapter(c.text)
        self.encoder = PerceiverEncoder(c.encoder, c.text.num_channels)
        self.head = MaskedLanguageHead(self.input_adapter.token_embedding, c.text.max_seq_len, c.text.init_scale)
        self.decoder = PerceiverDecoder(c.decoder, c.encoder.num_latent_channels, c.text.num_channels)
        if c.local_init is not None:
            self._init_local(c.local_init)

    @torch.no_grad()
    def _init_local(self, alpha: float) -> None:
        """See ``MaskedLanguageModelConfig.local_init``."""
        positions = self.input_adapter.position_embedding.embeddings
        queries = self.head.query_builder.embedding.embeddings
        latents = self.encoder.latents.embeddings
        (length, c), n = positions.shape, latents.shape[0]
        k = min(c, latents.shape[1])
        scale = 3 * self.config.text.init_scale * 2**0.5  # sinusoids have std 1/√2
        unit = n / length  # positions in latent spacings: one latent per unit, whatever M/N
        positions[:, :k] = sinusoid_codes(torch.arange(length) * unit, k) * scale
        queries[:, :k] = sinusoid_codes(torch.arange(queries.shape[0]) * unit, k) * scale
        latents[:, :k] = sinusoid_codes(torch.arange(n) + 0.5, k) * 2**0.5
        identity_qk_(self.encoder.cross_attention.attention, alpha)
        identity_qk_(self.decoder.cross_attention.attention, alpha)

    def fill_mask(self, text: str, strategy: Literal["iterative", "independent"] = "iterative") -> str:
        """``text`` with every ``[MASK]`` (one byte each) filled; see :func:`perceiver_io.inference.fill_mask`."""
        from perceiver_io.inference.text import fill_mask

        return fill_mask(self, text, top_k=1, strategy=strategy).text


@register_model(
    "language-perceiver",
    MaskedLanguageModel,
    info=PretrainedInfo(
        hub_id="deepmind/language-perceiver", hf_architecture="PerceiverForMaskedLM", paper_params="201M"
    ),
)
def language_perceiver() -> MaskedLanguageModelConfig:
    """``deepmind/language-perceiver``: bytes, M = O = 2048, C = 768, 256 × 1280 latents, 26 layers (~201M)."""
    return MaskedLanguageModelConfig()


@register_model("test-language-perceiver", MaskedLanguageModel, info=PretrainedInfo(tiny=True))
def test_language_perceiver() -> MaskedLanguageModelConfig:
    """Tiny byte MLM: 32 bytes, C = 24, 8 × 32 latents, 2 layers; 2 decoder heads with qk 16 (as the published)."""
    return MaskedLanguageModelConfig(
        text=TextAdapterConfig(max_seq_len=32, num_channels=24),
        encoder=tiny_encoder(
            num_cross_attention_heads=2,
            num_self_attention_heads=2,
            cross_attention_qk_channels=16,
            self_attention_qk_channels=16,
        ),
        decoder=DecoderConfig(num_heads=2, num_qk_channels=16, use_query_residual=False),
    )
