"""Optical-flow metrics: end-point error, px1 / px3 / px5, Fl, under both averaging conventions.

Per pixel, ``EPE = ‖pred - target‖₂`` (px). Over a set of pixels:

* ``epe``: mean EPE;
* ``px1`` / ``px3`` / ``px5``: fraction of pixels with EPE < 1 / 3 / 5 px;
* ``fl``: fraction of outliers, EPE > 3 px **and** EPE > 5 % of ``‖target‖`` (KITTI's Fl; ×100 for
  the percentages KITTI tables report).

``epe_s{lo}-{hi}`` (and ``epe_s{hi}+`` for the last bin): mean EPE over the valid pixels whose true
speed ``‖target‖`` is in ``[lo, hi)`` px, Sintel's ``s0-10``, ``s10-40``, ``s40+`` for the default
``speed_bins=(10, 40)``.

All values are fractions, not percentages. Pixel sets ("regions"): ``all`` = valid pixels (keys
``epe``, ``px1``, ``px3``, ``px5``, ``fl_all``); when an occlusion mask is given, ``noc`` = valid and not
occluded (``epe_noc``, …, ``fl_noc``) and ``occ`` = valid and occluded (``epe_occ``, …, ``fl_occ``).

Two conventions of averaging over a data set:

* ``"pooled"``: every pixel of the whole set counts once (RAFT's Sintel EPE and KITTI Fl-all);
* ``"per_image"``: each metric is averaged over the pixels of each image, then over images
  (ptlflow; RAFT's KITTI EPE). Images without a pixel in a region are left out of that region's mean.

>>> m = FlowMetrics()
>>> m.update(pred, target, valid=valid, occluded=occluded)   # (B, 2, H, W), (B, 2, H, W), (B, H, W), (B, H, W)
>>> m.compute("pooled")["epe"], m.compute("per_image")["epe"]
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

__all__ = ["CONVENTIONS", "FlowMetrics", "endpoint_error", "flow_metrics", "psnr_from_mse"]


def psnr_from_mse(mse: float, peak: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB, ``10·log10(peak² / mse)`` (``inf`` for a zero error)."""
    return math.inf if mse == 0 else 10.0 * math.log10(peak**2 / mse)


CONVENTIONS: tuple[str, ...] = ("pooled", "per_image")
_THRESHOLDS = (1.0, 3.0, 5.0)
_REGIONS = ("all", "noc", "occ")
# per-image sums kept for each region: pixel count, sum of EPE, count EPE < 1, < 3, < 5, count of Fl outliers
_COLUMNS = ("count", "epe", "px1", "px3", "px5", "fl")


def _as_tensor(x: Any, name: str) -> Tensor:
    if isinstance(x, Tensor):
        return x
    try:
        return torch.as_tensor(x)
    except (TypeError, ValueError, RuntimeError) as e:
        raise TypeError(f"{name} must be a tensor or an array, got {type(x).__name__}") from e


def _check_flow_pair(pred: Any, target: Any) -> tuple[Tensor, Tensor]:
    pred, target = _as_tensor(pred, "pred"), _as_tensor(target, "target")
    for name, t in (("pred", pred), ("target", target)):
        if not t.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got dtype {t.dtype}")
        if t.dim() not in (3, 4) or t.shape[-3] != 2:
            raise ValueError(f"{name} must have shape (B, 2, H, W) or (2, H, W), got {tuple(t.shape)}")
    if pred.shape != target.shape:
        raise ValueError(f"pred and target must have the same shape, got {tuple(pred.shape)} and {tuple(target.shape)}")
    if pred.dim() == 3:
        pred, target = pred[None], target[None]
    return pred, target.to(pred.device)


def _check_mask(mask: Any, name: str, shape: torch.Size, device: torch.device) -> Tensor | None:
    """``(B, H, W)`` (or ``(H, W)`` for a single image) bool, or 0/1 numbers (>= 0.5 is True) -> bool."""
    if mask is None:
        return None
    m = _as_tensor(mask, name)
    if m.dim() == 2 and shape[0] == 1:
        m = m[None]
    if tuple(m.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape (B, H, W) = {tuple(shape)}, got {tuple(m.shape)}")
    if m.dtype != torch.bool:
        if m.is_complex():
            raise TypeError(f"{name} must be bool (or 0/1 numbers), got dtype {m.dtype}")
        m = m >= 0.5
    return m.to(device)


def endpoint_error(pred: Tensor, target: Tensor) -> Tensor:
    """End-point error per pixel, ``‖pred - target‖₂``.

    ``(B, 2, H, W)`` -> ``(B, H, W)``; a single image ``(2, H, W)`` -> ``(H, W)``.
    """
    p, t = _check_flow_pair(pred, target)
    epe = torch.linalg.vector_norm(p - t, dim=1)
    return epe[0] if _as_tensor(pred, "pred").dim() == 3 else epe


def _image_sums(epe: Tensor, mag: Tensor, region: Tensor) -> Tensor:
    """Per-image sums ``(B, 6)`` float64 (see ``_COLUMNS``) of the pixels where ``region (B, H, W)`` is True."""
    r = region.flatten(1)
    e = epe.flatten(1).double()
    m = mag.flatten(1).double()
    cols = [r.sum(1).double(), torch.where(r, e, 0.0).sum(1)]
    cols += [(r & (e < th)).sum(1).double() for th in _THRESHOLDS]
    cols.append((r & (e > 3.0) & (e > 0.05 * m)).sum(1).double())
    return torch.stack(cols, dim=1).cpu()


class FlowMetrics:
    """Accumulates flow metrics over batches; :meth:`compute` averages them by either convention.

    ``update(pred, target, valid=None, occluded=None)``: ``pred``, ``target`` ``(B, 2, H, W)`` px
    (or ``(2, H, W)``), ``valid`` / ``occluded`` ``(B, H, W)`` bool (or 0/1; default all valid, no
    occlusion mask). Sums are kept per image in float64, so batches of any size and image sizes mix.
    ``speed_bins``: increasing edges (px) of the true-speed bins of the ``epe_s…`` keys.
    """

    def __init__(self, speed_bins: Sequence[float] = (10.0, 40.0)) -> None:
        edges = tuple(float(b) for b in speed_bins)
        if any(not b > 0 for b in edges) or any(a >= b for a, b in itertools.pairwise(edges)):
            raise ValueError(f"speed_bins must be increasing positive speeds in px, got {tuple(speed_bins)!r}")
        self.speed_bins = edges
        self.reset()

    @property
    def speed_keys(self) -> list[str]:
        """The keys of the speed bins: ``["epe_s0-10", "epe_s10-40", "epe_s40+"]`` for edges (10, 40)."""
        edges = ["0", *(f"{b:g}" for b in self.speed_bins)]
        return [f"epe_s{lo}-{hi}" for lo, hi in itertools.pairwise(edges)] + [f"epe_s{edges[-1]}+"]

    def reset(self) -> None:
        """Forget every image seen."""
        self._rows: dict[str, list[Tensor]] = {r: [] for r in _REGIONS}
        self._has_occlusion: list[Tensor] = []
        self._speed: list[Tensor] = []  # (B, bins, 2) float64: pixel count, sum of EPE

    @property
    def num_images(self) -> int:
        return sum(int(t.shape[0]) for t in self._rows["all"])

    @torch.no_grad()
    def update(self, pred: Tensor, target: Tensor, valid: Tensor | None = None, occluded: Tensor | None = None) -> None:
        """Add a batch of predictions ``(B, 2, H, W)`` against targets ``(B, 2, H, W)`` (see the class doc)."""
        p, t = _check_flow_pair(pred, target)
        shape = torch.Size((p.shape[0], p.shape[2], p.shape[3]))
        v = _check_mask(valid, "valid", shape, p.device)
        occ = _check_mask(occluded, "occluded", shape, p.device)
        if v is None:
            v = torch.ones(shape, dtype=torch.bool, device=p.device)
        for name, x in (("pred", p), ("target", t)):
            bad = v & ~torch.isfinite(x).all(dim=1)
            if bad.any():
                b, y, xx = (int(i) for i in bad.nonzero()[0])
                raise ValueError(
                    f"{name} is not finite at {int(bad.sum())} valid pixels (first: image {b}, row {y}, column {xx}); "
                    "mark them invalid with valid=..."
                )
        epe = torch.linalg.vector_norm((p - t).float(), dim=1)
        mag = torch.linalg.vector_norm(t.float(), dim=1)
        self._rows["all"].append(_image_sums(epe, mag, v))
        bins = torch.bucketize(mag, torch.tensor(self.speed_bins, device=mag.device), right=True)  # (B, H, W)
        in_bin = v[:, None] & (
            bins[:, None] == torch.arange(len(self.speed_bins) + 1, device=mag.device)[:, None, None]
        )
        e = torch.where(in_bin, epe[:, None].double(), 0.0).flatten(2).sum(2)
        self._speed.append(torch.stack([in_bin.flatten(2).sum(2).double(), e], dim=-1).cpu())
        if occ is None:
            empty = torch.zeros(shape[0], len(_COLUMNS), dtype=torch.float64)
            self._rows["noc"].append(empty)
            self._rows["occ"].append(empty.clone())
            self._has_occlusion.append(torch.zeros(shape[0], dtype=torch.bool))
        else:
            self._rows["noc"].append(_image_sums(epe, mag, v & ~occ))
            self._rows["occ"].append(_image_sums(epe, mag, v & occ))
            self._has_occlusion.append(torch.ones(shape[0], dtype=torch.bool))

    def per_image(self, region: str = "all") -> dict[str, Tensor]:
        """Each image's metrics over ``region`` (``"all"``, ``"noc"``, ``"occ"``): name -> float64 ``(N,)``
        (NaN for images without a pixel in the region); plus ``"count"``, the pixels per image."""
        if region not in _REGIONS:
            raise ValueError(f"region must be one of {_REGIONS}, got {region!r}")
        if not self._rows[region]:
            return {c: torch.zeros(0, dtype=torch.float64) for c in _COLUMNS}
        rows = torch.cat(self._rows[region])
        count = rows[:, 0]
        out = {"count": count}
        for k, c in enumerate(_COLUMNS[1:], start=1):
            out[c] = torch.where(count > 0, rows[:, k] / count.clamp_min(1), math.nan)
        return out

    def compute(self, convention: str = "pooled") -> dict[str, float]:
        """The metrics (see the module doc) over every image seen, averaged by ``convention``
        (``"pooled"`` or ``"per_image"``); NaN where no pixel counted. Also ``images`` and the pixel
        counts ``pixels`` (``pixels_noc``, ``pixels_occ``); the ``_noc`` / ``_occ`` keys only when some
        update had an occlusion mask (computed over those images)."""
        if convention not in CONVENTIONS:
            raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
        out: dict[str, float] = {"images": float(self.num_images)}
        has_occ = torch.cat(self._has_occlusion) if self._has_occlusion else torch.zeros(0, dtype=torch.bool)
        for region in _REGIONS:
            if region != "all" and not bool(has_occ.any()):
                continue
            rows = torch.cat(self._rows[region]) if self._rows[region] else torch.zeros(0, len(_COLUMNS))
            if region != "all":
                rows = rows[has_occ]
            suffix = "" if region == "all" else f"_{region}"
            count = rows[:, 0]
            out[f"pixels{suffix}"] = float(count.sum())
            if convention == "pooled":
                total = rows.sum(0)
                vals = (total[1:] / total[0]).tolist() if total[0] > 0 else [math.nan] * (len(_COLUMNS) - 1)
            else:
                keep = count > 0
                vals = (
                    (rows[keep, 1:] / count[keep, None]).mean(0).tolist()
                    if bool(keep.any())
                    else [math.nan] * (len(_COLUMNS) - 1)
                )
            for c, val in zip(_COLUMNS[1:], vals, strict=True):
                key = ("fl_all" if region == "all" else f"fl_{region}") if c == "fl" else f"{c}{suffix}"
                out[key] = float(val)
        speed = torch.cat(self._speed) if self._speed else torch.zeros(0, len(self.speed_keys), 2, dtype=torch.float64)
        for k, key in enumerate(self.speed_keys):
            count, total = speed[:, k, 0], speed[:, k, 1]
            if convention == "pooled":
                out[key] = float(total.sum() / count.sum()) if count.sum() > 0 else math.nan
            else:
                keep = count > 0
                out[key] = float((total[keep] / count[keep]).mean()) if bool(keep.any()) else math.nan
        return out


def flow_metrics(
    pred: Tensor,
    target: Tensor,
    valid: Tensor | None = None,
    occluded: Tensor | None = None,
    convention: str = "pooled",
    speed_bins: Sequence[float] = (10.0, 40.0),
) -> dict[str, float]:
    """The metrics of one batch (see :class:`FlowMetrics`): ``pred``, ``target`` ``(B, 2, H, W)``."""
    m = FlowMetrics(speed_bins)
    m.update(pred, target, valid=valid, occluded=occluded)
    return m.compute(convention)
