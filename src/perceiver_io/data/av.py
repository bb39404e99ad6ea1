"""Audio-visual digits: a real handwritten digit moving across a short clip, the same digit spoken.

Each clip has

* ``video`` ``uint8 (T, S, S)``: an MNIST digit (train/valid: the official training images, split as
  :func:`~perceiver_io.data.loaders.load_image_classification` does; test: the official test images)
  that moves along a straight line and grows or shrinks while it moves, on a black background;
* ``audio`` ``float32 (L,)`` in [-1, 1]: the digit's English name spoken by espeak-ng
  (:mod:`perceiver_io.data.speech`) with a random voice, rate and pitch, resampled to
  ``sample_rate``, placed at a random offset, peak-normalised to 0.9;
* ``label`` ``int64``: the digit, which is the image's MNIST label and the spoken word.

The test split's voices (accent + variant) never occur in training or validation. The choices
(images, motions, voices, rates, pitches, offsets) are deterministic by ``seed``; espeak-ng jitters
its voice source from call to call, so a rebuilt set speaks the same words with slightly different
samples. Each split is therefore built once and cached as one ``.npz`` per split and configuration.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from perceiver_io.config import Config, ConfigError
from perceiver_io.data.cache import PathLike, data_root

__all__ = ["AVDigitsConfig", "DIGIT_WORDS", "TRAIN_VOICES", "TEST_VOICES", "voices_for", "load_av_digits", "render"]

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
TRAIN_VOICES = tuple(
    f"{accent}+{variant}"
    for accent in ("en", "en-us", "en-gb-x-rp")
    for variant in ("m1", "m2", "m3", "m4", "m5", "f1", "f2", "f3")
)
TEST_VOICES = ("en-029+m6", "en-029+f4", "en-gb-scotland+m7", "en-gb-scotland+f5")


@dataclass
class AVDigitsConfig(Config):
    """``frames`` × ``image_size``² video and ``num_samples`` audio samples at ``sample_rate`` per clip;
    ``num_train`` / ``num_valid`` / ``num_test`` clips per split."""

    frames: int = 8
    image_size: int = 32
    sample_rate: int = 8000
    num_samples: int = 8192
    num_train: int = 4000
    num_valid: int = 500
    num_test: int = 500
    seed: int = 0

    def validate(self) -> None:
        self._positive("frames", "image_size", "sample_rate", "num_samples", "num_train", "num_valid", "num_test")
        if self.image_size < 16:
            raise ConfigError(f"AVDigitsConfig.image_size must be >= 16, got {self.image_size}")

    def size(self, split: str) -> int:
        return {"train": self.num_train, "valid": self.num_valid, "test": self.num_test}[split]


def voices_for(split: str) -> tuple[str, ...]:
    """Training and validation share voices; the test voices are disjoint from both."""
    if split not in ("train", "valid", "test"):
        raise ValueError(f"split must be 'train', 'valid' or 'test', got {split!r}")
    return TEST_VOICES if split == "test" else TRAIN_VOICES


def render(digits: torch.Tensor, frames: int, size: int, g: torch.Generator) -> torch.Tensor:
    """``digits uint8 (N, 28, 28)`` -> clips ``uint8 (N, T, S, S)``: each digit moves in a straight
    line between two random points and scales linearly between two random sizes (0.45–0.8 of S)."""
    n = digits.shape[0]
    t = torch.linspace(0, 1, frames)[None, :, None]  # (1, T, 1)
    scale = 0.45 + 0.35 * torch.rand(n, 2, generator=g)
    s = scale[:, :1, None] + (scale[:, 1:, None] - scale[:, :1, None]) * t  # (N, T, 1) digit side / S
    room = 1 - scale.max(1).values[:, None]  # |centre| <= 1 - size keeps the digit inside the frame
    start, end = ((torch.rand(n, 2, generator=g) * 2 - 1) * room, (torch.rand(n, 2, generator=g) * 2 - 1) * room)
    centre = start[:, None] + (end - start)[:, None] * t  # (N, T, 2): a straight line at constant speed
    # output pixel (x, y) in [-1, 1] samples the digit at (x - c) / s
    theta = torch.zeros(n, frames, 2, 3)
    theta[..., 0, 0] = theta[..., 1, 1] = 1 / s[..., 0]
    theta[..., :, 2] = -centre / s
    grid = F.affine_grid(theta.reshape(n * frames, 2, 3), [n * frames, 1, size, size], align_corners=False)
    src = digits.float()[:, None].expand(n, frames, 28, 28).reshape(n * frames, 1, 28, 28)
    out = F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.reshape(n, frames, size, size).round().clamp(0, 255).to(torch.uint8)


def _speech(labels: np.ndarray, split: str, cfg: AVDigitsConfig, rng: np.random.Generator) -> tuple[np.ndarray, list]:
    from perceiver_io.data.speech import synthesize

    voices = voices_for(split)
    audio = np.zeros((labels.size, cfg.num_samples), np.float32)
    meta = []
    for i, d in enumerate(labels):
        voice = voices[rng.integers(len(voices))]
        rate, pitch = int(rng.integers(130, 231)), int(rng.integers(25, 76))
        wave = synthesize(DIGIT_WORDS[int(d)], voice, rate, pitch, cfg.sample_rate)
        nz = np.flatnonzero(np.abs(wave) > 1e-3)
        wave = wave[nz[0] : nz[-1] + 1] if nz.size else wave  # trim silence
        wave = wave[: cfg.num_samples]
        offset = int(rng.integers(0, cfg.num_samples - wave.size + 1))
        audio[i, offset : offset + wave.size] = wave * (0.9 / max(float(np.abs(wave).max()), 1e-6))
        meta.append({"voice": voice, "rate": rate, "pitch": pitch})
    return audio, meta


def _build(split: str, cfg: AVDigitsConfig, cache_dir: PathLike | None) -> dict[str, np.ndarray]:
    import perceiver_io.data.loaders as loaders

    images, labels = loaders.load_image_classification("mnist", split, cache_dir)
    images, labels = torch.as_tensor(images), torch.as_tensor(labels)
    split_seed = {"train": 0, "valid": 1, "test": 2}[split]
    rng = np.random.default_rng([cfg.seed, split_seed])
    pick = rng.choice(images.shape[0], size=cfg.size(split), replace=cfg.size(split) > images.shape[0])
    g = torch.Generator().manual_seed(int(rng.integers(2**31)))
    video = render(images[torch.from_numpy(pick)], cfg.frames, cfg.image_size, g).numpy()
    label = labels[torch.from_numpy(pick)].numpy()
    audio, meta = _speech(label, split, cfg, rng)
    return {
        "video": video,
        "audio": audio,
        "label": label.astype(np.int64),
        "image_index": pick.astype(np.int64),
        "voice": np.array([m["voice"] for m in meta]),
        "rate": np.array([m["rate"] for m in meta], np.int64),
        "pitch": np.array([m["pitch"] for m in meta], np.int64),
    }


def load_av_digits(
    split: str, config: AVDigitsConfig | None = None, cache_dir: PathLike | None = None
) -> dict[str, np.ndarray]:
    """The ``split`` of audio-visual digits (see the module docstring), built once and cached:
    ``video uint8 (N, T, S, S)``, ``audio float32 (N, L)``, ``label int64 (N,)``, and per clip the
    MNIST ``image_index`` (within the split's images), ``voice``, ``rate`` and ``pitch``."""
    cfg = config or AVDigitsConfig()
    voices_for(split)
    key = hashlib.sha256(json.dumps(cfg.to_dict(), sort_keys=True).encode()).hexdigest()[:12]
    path = data_root(cache_dir) / "av-digits" / f"{split}-{key}.npz"
    if path.is_file():
        with np.load(path) as f:
            return {k: f[k] for k in f.files}
    data = _build(split, cfg, cache_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **data)
    tmp.replace(path)  # atomic: a killed build leaves no partial cache
    return data
