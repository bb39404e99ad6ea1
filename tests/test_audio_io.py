"""WAV files round-trip (16-bit PCM: within half a quantisation step)."""

import numpy as np
import pytest

from perceiver_io.audio_io import read_wav, write_wav


def test_wav_round_trip_and_clipping(tmp_path):
    x = np.sin(np.linspace(0, 40, 1000)).astype(np.float32) * 0.8
    x[10] = 3.0  # clipped to full scale
    write_wav(tmp_path / "a.wav", x, 8000)
    y, rate = read_wav(tmp_path / "a.wav")
    assert rate == 8000 and y.shape == x.shape
    expected = np.clip(x, -1, 1)
    np.testing.assert_allclose(y, expected, atol=0.5 / 32767 + 1e-7)


def test_read_wav_refuses_stereo(tmp_path):
    import wave

    with wave.open(str(tmp_path / "s.wav"), "wb") as f:
        f.setnchannels(2)
        f.setsampwidth(2)
        f.setframerate(8000)
        f.writeframes(b"\0" * 400)
    with pytest.raises(ValueError, match="mono 16-bit"):
        read_wav(tmp_path / "s.wav")
