"""Masked language model on UTF-8 bytes (``deepmind/language-perceiver``).

Token ids ``(B, L)`` -> token + learned position embeddings ``(B, L, C)`` -> latents ``(B, N, D)``
-> one learned query per output position ``(B, L, C)`` -> tied embedding decoder
``x·Eᵀ + b`` -> logits ``(B, L, vocab_size)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from perceiver_io.adapters.text import BytesTokenizer, TextAdapterConfig, TextInputAdapter, TiedEmbeddingDecoder
from perceiver_io.config import Config, ConfigError
from perceiver_io.decoder import DecoderConfig, PerceiverDecoder
from perceiver_io.encoder import EncoderConfig, PerceiverEncoder
from perceiver_io.models.perceiver_io import PerceiverIOBase
from perceiver_io.models.registry import register_model
from perceiver_io.queries import LearnedQueries

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
        num_query_channels=768,
        num_output_channels=None,
        num_heads=8,
        num_qk_channels=256,
        num_v_channels=768,
        use_query_residual=False,
    )


@dataclass
class MaskedLanguageModelConfig(Config):
    """Defaults are the published language model (C = 768, 256 × 1280 latents, 26 layers)."""

    text: TextAdapterConfig = field(default_factory=TextAdapterConfig)
    encoder: EncoderConfig = field(default_factory=_language_encoder)
    decoder: DecoderConfig = field(default_factory=_language_decoder)

    def validate(self) -> None:
        c = self.text.num_channels
        if self.decoder.num_query_channels != c:
            raise ConfigError(
                f"MaskedLanguageModelConfig.decoder.num_query_channels ({self.decoder.num_query_channels}) must equal "
                f"text.num_channels ({c}): the queries are learned position embeddings of that width"
            )
        if self.decoder.num_output_channels not in (None, c):
            raise ConfigError(
                f"MaskedLanguageModelConfig.decoder.num_output_channels must be None or text.num_channels ({c}) for "
                f"the tied embedding decoder, got {self.decoder.num_output_channels}"
            )


@dataclass
class MaskedLanguageModelOutput:
    """``logits``: ``(B, L, vocab_size)``; ``latents``: ``(B, N, D)``."""

    logits: Tensor
    latents: Tensor


class MaskedLanguageModel(PerceiverIOBase):
    """Byte-level masked LM. ``model(input_ids (B, L), input_mask (B, L))`` -> :class:`MaskedLanguageModelOutput`."""

    config_class = MaskedLanguageModelConfig
    config: MaskedLanguageModelConfig

    def __init__(self, config: MaskedLanguageModelConfig) -> None:
        super().__init__(config)
        self.input_adapter = TextInputAdapter(config.text)
        self.encoder = PerceiverEncoder(config.encoder, config.text.num_channels)
        self.query_builder = LearnedQueries(config.text.max_seq_len, config.decoder.num_query_channels)
        self.decoder = PerceiverDecoder(config.decoder, config.encoder.num_latent_channels)
        self.output_adapter = TiedEmbeddingDecoder(config.text.vocab_size)

    def encode(self, input_ids: Tensor, input_mask: Tensor | None = None) -> Tensor:
        """``input_ids (B, L)``, ``input_mask (B, L)`` bool (True = real) -> latents ``(B, N, D)``."""
        return self.encoder(self.input_adapter(input_ids), input_mask)

    def decode(
        self,
        latents: Tensor,
        queries: Tensor | None = None,
        query_mask: Tensor | None = None,
        chunk_size: int | None = None,
        *,
        inputs: Tensor | None = None,
        query_indices: Tensor | None = None,
        length: int | None = None,
    ) -> Tensor:
        """Logits ``(B, O, vocab_size)`` for positions ``0..length-1`` (default: all ``max_seq_len``),
        or for the positions ``query_indices (P,)``."""
        if queries is None:
            b = latents.shape[0]
            if query_indices is not None:
                queries = self.query_builder(b, indices=query_indices)
            else:
                n = self.config.text.max_seq_len if length is None else length
                if not 0 < n <= self.config.text.max_seq_len:
                    raise ValueError(f"length must be in [1, {self.config.text.max_seq_len}], got {n}")
                queries = self.query_builder.chunk(b, 0, n)
        hidden = self.decoder(latents, queries, query_mask, chunk_size)
        return self.output_adapter(hidden, self.input_adapter.token_embedding.weight)

    def forward(
        self,
        input_ids: Tensor,
        input_mask: Tensor | None = None,
        chunk_size: int | None = None,
    ) -> MaskedLanguageModelOutput:
        """``input_ids (B, L)`` int, ``input_mask (B, L)`` bool -> logits ``(B, L, vocab_size)``.

        As in ``transformers``, the mask only hides padding from the encoder; every position
        (padding too) gets logits.
        """
        latents = self.encode(input_ids, input_mask)
        logits = self.decode(latents, chunk_size=chunk_size, length=input_ids.shape[1])
        return MaskedLanguageModelOutput(logits=logits, latents=latents)

    @torch.no_grad()
    def fill_mask(self, text: str, tokenizer: BytesTokenizer | None = None) -> str:
        """Replace every ``[MASK]`` (one byte each) in ``text`` by the most likely byte."""
        tokenizer = tokenizer or BytesTokenizer()
        device = self.input_adapter.token_embedding.weight.device
        input_ids, input_mask = tokenizer(text, max_length=self.config.text.max_seq_len)
        input_ids, input_mask = input_ids.to(device), input_mask.to(device)
        logits = self(input_ids, input_mask).logits[0]
        ids = input_ids[0].clone()
        masked = ids == tokenizer.mask_id
        # predict bytes only (not special ids)
        ids[masked] = logits[masked][:, tokenizer.num_special_tokens :].argmax(-1) + tokenizer.num_special_tokens
        return tokenizer.decode(ids[1:-1])


@register_model("language-perceiver", MaskedLanguageModel)
def language_perceiver() -> MaskedLanguageModelConfig:
    """``deepmind/language-perceiver``: bytes, M = O = 2048, C = 768, 256 × 1280 latents, 26 layers (~201M)."""
    return MaskedLanguageModelConfig()
