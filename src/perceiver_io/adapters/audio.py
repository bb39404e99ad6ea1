"""Audio adapters: raw samples -> patches + 1-D Fourier features in; ``Linear(samples_per_patch)`` out.

Input side: ``(B, S)`` samples (also ``(B, 1, S)`` or ``(B, S, 1)``, mono) are cut into
``S / samples_per_patch`` patches ``(B, M, samples_per_patch)`` and concatenated with 1-D
Fourier features of the patch index (``max_resolution`` defaults to the number of samples, as
in the official Kinetics model: 1,920 patches of 16 samples, frequencies up to 30,720 / 2).

Output side (:class:`AudioHead`): one query per patch; a ``Linear`` maps each decoded row to ``samples_per_patch``
samples and the patches are flattened back to ``(B, O · samples_per_patch)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from perceiver_io.adapters.base import AdaptedInputs, InputAdapter
from perceiver_io.heads import ModalityHead
from perceiver_io.layers.position import FourierPositionEncoding
from perceiver_io.layers.spatial import concat_positions
from perceiver_io.queries import FourierQueries

__all__ = ["AudioInputAdapter", "AudioHead", "audio_to_patches"]


def audio_to_patches(audio: Tensor, samples_per_patch: int) -> Tensor:
    """Mono audio ``(B, S)``, ``(B, 1, S)`` or ``(B, S, 1)`` -> patches ``(B, S / spp, spp)``."""
    if audio.dim() == 3 and 1 in audio.shape[1:]:
        audio = audio.reshape(audio.shape[0], -1)
    if audio.dim() != 2:
        raise ValueError(
            f"audio must have shape (B, samples), (B, 1, samples) or (B, samples, 1), got {tuple(audio.shape)}"
        )
    if audio.shape[1] % samples_per_patch:
        raise ValueError(f"audio length {audio.shape[1]} must be divisible by samples_per_patch ({samples_per_patch})")
    return audio.reshape(audio.shape[0], -1, samples_per_patch)


class AudioInputAdapter(InputAdapter):
    """Audio ``(B, S)`` -> inputs ``(B, S / spp, spp + F)``: patches | 1-D Fourier features."""

    def __init__(
        self,
        num_samples: int,
        samples_per_patch: int = 16,
        num_frequency_bands: int = 192,
        max_resolution: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        if num_samples % samples_per_patch:
            raise ValueError(
                f"num_samples ({num_samples}) must be divisible by samples_per_patch ({samples_per_patch})"
            )
        self.num_samples = num_samples
        self.samples_per_patch = samples_per_patch
        self.num_patches = num_samples // samples_per_patch
        self.position_encoding = FourierPositionEncoding(
            (self.num_patches,), num_frequency_bands, max_resolution or (num_samples,)
        )

    @property
    def num_channels(self) -> int:
        return self.samples_per_patch + self.position_encoding.num_channels

    def forward(self, audio: Tensor) -> AdaptedInputs:
        """``audio (B, S)`` -> inputs ``(B, S / spp, num_channels)``."""
        x = audio_to_patches(audio, self.samples_per_patch)
        if x.shape[1] != self.num_patches:
            raise ValueError(f"audio must have {self.num_samples} samples, got shape {tuple(audio.shape)}")
        pos = self.position_encoding.grid((x.shape[1],), device=x.device).to(x.dtype)
        return AdaptedInputs(concat_positions(x, pos), index_shape=(x.shape[1],))

    def example_inputs(self, batch_size: int = 1) -> Tensor:
        return torch.rand(batch_size, self.num_samples) * 2 - 1


class AudioHead(ModalityHead):
    """One Fourier query per output patch; ``Linear(F, samples_per_patch)`` per row; patches -> samples ``(B, S)``."""

    def __init__(
        self,
        num_patches: int,
        num_frequency_bands: int,
        max_resolution: Sequence[int],
        num_input_channels: int,
        samples_per_patch: int = 16,
        full_positions: str = "grid",
    ) -> None:
        super().__init__(
            FourierQueries((num_patches,), num_frequency_bands, max_resolution, full_positions=full_positions),
            nn.Linear(num_input_channels, samples_per_patch),
        )

    def arrange(self, y: Tensor, subsampled: bool = False) -> Tensor:
        """Projected rows ``(B, P, samples_per_patch)`` -> samples ``(B, P·samples_per_patch)``."""
        return y.reshape(y.shape[0], -1)
