"""Audio-visual digits and the speech synthesiser: determinism, disjoint splits, label/content agreement."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("espeakng_loader")

from perceiver_io.data.av import DIGIT_WORDS, TEST_VOICES, TRAIN_VOICES, AVDigitsConfig, load_av_digits, render  # noqa: E402
from perceiver_io.data.speech import resample, synthesize  # noqa: E402

SMALL = AVDigitsConfig(frames=4, image_size=16, sample_rate=8000, num_samples=8192, num_train=30, num_valid=10,
                       num_test=12, seed=3)  # fmt: skip


@pytest.fixture
def fake_mnist(monkeypatch):
    """Per split a different set of 28² images; image i of a split is a square of brightness 20·label + 40."""
    from perceiver_io.data import loaders

    def fake(name, split, cache_dir=None):
        offset = {"train": 0, "valid": 100, "test": 200}[split]
        labels = (np.arange(50) + offset) % 10
        images = np.zeros((50, 28, 28), np.uint8)
        for i, y in enumerate(labels):
            images[i, 9:19, 9:19] = 20 * y + 40
        return torch.from_numpy(images), torch.from_numpy(labels)

    monkeypatch.setattr(loaders, "load_image_classification", fake)


def spectrogram(wave: np.ndarray) -> torch.Tensor:
    """Log band energies ``(frames, 16)`` of the voiced part (8 kHz, 32 ms windows, 16 bands of 250 Hz)."""
    nz = np.flatnonzero(np.abs(wave) > 1e-3)
    x = torch.from_numpy(wave[nz[0] : nz[-1] + 1].copy())
    spec = torch.stft(x, 256, 128, window=torch.hann_window(256), return_complex=True).abs().square().T
    return (spec[:, :128].reshape(len(spec), 16, 8).sum(-1) + 1e-2).log()


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Correlation of two spectrograms over their common length."""
    sa, sb = spectrogram(a), spectrogram(b)
    n = min(len(sa), len(sb))
    sa, sb = sa[:n].flatten(), sb[:n].flatten()
    return float(torch.corrcoef(torch.stack([sa, sb]))[0, 1])


def test_speech_is_reproducible_and_resampled():
    # espeak-ng jitters its glottal source from call to call, so two calls agree in content, not in bits
    a = synthesize("seven", "en-us+f2", 160, 40, sample_rate=8000)
    b = synthesize("seven", "en-us+f2", 160, 40, sample_rate=8000)
    assert a.dtype == np.float32 and 0.1 < np.abs(a).max() <= 1.0
    assert abs(a.size - b.size) <= 0.02 * a.size and similarity(a, b) > 0.5
    full = synthesize("seven", "en-us+f2", 160, 40)
    assert abs(a.size - round(full.size * 8000 / 22050)) <= 0.02 * a.size
    with pytest.raises(ValueError, match="no voice"):
        synthesize("one", "xx-nonexistent")


def test_resample_keeps_a_low_tone_and_removes_a_high_one():
    t = np.arange(22050) / 22050
    low, high = np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 6000 * t)  # 6 kHz > 4 kHz, the new Nyquist
    out = resample((low + high).astype(np.float32), 22050, 8000)
    t8 = np.arange(8000) / 8000
    np.testing.assert_allclose(out, np.sin(2 * np.pi * 440 * t8), atol=1e-3)


def test_clips_are_deterministic_cached_and_splits_disjoint(tmp_path, fake_mnist):
    a = load_av_digits("train", SMALL, tmp_path / "a")
    b = load_av_digits("train", SMALL, tmp_path / "b")
    for k in ("video", "label", "image_index", "voice", "rate", "pitch"):
        np.testing.assert_array_equal(a[k], b[k])
    sims = [similarity(x, y) for x, y in zip(a["audio"], b["audio"], strict=True)]
    assert min(sims) > 0.5 and np.median(sims) > 0.9  # the same words, up to espeak-ng's jitter
    assert list((tmp_path / "a" / "av-digits").glob("train-*.npz"))  # cached: a built set is fixed
    np.testing.assert_array_equal(load_av_digits("train", SMALL, tmp_path / "a")["audio"], a["audio"])
    other = load_av_digits("train", SMALL.replace(seed=4), tmp_path)
    assert not np.array_equal(other["image_index"], a["image_index"])
    test = load_av_digits("test", SMALL, tmp_path / "a")
    assert a["video"].shape == (30, 4, 16, 16) and a["audio"].shape == (30, 8192) and test["label"].shape == (12,)
    assert set(a["voice"]) <= set(TRAIN_VOICES) and set(test["voice"]) <= set(TEST_VOICES)
    assert not set(TRAIN_VOICES) & set(TEST_VOICES)
    valid = load_av_digits("valid", SMALL, tmp_path / "a")
    assert valid["video"].shape[0] == 10 and set(valid["voice"]) <= set(TRAIN_VOICES)


def test_label_agrees_with_the_digit_and_the_spoken_word(tmp_path, fake_mnist):
    """The video shows that label's image; the audio sounds like that label's word in the clip's voice
    (closer than any other digit's word), and is peak-normalised."""
    clips = load_av_digits("train", SMALL, tmp_path)
    own_best = 0
    for i in range(len(clips["label"])):
        y = int(clips["label"][i])
        assert clips["video"][i].max() == pytest.approx(20 * y + 40, abs=2)  # the fake image of that digit
        voice, rate, pitch = str(clips["voice"][i]), int(clips["rate"][i]), int(clips["pitch"][i])
        sims = [similarity(clips["audio"][i], synthesize(w, voice, rate, pitch, 8000)) for w in DIGIT_WORDS]
        own_best += int(np.argmax(sims) == y)
        assert np.abs(clips["audio"][i]).max() == pytest.approx(0.9, abs=1e-5)
    assert own_best >= 0.8 * len(clips["label"]), own_best


def test_render_moves_and_scales_the_digit_inside_the_frame():
    digit = torch.zeros(1, 28, 28, dtype=torch.uint8)
    digit[0, 4:24, 4:24] = 255
    clip = render(digit, frames=6, size=32, g=torch.Generator().manual_seed(0))[0].float()
    assert clip.shape == (6, 32, 32)
    mass = clip.sum((1, 2))
    assert (mass > 0).all()
    ys, xs = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    centres = torch.stack([(clip * xs).sum((1, 2)) / mass, (clip * ys).sum((1, 2)) / mass], 1)
    steps = centres.diff(dim=0)
    torch.testing.assert_close(steps, steps[:1].expand_as(steps), atol=0.3, rtol=0)  # a straight, even path
    assert clip[:, 0, :].sum() == 0 and clip[:, -1, :].sum() == 0  # inside the frame
