"""Optical-flow files: Middlebury ``.flo`` and KITTI 16-bit PNG flow.

Both readers return ``(flow, valid)``: ``flow`` float32 ``(H, W, 2)`` in pixels (``u`` = x
displacement, ``v`` = y displacement) and ``valid`` bool ``(H, W)``; flow at invalid pixels is set to 0.
Writers take ``flow (H, W, 2)`` (numpy or torch) and an optional ``valid (H, W)`` mask.

* ``.flo`` (Middlebury ``flowIO.cpp``): little-endian; bytes 0-3 the tag ``"PIEH"`` (float32
  202021.25); int32 width; int32 height; then ``width · height · 2`` float32, ``u`` and ``v``
  interleaved, row-major. A pixel is unknown when ``|u|`` or ``|v|`` exceeds 1e9 (or is NaN);
  invalid pixels are written as 1e10.
* KITTI PNG: 16-bit RGB, ``u = (R - 2**15) / 64``, ``v = (G - 2**15) / 64``, ``B`` = 1 where valid
  (any non-zero ``B`` reads as valid). Read and written with OpenCV (``pip install
  'perceiver-family[flow]'``, i.e. ``opencv-python-headless``), which stores channels as BGR. The
  representable range is ``[-512, 511.984]`` px, in steps of 1/64 px.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "FLO_TAG",
    "FLO_UNKNOWN",
    "FLO_UNKNOWN_THRESHOLD",
    "KITTI_RANGE",
    "read_flo",
    "read_flow",
    "read_kitti_flow",
    "write_flo",
    "write_flow",
    "write_kitti_flow",
]

PathLike = str | os.PathLike

#: The ``.flo`` tag: float32 202021.25, whose little-endian bytes spell ``b"PIEH"``.
FLO_TAG: float = 202021.25
_FLO_TAG_BYTES = b"PIEH"
#: Components above this magnitude mark an unknown ``.flo`` pixel (``flowIO.cpp``'s ``UNKNOWN_FLOW_THRESH``).
FLO_UNKNOWN_THRESHOLD: float = 1e9
#: The value written for unknown ``.flo`` pixels.
FLO_UNKNOWN: float = 1e10
#: Largest width or height accepted in a ``.flo`` header (as ``flowIO.cpp``'s sanity check).
FLO_MAX_SIDE: int = 99_999
#: The range of flow values a KITTI PNG can hold, px.
KITTI_RANGE: tuple[float, float] = (-(2**15) / 64, (2**16 - 1 - 2**15) / 64)


def _as_flow(flow: Any, name: str = "flow") -> np.ndarray:
    """numpy / torch ``(H, W, 2)`` real array -> float64 numpy, with a clear error otherwise."""
    if hasattr(flow, "detach"):  # torch tensor
        flow = flow.detach().cpu().numpy()
    a = np.asarray(flow)
    if a.dtype == bool or not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        raise TypeError(f"{name} must hold real numbers, got dtype {a.dtype}")
    if a.ndim != 3 or a.shape[2] != 2 or a.shape[0] < 1 or a.shape[1] < 1:
        hint = " (for channels-first (2, H, W) pass flow.transpose(1, 2, 0) / permute(1, 2, 0))" if a.ndim == 3 else ""
        raise ValueError(f"{name} must have shape (H, W, 2) with u, v last, got {a.shape}{hint}")
    return a.astype(np.float64, copy=False)


def _as_valid(valid: Any, shape: tuple[int, int]) -> np.ndarray | None:
    if valid is None:
        return None
    if hasattr(valid, "detach"):
        valid = valid.detach().cpu().numpy()
    v = np.asarray(valid)
    if v.shape != shape:
        raise ValueError(f"valid must have shape (H, W) = {shape}, got {v.shape}")
    if v.dtype != bool:
        if not (np.issubdtype(v.dtype, np.integer) or np.issubdtype(v.dtype, np.floating)):
            raise TypeError(f"valid must be bool (or 0/1 numbers), got dtype {v.dtype}")
        v = v != 0
    return v


# --------------------------------------------------------------------------------------------
# Middlebury .flo


def read_flo(path: PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read a Middlebury ``.flo`` file -> ``flow`` float32 ``(H, W, 2)``, ``valid`` bool ``(H, W)``.

    Unknown pixels (``|u|`` or ``|v|`` > 1e9, or NaN) are invalid, their flow set to 0. Raises
    ``ValueError`` for a wrong tag, a bad header, a truncated file or trailing bytes.
    """
    p = Path(path)
    data = p.read_bytes()
    if len(data) < 12:
        raise ValueError(f"{p}: truncated .flo file: {len(data)} bytes, the header alone needs 12")
    tag = data[:4]
    if tag != _FLO_TAG_BYTES:
        swapped = " (byte-swapped: a big-endian file?)" if tag == _FLO_TAG_BYTES[::-1] else ""
        found = float(np.frombuffer(tag, "<f4")[0])
        raise ValueError(
            f"{p}: not a Middlebury .flo file: tag {tag!r} (float {found:g}), expected {_FLO_TAG_BYTES!r} "
            f"(float32 {FLO_TAG}){swapped}"
        )
    width, height = (int(x) for x in np.frombuffer(data[4:12], "<i4"))
    if not (1 <= width <= FLO_MAX_SIDE and 1 <= height <= FLO_MAX_SIDE):
        raise ValueError(f"{p}: bad .flo header: width {width}, height {height} (each must be in [1, {FLO_MAX_SIDE}])")
    expected = 12 + 8 * width * height
    if len(data) < expected:
        raise ValueError(
            f"{p}: truncated .flo file: the header says {width}x{height} (needs {expected} bytes), "
            f"the file has {len(data)}"
        )
    if len(data) > expected:
        raise ValueError(
            f"{p}: {len(data) - expected} unexpected trailing bytes after the {width}x{height} flow "
            f"(expected {expected} bytes, found {len(data)})"
        )
    flow = np.frombuffer(data, "<f4", count=2 * width * height, offset=12).reshape(height, width, 2)
    flow = flow.astype(np.float32)  # native order, writable copy
    with np.errstate(invalid="ignore"):
        valid = ~(np.isnan(flow).any(axis=2) | (np.abs(flow) > FLO_UNKNOWN_THRESHOLD).any(axis=2))
    flow[~valid] = 0.0
    return flow, valid


def write_flo(path: PathLike, flow: Any, valid: Any = None) -> None:
    """Write ``flow (H, W, 2)`` px to a Middlebury ``.flo`` file; pixels where ``valid (H, W)`` is False,
    or whose flow is not finite, are written as unknown (1e10).

    Raises ``ValueError`` for finite values beyond ±1e9 (they would read back as unknown).
    """
    f = _as_flow(flow)
    h, w, _ = f.shape
    if h > FLO_MAX_SIDE or w > FLO_MAX_SIDE:
        raise ValueError(f"flow is {h}x{w}; a .flo file holds at most {FLO_MAX_SIDE} pixels per side")
    v = _as_valid(valid, (h, w))
    known = np.isfinite(f).all(axis=2)
    if v is not None:
        known &= v
    big = known & (np.abs(f) > FLO_UNKNOWN_THRESHOLD).any(axis=2)
    if big.any():
        y, x = np.argwhere(big)[0]
        raise ValueError(
            f"flow has {int(big.sum())} values beyond ±{FLO_UNKNOWN_THRESHOLD:g} (first at row {y}, column {x}: "
            f"{f[y, x].tolist()}), which .flo reads as unknown; mark such pixels with valid=False"
        )
    out = np.where(known[..., None], f, FLO_UNKNOWN).astype("<f4")
    header = _FLO_TAG_BYTES + np.array([w, h], dtype="<i4").tobytes()
    Path(path).write_bytes(header + out.tobytes())


# --------------------------------------------------------------------------------------------
# KITTI 16-bit PNG


def require_cv2(purpose: str = "KITTI flow PNGs (16-bit RGB) are read and written with OpenCV"):
    """The ``cv2`` module (extra ``flow``), or an ImportError starting with ``purpose`` that says how to install it."""
    try:
        import cv2
    except ImportError as e:  # pragma: no cover - optional extra
        raise ImportError(f"{purpose}: pip install 'perceiver-family[flow]' (or opencv-python-headless)") from e
    return cv2


def read_kitti_flow(path: PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read a KITTI flow PNG -> ``flow`` float32 ``(H, W, 2)`` px, ``valid`` bool ``(H, W)`` (flow 0 where invalid).

    Raises ``ValueError`` when the file is not a 16-bit 3-channel PNG.
    """
    cv2 = require_cv2()
    p = Path(path)
    data = np.frombuffer(p.read_bytes(), dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if img is None:
        raise ValueError(f"{p}: not a readable image ({data.size} bytes)")
    if img.dtype != np.uint16 or img.ndim != 3 or img.shape[2] != 3:
        channels = img.shape[2] if img.ndim == 3 else 1
        raise ValueError(
            f"{p}: not a KITTI flow PNG: expected 16-bit 3-channel (uint16, (H, W, 3)), got {img.dtype} with "
            f"{channels} channel(s), shape {img.shape}"
        )
    b, g, r = img[..., 0], img[..., 1], img[..., 2]  # OpenCV keeps BGR order
    valid = b > 0
    flow = (np.stack([r, g], axis=-1).astype(np.float32) - 2.0**15) / 64.0
    flow[~valid] = 0.0
    return flow, valid


def write_kitti_flow(path: PathLike, flow: Any, valid: Any = None) -> None:
    """Write ``flow (H, W, 2)`` px as a KITTI 16-bit PNG (values rounded to 1/64 px); ``valid (H, W)``
    defaults to the pixels with finite flow. Invalid pixels are written as zero flow with ``B = 0``.

    Raises ``ValueError`` for valid values outside :data:`KITTI_RANGE`.
    """
    cv2 = require_cv2()
    f = _as_flow(flow)
    h, w, _ = f.shape
    v = _as_valid(valid, (h, w))
    finite = np.isfinite(f).all(axis=2)
    v = finite if v is None else v
    if (v & ~finite).any():
        y, x = np.argwhere(v & ~finite)[0]
        raise ValueError(f"flow is not finite at valid pixel (row {y}, column {x}): {f[y, x].tolist()}")
    lo, hi = KITTI_RANGE
    out_of_range = v & ((f < lo) | (f > hi)).any(axis=2)
    if out_of_range.any():
        y, x = np.argwhere(out_of_range)[0]
        raise ValueError(
            f"flow has {int(out_of_range.sum())} valid pixels outside KITTI's range [{lo}, {hi:.4f}] px "
            f"(first at row {y}, column {x}: {f[y, x].tolist()})"
        )
    enc = np.where(v[..., None], np.round(f * 64.0 + 2.0**15), 2.0**15).astype(np.uint16)
    bgr = np.stack([v.astype(np.uint16), enc[..., 1], enc[..., 0]], axis=-1)
    ok, buf = cv2.imencode(".png", bgr)
    if not ok:  # pragma: no cover - OpenCV failure
        raise OSError(f"OpenCV could not encode the {h}x{w} flow as PNG")
    Path(path).write_bytes(buf.tobytes())


# --------------------------------------------------------------------------------------------
# by extension


def read_flow(path: PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read ``.flo`` (:func:`read_flo`) or ``.png`` (:func:`read_kitti_flow`) by the file's extension."""
    suffix = Path(path).suffix.lower()
    if suffix == ".flo":
        return read_flo(path)
    if suffix == ".png":
        return read_kitti_flow(path)
    raise ValueError(f"path: unknown flow file extension {suffix!r} of {os.fspath(path)!r}; expected .flo or .png")


def write_flow(path: PathLike, flow: Any, valid: Any = None) -> None:
    """Write ``.flo`` (:func:`write_flo`) or ``.png`` (:func:`write_kitti_flow`) by the path's extension."""
    suffix = Path(path).suffix.lower()
    if suffix == ".flo":
        return write_flo(path, flow, valid)
    if suffix == ".png":
        return write_kitti_flow(path, flow, valid)
    raise ValueError(f"path: unknown flow file extension {suffix!r} of {os.fspath(path)!r}; expected .flo or .png")
