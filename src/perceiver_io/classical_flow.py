"""Classical optical-flow baselines (OpenCV): zero flow, Farnebäck and DIS.

Every method takes two frames and returns the flow from ``frame1`` to ``frame2`` as float32
``(H, W, 2)`` in pixels, ``u`` = Δx (right), ``v`` = Δy (down), so that ``frame2[y + v, x + u] ≈
frame1[y, x]``. Frames are either torch tensors ``(3, H, W)`` float in ``[0, 1]`` (the format of
:class:`perceiver_io.data.flow.FlowPairs` items) or numpy arrays ``(H, W, 3)`` uint8 RGB; both are
converted to greyscale uint8 with OpenCV's ``RGB2GRAY`` weights (0.299 R + 0.587 G + 0.114 B).

OpenCV is the optional extra ``flow`` (``pip install 'perceiver-family[flow]'``, i.e.
``opencv-python-headless``) and is imported only when a method that needs it is called.

``CLASSICAL_METHODS`` maps names (``"zero"``, ``"farneback"``, ``"dis-ultrafast"``, ``"dis-fast"``,
``"dis-medium"``) to ``method(frame1, frame2) -> (H, W, 2)``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from perceiver_io.flow_io import require_cv2

__all__ = ["CLASSICAL_METHODS", "DIS_PRESETS", "FARNEBACK_DEFAULTS", "dis_flow", "farneback_flow", "zero_flow"]

#: Default ``cv2.calcOpticalFlowFarneback`` parameters (those of OpenCV's own sample ``python/opt_flow.py``
#: and tutorial): a 3-level pyramid halving each level (OpenCV itself stops early at levels whose sides
#: would fall under 32 px, so small images get as many levels as their size allows), a 15×15 averaging
#: window, 3 iterations per level, a 5-pixel polynomial neighbourhood with Gaussian σ 1.2, box filter (flags 0).
FARNEBACK_DEFAULTS: dict[str, Any] = {
    "pyr_scale": 0.5,
    "levels": 3,
    "winsize": 15,
    "iterations": 3,
    "poly_n": 5,
    "poly_sigma": 1.2,
    "flags": 0,
}

#: The DIS presets accepted by :func:`dis_flow`, fastest first.
DIS_PRESETS: tuple[str, ...] = ("ultrafast", "fast", "medium")

# (patch size, finest scale) that OpenCV's DIS presets set (dis_flow.cpp), used to spot sizes it mishandles.
_DIS_PRESET_SCALES = {"ultrafast": (8, 2), "fast": (8, 2), "medium": (12, 1)}
# Sides below this are padded for DIS (OpenCV refuses images under 12 px and needs a few patches per side) ...
_DIS_MIN_SIDE = 16
# ... to at least this many pixels (16 × 16 is not enough for the medium preset's 12-px patches).
_DIS_PAD_SIDE = 24


def _cv2():
    return require_cv2("classical optical flow (Farnebäck, DIS) needs OpenCV")


def _to_rgb_uint8(frame: Any, name: str) -> np.ndarray:
    """A frame ``(3, H, W)`` float tensor in ``[0, 1]`` or ``(H, W, 3)`` uint8 numpy -> ``(H, W, 3)`` uint8."""
    if isinstance(frame, Tensor):
        if frame.dim() != 3 or frame.shape[0] != 3:
            raise ValueError(f"{name} as a tensor must have shape (3, H, W), got {tuple(frame.shape)}")
        if not frame.is_floating_point():
            raise ValueError(f"{name} as a tensor must be floating point in [0, 1], got dtype {frame.dtype}")
        if frame.shape[1] < 1 or frame.shape[2] < 1:
            raise ValueError(f"{name} must have H, W >= 1, got shape {tuple(frame.shape)}")
        x = frame.detach().cpu().float()
        if not torch.isfinite(x).all():
            raise ValueError(f"{name} holds non-finite values (NaN or inf)")
        lo, hi = float(x.min()), float(x.max())
        if lo < 0.0 or hi > 1.0:
            raise ValueError(f"{name} as a float tensor must be in [0, 1], got values in [{lo:g}, {hi:g}]")
        return (x.permute(1, 2, 0) * 255.0).round().to(torch.uint8).numpy()
    if isinstance(frame, np.ndarray):
        if frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"{name} as a numpy array must have shape (H, W, 3), got {frame.shape}")
        if frame.dtype != np.uint8:
            raise ValueError(f"{name} as a numpy array must have dtype uint8, got {frame.dtype}")
        if frame.shape[0] < 1 or frame.shape[1] < 1:
            raise ValueError(f"{name} must have H, W >= 1, got shape {frame.shape}")
        return np.ascontiguousarray(frame)
    raise TypeError(
        f"{name} must be a torch tensor (3, H, W) float in [0, 1] or a numpy array (H, W, 3) uint8, "
        f"got {type(frame).__name__}"
    )


def _check_pair(frame1: Any, frame2: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validate both frames -> their ``(H, W, 3)`` uint8 RGB arrays (same size)."""
    a, b = _to_rgb_uint8(frame1, "frame1"), _to_rgb_uint8(frame2, "frame2")
    if a.shape != b.shape:
        raise ValueError(f"frame1 and frame2 must have the same size, got (H, W) = {a.shape[:2]} and {b.shape[:2]}")
    return a, b


def _grey_pair(frame1: Any, frame2: Any) -> tuple[np.ndarray, np.ndarray]:
    """Both frames -> greyscale uint8 ``(H, W)`` with OpenCV's RGB2GRAY weights."""
    cv2 = _cv2()
    a, b = _check_pair(frame1, frame2)
    return cv2.cvtColor(a, cv2.COLOR_RGB2GRAY), cv2.cvtColor(b, cv2.COLOR_RGB2GRAY)


def _as_flow_tensor(flow: np.ndarray) -> Tensor:
    """OpenCV flow ``(H, W, 2)`` -> float32 tensor ``(H, W, 2)``."""
    return torch.from_numpy(np.ascontiguousarray(flow, dtype=np.float32))


def zero_flow(frame1: Any, frame2: Any) -> Tensor:
    """The trivial baseline: zero flow, float32 ``(H, W, 2)`` (frames are validated as for the other methods)."""
    a, _ = _check_pair(frame1, frame2)
    return torch.zeros(a.shape[0], a.shape[1], 2, dtype=torch.float32)


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def farneback_flow(frame1: Any, frame2: Any, **params: Any) -> Tensor:
    """Dense Farnebäck flow (``cv2.calcOpticalFlowFarneback``) -> float32 ``(H, W, 2)`` px (u right, v down).

    ``params`` override :data:`FARNEBACK_DEFAULTS`: ``pyr_scale`` (in (0, 1)), ``levels`` (>= 0; OpenCV
    drops levels whose sides would be under 32 px), ``winsize`` (>= 1), ``iterations`` (>= 1), ``poly_n``
    (>= 1, typically 5 or 7), ``poly_sigma`` (> 0, typically 1.1 for ``poly_n`` 5, 1.5 for 7) and
    ``flags`` (0 or ``cv2.OPTFLOW_FARNEBACK_GAUSSIAN`` = 256 for a Gaussian instead of a box window).
    """
    unknown = sorted(set(params) - set(FARNEBACK_DEFAULTS))
    if unknown:
        raise TypeError(f"farneback_flow got unknown parameter(s) {unknown}; valid: {sorted(FARNEBACK_DEFAULTS)}")
    p = {**FARNEBACK_DEFAULTS, **params}
    pyr_scale = p["pyr_scale"]
    if isinstance(pyr_scale, bool) or not isinstance(pyr_scale, (int, float)) or not 0.0 < pyr_scale < 1.0:
        raise ValueError(f"pyr_scale must be a number in (0, 1), got {pyr_scale!r}")
    poly_sigma = p["poly_sigma"]
    if isinstance(poly_sigma, bool) or not isinstance(poly_sigma, (int, float)) or not poly_sigma > 0:
        raise ValueError(f"poly_sigma must be a positive number, got {poly_sigma!r}")
    levels = _check_int("levels", p["levels"], 0)
    winsize = _check_int("winsize", p["winsize"], 1)
    iterations = _check_int("iterations", p["iterations"], 1)
    poly_n = _check_int("poly_n", p["poly_n"], 1)
    cv2 = _cv2()
    flags = p["flags"]
    if flags not in (0, cv2.OPTFLOW_FARNEBACK_GAUSSIAN) or isinstance(flags, bool):
        raise ValueError(
            f"flags must be 0 or cv2.OPTFLOW_FARNEBACK_GAUSSIAN ({cv2.OPTFLOW_FARNEBACK_GAUSSIAN}), got {flags!r}"
        )
    g1, g2 = _grey_pair(frame1, frame2)
    flow = cv2.calcOpticalFlowFarneback(
        g1, g2, None, float(pyr_scale), levels, winsize, iterations, poly_n, float(poly_sigma), int(flags)
    )
    return _as_flow_tensor(flow)


def _dis_size_is_safe(height: int, width: int, preset: str) -> bool:
    """Whether OpenCV's DIS handles an ``(height, width)`` image without an error or a crash.

    Mirrors the scale selection in OpenCV 4.x/5.x ``dis_flow.cpp``: the coarsest pyramid level is
    ``min(round(log2(max side / (4·patch))), floor(log2(min side / patch)))``; when that is finer than
    the preset's finest level, OpenCV re-selects the levels from the *width alone*
    (``floor(log2(2·width / 40))``), which reads out of bounds (segfaults) on wide, short images.
    """
    patch, finest = _DIS_PRESET_SCALES[preset]
    if min(height, width) < _DIS_MIN_SIDE:
        return False
    long_side, short_side = max(height, width), min(height, width)
    coarsest = min(
        int(math.log(long_side / (4.0 * patch)) / math.log(2.0) + 0.5),  # C++ int(): truncates toward zero
        int(math.log(short_side / patch) / math.log(2.0)),
    )
    if coarsest < 0:
        return False
    if coarsest >= finest:
        return True
    fallback = max(0, math.floor(math.log2(2.0 * width / 40.0)))
    return short_side // 2**fallback >= 8


def dis_flow(frame1: Any, frame2: Any, preset: str = "medium") -> Tensor:
    """Dense Inverse Search flow (``cv2.DISOpticalFlow``, Kroeger et al. 2016) -> float32 ``(H, W, 2)`` px.

    ``preset`` is ``"ultrafast"``, ``"fast"`` or ``"medium"`` (``cv2.DISOPTICAL_FLOW_PRESET_*``). Sizes
    OpenCV's DIS cannot take (a side under 16 px, or a wide image much shorter than it is wide, on
    which OpenCV errors or crashes) are padded on the bottom / right by edge replication first
    (each side to at least 24 px and half the longer side) and the flow is cropped back.
    """
    if preset not in DIS_PRESETS:
        raise ValueError(f"preset must be one of {DIS_PRESETS}, got {preset!r}")
    cv2 = _cv2()
    g1, g2 = _grey_pair(frame1, frame2)
    h, w = g1.shape
    if not _dis_size_is_safe(h, w, preset):
        side = max(_DIS_PAD_SIDE, math.ceil(max(h, w) / 2))
        ph, pw = max(h, side), max(w, side)
        g1 = cv2.copyMakeBorder(g1, 0, ph - h, 0, pw - w, cv2.BORDER_REPLICATE)
        g2 = cv2.copyMakeBorder(g2, 0, ph - h, 0, pw - w, cv2.BORDER_REPLICATE)
        assert _dis_size_is_safe(ph, pw, preset), (ph, pw, preset)
    code = {
        "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
        "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
        "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
    }[preset]
    flow = cv2.DISOpticalFlow_create(code).calc(g1, g2, None)
    return _as_flow_tensor(flow[:h, :w])


#: Named baselines: ``CLASSICAL_METHODS[name](frame1, frame2) -> (H, W, 2)`` float32 px.
CLASSICAL_METHODS: dict[str, Callable[[Any, Any], Tensor]] = {
    "zero": zero_flow,
    "farneback": farneback_flow,
    **{f"dis-{p}": functools.partial(dis_flow, preset=p) for p in DIS_PRESETS},
}
