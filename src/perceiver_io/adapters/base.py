"""What every input adapter returns, and the adapter for inputs that are already ``(B, M, C)``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["AdaptedInputs", "InputAdapter", "IdentityInputAdapter"]


@dataclass
class AdaptedInputs:
    """An input adapter's result: the rows the encoder reads, and what a head needs to know about them.

    * ``inputs``: ``(B, M, C)``;
    * ``index_shape``: the grid the ``M`` rows were flattened from, e.g. ``(H, W)`` for an image
      or a flow pair, ``(L,)`` for text (``None``: no grid);
    * ``sizes``: rows per modality in concatenation order (multimodal inputs), else ``None``.
    """

    inputs: Tensor
    index_shape: tuple[int, ...] | None = None
    sizes: dict[str, int] | None = None

    @property
    def batch_size(self) -> int:
        return self.inputs.shape[0]


class InputAdapter(nn.Module):
    """Base of input adapters: raw inputs -> :class:`AdaptedInputs`; ``num_channels`` is C."""

    num_channels: int

    def example_inputs(self, batch_size: int = 1) -> Any:
        """Valid raw inputs for ``forward`` (random values), for tests and ``perceiver-io demo``."""
        raise NotImplementedError


class IdentityInputAdapter(InputAdapter):
    """Inputs that are already ``(B, M, C)`` arrays (the generic Perceiver IO)."""

    def __init__(self, num_channels: int) -> None:
        super().__init__()
        self.num_channels = num_channels

    def forward(self, inputs: Tensor) -> AdaptedInputs:
        return AdaptedInputs(inputs, index_shape=(inputs.shape[1],))

    def example_inputs(self, batch_size: int = 1) -> Tensor:
        return torch.randn(batch_size, 64, self.num_channels)
