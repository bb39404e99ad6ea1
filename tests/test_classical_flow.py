"""Classical optical-flow baselines (OpenCV Farnebäck and DIS, zero flow)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

pytest.importorskip("cv2")

from perceiver_io.classical_flow import (  # noqa: E402
    CLASSICAL_METHODS,
    FARNEBACK_DEFAULTS,
    _dis_size_is_safe,
    dis_flow,
    farneback_flow,
    zero_flow,
)
from perceiver_io.metrics import endpoint_error  # noqa: E402

SHIFT = (1.7, -1.1)  # (dx, dy) px: the content moves right by 1.7 and up by 1.1


def smooth_texture(seed: int, n: int = 64, sigma: float = 2.0) -> torch.Tensor:
    """Periodic blurred uniform noise ``(n, n)`` float64 (Gaussian low-pass, std ``sigma`` px, in Fourier space)."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.rand(n, n, generator=g, dtype=torch.float64)
    f = torch.fft.fftfreq(n, dtype=torch.float64)
    gauss = torch.exp(-2 * (math.pi * sigma) ** 2 * (f[:, None] ** 2 + f[None, :] ** 2))
    return torch.fft.ifft2(torch.fft.fft2(noise) * gauss).real


def fourier_shift(image: torch.Tensor, dx: float, dy: float) -> torch.Tensor:
    """``out(x, y) = image(x - dx, y - dy)`` exactly (periodic, band-limited), for ``image (n, n)``."""
    n = image.shape[0]
    f = torch.fft.fftfreq(n, dtype=torch.float64)
    phase = torch.exp(-2j * math.pi * (f[None, :] * dx + f[:, None] * dy))
    return torch.fft.ifft2(torch.fft.fft2(image) * phase).real


def shifted_pair(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Frames ``(3, 64, 64)`` float in [0, 1]: a smooth texture and the same moved by ``SHIFT``."""
    t = smooth_texture(seed)
    lo, hi = t.min(), t.max()
    a = (t - lo) / (hi - lo)
    b = ((fourier_shift(t, *SHIFT) - lo) / (hi - lo)).clamp(0, 1)
    return a.float().expand(3, -1, -1).contiguous(), b.float().expand(3, -1, -1).contiguous()


def interior_error(flow: torch.Tensor, border: int = 8) -> torch.Tensor:
    """End-point error ``(H - 2·border, W - 2·border)`` against the constant ``SHIFT`` (the border wraps around)."""
    err = torch.hypot(flow[..., 0] - SHIFT[0], flow[..., 1] - SHIFT[1])
    return err[border:-border, border:-border]


# Measured with OpenCV 5.0 over seeds 0-4: Farnebäck median 0.008-0.010 px (max 0.06), DIS-medium median
# 0.02-0.04 px (max 0.08), DIS-fast / ultrafast median 0.010-0.014 px (max 0.06). The bounds leave ~5x headroom.
@pytest.mark.parametrize("seed", [0, 1])
def test_farneback_recovers_subpixel_translation(seed):
    f1, f2 = shifted_pair(seed)
    flow = farneback_flow(f1, f2)
    assert flow.shape == (64, 64, 2) and flow.dtype == torch.float32
    err = interior_error(flow)
    assert err.median() < 0.05, float(err.median())
    assert err.max() < 0.2, float(err.max())


@pytest.mark.parametrize("seed", [0, 1])
def test_dis_medium_recovers_subpixel_translation(seed):
    f1, f2 = shifted_pair(seed)
    flow = dis_flow(f1, f2, preset="medium")
    assert flow.shape == (64, 64, 2) and flow.dtype == torch.float32
    err = interior_error(flow)
    assert err.median() < 0.15, float(err.median())
    assert err.max() < 0.3, float(err.max())


def test_all_methods_and_numpy_input():
    f1, f2 = shifted_pair(2)
    as_numpy = [(f.permute(1, 2, 0) * 255).round().to(torch.uint8).numpy() for f in (f1, f2)]
    assert set(CLASSICAL_METHODS) == {"zero", "farneback", "dis-ultrafast", "dis-fast", "dis-medium"}
    for name, method in CLASSICAL_METHODS.items():
        flow = method(f1, f2)
        assert flow.shape == (64, 64, 2) and flow.dtype == torch.float32, name
        # numpy (H, W, 3) uint8 is the same image after the tensor's rounding to uint8: the same flow
        assert torch.equal(method(*as_numpy), flow), name
        if name != "zero":
            assert interior_error(flow).median() < 0.15, name


def test_zero_flow_shape():
    flow = zero_flow(torch.rand(3, 5, 7), torch.rand(3, 5, 7))
    assert flow.shape == (5, 7, 2) and flow.dtype == torch.float32 and not flow.any()
    assert zero_flow(np.zeros((4, 6, 3), np.uint8), np.zeros((4, 6, 3), np.uint8)).shape == (4, 6, 2)


def test_farneback_parameters():
    f1, f2 = shifted_pair(3)
    assert FARNEBACK_DEFAULTS == {
        "pyr_scale": 0.5,
        "levels": 3,
        "winsize": 15,
        "iterations": 3,
        "poly_n": 5,
        "poly_sigma": 1.2,
        "flags": 0,
    }
    explicit = farneback_flow(f1, f2, **FARNEBACK_DEFAULTS)
    assert torch.equal(explicit, farneback_flow(f1, f2))
    other = farneback_flow(f1, f2, winsize=9, poly_n=7, poly_sigma=1.5, flags=256)
    assert not torch.equal(other, explicit) and interior_error(other).median() < 0.15
    with pytest.raises(TypeError, match=r"unknown parameter\(s\) \['window'\]"):
        farneback_flow(f1, f2, window=5)
    with pytest.raises(ValueError, match=r"pyr_scale must be a number in \(0, 1\), got 1.5"):
        farneback_flow(f1, f2, pyr_scale=1.5)
    with pytest.raises(ValueError, match="levels must be an integer >= 0, got -1"):
        farneback_flow(f1, f2, levels=-1)
    with pytest.raises(ValueError, match="winsize must be an integer >= 1, got 2.5"):
        farneback_flow(f1, f2, winsize=2.5)
    with pytest.raises(ValueError, match="flags must be 0 or cv2.OPTFLOW_FARNEBACK_GAUSSIAN"):
        farneback_flow(f1, f2, flags=4)


@pytest.mark.parametrize("size", [(1, 1), (5, 9), (12, 12), (16, 16), (16, 100), (100, 16), (20, 300)])
@pytest.mark.parametrize("preset", ["ultrafast", "fast", "medium"])
def test_dis_awkward_sizes(size, preset):
    """Sizes OpenCV's DIS refuses (under 12 px) or crashes on (wide and short, e.g. 16 x 100) are padded."""
    rng = np.random.default_rng(0)
    a, b = (rng.integers(0, 256, (*size, 3), dtype=np.uint8) for _ in range(2))
    flow = dis_flow(a, b, preset=preset)
    assert flow.shape == (*size, 2) and torch.isfinite(flow).all()


def test_dis_size_check():
    assert _dis_size_is_safe(436, 1024, "ultrafast") and _dis_size_is_safe(64, 64, "medium")  # no padding
    assert not _dis_size_is_safe(16, 100, "ultrafast") and not _dis_size_is_safe(8, 8, "medium")


def test_bad_inputs():
    good = torch.rand(3, 8, 8)
    for method in (zero_flow, farneback_flow, dis_flow):
        with pytest.raises(ValueError, match=r"frame1 and frame2 must have the same size, got \(H, W\) = \(8, 8\)"):
            method(good, torch.rand(3, 8, 9))
    with pytest.raises(ValueError, match=r"frame1 as a tensor must have shape \(3, H, W\), got \(8, 8, 3\)"):
        farneback_flow(torch.rand(8, 8, 3), good)
    with pytest.raises(
        ValueError, match="frame2 as a tensor must be floating point in \\[0, 1\\], got dtype torch.uint8"
    ):
        farneback_flow(good, torch.zeros(3, 8, 8, dtype=torch.uint8))
    in_255 = torch.zeros(3, 8, 8)
    in_255[0, 0, 0] = 255.0
    with pytest.raises(ValueError, match=r"frame2 as a float tensor must be in \[0, 1\], got values in \[0, 255\]"):
        farneback_flow(good, in_255)
    with pytest.raises(ValueError, match="non-finite"):
        farneback_flow(torch.full((3, 8, 8), float("nan")), good)
    with pytest.raises(ValueError, match=r"frame1 as a numpy array must have shape \(H, W, 3\), got \(3, 8, 8\)"):
        farneback_flow(np.zeros((3, 8, 8), np.uint8), np.zeros((3, 8, 8), np.uint8))
    with pytest.raises(ValueError, match="frame1 as a numpy array must have dtype uint8, got float32"):
        farneback_flow(np.zeros((8, 8, 3), np.float32), np.zeros((8, 8, 3), np.float32))
    with pytest.raises(TypeError, match="frame1 must be a torch tensor"):
        farneback_flow([[0.0]], good)
    with pytest.raises(ValueError, match=r"preset must be one of \('ultrafast', 'fast', 'medium'\), got 'slow'"):
        dis_flow(good, good, preset="slow")


def test_farneback_beats_zero_flow_on_flow_pairs():
    """Sanity check on the procedural data: Farnebäck's end-point error is below zero flow's on every pair."""
    from perceiver_io.data.flow import FlowPairs

    data = FlowPairs("test", size=(64, 64), length=4, textures=None, silhouettes=None)
    fb_epe, zero_epe = [], []
    for i in range(len(data)):
        s = data[i]
        fb = farneback_flow(s["frame1"], s["frame2"]).permute(2, 0, 1)
        zero = zero_flow(s["frame1"], s["frame2"]).permute(2, 0, 1)
        fb_epe.append(float(endpoint_error(fb, s["flow"]).mean()))
        zero_epe.append(float(endpoint_error(zero, s["flow"]).mean()))
    # measured: Farnebäck 0.92-1.77 px, zero flow 2.65-2.91 px (the mean |flow|)
    assert all(f < z for f, z in zip(fb_epe, zero_epe, strict=True)), (fb_epe, zero_epe)
    assert sum(fb_epe) < 0.75 * sum(zero_epe), (fb_epe, zero_epe)
