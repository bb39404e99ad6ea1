"""Spoken words, synthesised offline by espeak-ng.

The library and its voice data come from PyPI's ``espeakng-loader`` wheel (extra ``av``); it is
called through :mod:`ctypes`, so no program needs to be installed. A voice is ``language+variant``
(``"en-us+f3"``); rate is in words per minute and pitch in 0..99, as for the ``espeak-ng`` program.
"""

from __future__ import annotations

import ctypes
import threading

import numpy as np

__all__ = ["ESPEAK_SAMPLE_RATE", "SpeechUnavailable", "synthesize", "resample"]

ESPEAK_SAMPLE_RATE = 22050
_POS_CHARACTER, _AUDIO_OUTPUT_SYNCHRONOUS, _RATE, _PITCH = 1, 2, 1, 3
_lock = threading.Lock()
_engine: dict = {}


class SpeechUnavailable(RuntimeError):
    """espeak-ng cannot be loaded (install the extra: ``pip install 'perceiver-family[av]'``)."""


def _load() -> dict:
    if _engine:
        return _engine
    try:
        import espeakng_loader
    except ImportError:
        raise SpeechUnavailable(
            "speech synthesis needs espeak-ng from the espeakng-loader package: pip install 'perceiver-family[av]'"
        ) from None
    lib = ctypes.CDLL(espeakng_loader.get_library_path())
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_Synth.argtypes = [
        ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint, ctypes.c_uint,
        ctypes.c_void_p, ctypes.c_void_p,
    ]  # fmt: skip
    rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, espeakng_loader.get_data_path().encode(), 0)
    if rate != ESPEAK_SAMPLE_RATE:
        raise SpeechUnavailable(f"espeak-ng failed to initialise (returned {rate})")
    chunks: list[np.ndarray] = []

    @ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)
    def callback(wav, n, events):  # noqa: ARG001 - the signature espeak-ng calls
        if n > 0:
            chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        return 0

    lib.espeak_SetSynthCallback(callback)
    _engine.update(lib=lib, chunks=chunks, callback=callback)  # keep the callback alive
    return _engine


def synthesize(text: str, voice: str = "en", rate: int = 175, pitch: int = 50, sample_rate: int | None = None):
    """``text`` spoken by ``voice`` -> float32 waveform ``(S,)`` in [-1, 1] at ``sample_rate``
    (default espeak-ng's 22,050 Hz). The same arguments give the same word and length, but not the same
    samples: espeak-ng jitters its voice source from call to call."""
    with _lock:
        e = _load()
        lib, chunks = e["lib"], e["chunks"]
        if lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise ValueError(f"espeak-ng has no voice {voice!r} (e.g. 'en', 'en-us+f3', 'en-gb-x-rp+m2')")
        lib.espeak_SetParameter(_RATE, int(rate), 0)
        lib.espeak_SetParameter(_PITCH, int(pitch), 0)
        chunks.clear()
        data = text.encode()
        if lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, 0, None, None) != 0:
            raise RuntimeError(f"espeak-ng could not speak {text!r}")
        lib.espeak_Synchronize()
        wave = np.concatenate(chunks).astype(np.float32) / 32768.0 if chunks else np.zeros(0, np.float32)
    return wave if sample_rate is None else resample(wave, ESPEAK_SAMPLE_RATE, sample_rate)


def resample(wave: np.ndarray, source_rate: int, target_rate: int) -> np.ndarray:
    """Band-limited resampling of ``(S,)`` by the FFT (frequencies above the new Nyquist are dropped)."""
    if source_rate == target_rate or wave.size == 0:
        return wave.astype(np.float32)
    n = max(1, round(wave.size * target_rate / source_rate))
    spectrum = np.fft.rfft(wave)
    keep = min(spectrum.size, n // 2 + 1)
    out = np.fft.irfft(spectrum[:keep], n) * (n / wave.size)
    return out.astype(np.float32)
