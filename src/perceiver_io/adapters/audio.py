"""Audio adapters: raw samples -> patches + 1-D Fourier features in; ``Linear(samples_per_patch)`` out.

Input side: ``(B, S)`` samples (also ``(B, 1, S)`` or ``(B, S, 1)``, mono) are cut into
``S / samples_per_patch`` patches ``(B, M, samples_per_patch)`` and concatenated with 1-D
Fourier features of the patch index (``max_resolution`` defaults to the number of samples, as
in the official Kinetics model: 1,920 patches of 16 samples, frequencies up to 30,720 / 2).

Output side: one query per patch; a ``Linear`` maps each decoded row to ``samples_per_patch``
samples and the patches are flattened back to ``(B, O · samples_per_patch)``.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from perceiver_io.adapters.video import concat_positions
from perceiver_io.layers.position import FourierPositionEncoding
from perceiver_io.queries import FourierQueries

__all__ = ["AudioInputAdapter", "AudioOutputAdapter", "AudioQueries", "audio_to_patches"]


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


class AudioInputAdapter(nn.Module):
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

    def forward(self, audio: Tensor) -> Tensor:
        """``audio (B, S)`` -> ``(B, S / spp, num_channels)``."""
        x = audio_to_patches(audio, self.samples_per_patch)
        pos = self.position_encoding.grid((x.shape[1],), device=x.device).to(x.dtype)
        return concat_positions(x, pos)


class AudioQueries(FourierQueries):
    """One query per output patch: 1-D Fourier features of the patch index."""


class AudioOutputAdapter(nn.Module):
    """Decoded rows ``(B, O, F)`` -> samples ``(B, O · samples_per_patch)``."""

    def __init__(self, num_input_channels: int, samples_per_patch: int = 16) -> None:
        super().__init__()
        self.samples_per_patch = samples_per_patch
        self.projection = nn.Linear(num_input_channels, samples_per_patch)

    def forward(self, x: Tensor) -> Tensor:
        return self.arrange(self.projection(x))

    def arrange(self, y: Tensor) -> Tensor:
        """Projected rows ``(B, P, samples_per_patch)`` -> samples ``(B, P·samples_per_patch)``."""
        return y.reshape(y.shape[0], -1)
