"""WAV files: mono 16-bit PCM through the standard library's :mod:`wave`."""

from __future__ import annotations

import os
import wave

import numpy as np

__all__ = ["write_wav", "read_wav"]


def write_wav(path: str | os.PathLike, samples, sample_rate: int) -> None:
    """``samples (S,)`` in [-1, 1] (clipped) -> a mono 16-bit WAV file."""
    x = np.asarray(samples, dtype=np.float64).reshape(-1)
    pcm = np.round(np.clip(x, -1.0, 1.0) * 32767).astype("<i2")
    with wave.open(os.fspath(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(int(sample_rate))
        f.writeframes(pcm.tobytes())


def read_wav(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """A mono 16-bit WAV file -> ``(samples float32 (S,) in [-1, 1], sample_rate)``."""
    with wave.open(os.fspath(path), "rb") as f:
        if f.getnchannels() != 1 or f.getsampwidth() != 2:
            raise ValueError(
                f"{path}: expected mono 16-bit PCM, got {f.getnchannels()} channels × {8 * f.getsampwidth()} bit"
            )
        rate, data = f.getframerate(), f.readframes(f.getnframes())
    return np.frombuffer(data, "<i2").astype(np.float32) / 32767, rate
