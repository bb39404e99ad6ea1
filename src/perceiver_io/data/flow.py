"""Procedural optical-flow pairs with exact ground truth (AutoFlow in spirit).

A scene is a textured background and several foreground layers, back to front. Each foreground
layer is a random shape (polygon, smooth blob, or a digit / garment silhouette from an image data
set) filled with a texture (procedural: multi-scale noise, stripes, checker; or cut from images),
and every layer moves with its own invertible motion ``T`` (frame-1 coordinates -> frame-2
coordinates)::

    T(p) = c + A (p - c + w(p)) + t      A = s·R(θ) (rotation + scale about the centre c),
                                         t a translation, w a smooth small non-rigid warp

Frame 1 shows each layer at identity; frame 2 samples each layer at ``T⁻¹(x)`` (affine part inverted
in closed form, the warp by fixed-point iteration, which converges because ``w`` is a contraction:
its Lipschitz constant is kept below ``max_warp`` < 1). So the ground truth is exact by construction:

* ``flow(p) = T_k(p) - p`` for the front-most layer ``k`` covering pixel ``p`` of frame 1;
* ``occluded(p)`` when ``T_k(p)`` leaves the image (``x ∉ [0, W-1]`` or ``y ∉ [0, H-1]``: outside the
  pixel centres, where bilinear sampling of frame 2 is defined) or a nearer layer covers it in
  frame 2. Coverage is evaluated at the continuous point ``T_k(p)``, not at a rounded pixel.

Coordinates are pixels, ``x`` right and ``y`` down, pixel ``(i, j)`` at ``(x, y) = (j, i)``; flow
channels are ``(u, v) = (Δx, Δy)``. A layer's shape is the 0.5 level set of its alpha canvas (bilinearly
interpolated); with ``antialias`` the alpha ramps over about one pixel across the boundary (frame
colours blend there, the flow and occlusion decisions stay hard). Photometric changes (brightness /
colour gain, blur, noise), applied after rendering, are switchable.

>>> from perceiver_io.data.flow import FlowPairs
>>> data = FlowPairs("train", size=(128, 128))
>>> s = data[0]   # frame1, frame2 (3, H, W) in [0, 1]; flow (2, H, W) px; occluded (H, W) bool
>>> frames = torch.stack([s["frame1"], s["frame2"]]) * 2 - 1   # the flow model's (2, 3, H, W) in [-1, 1]

Speed on one CPU thread: ``python bench/flow_data_speed.py``.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

__all__ = [
    "FlowLayer",
    "FlowPairs",
    "FlowSceneConfig",
    "LayerMotion",
    "SmoothWarp",
    "TEXTURE_FAMILIES",
    "SHAPES",
    "load_image_pool",
    "make_rng",
    "render_layers",
    "render_flow_pair",
    "sample_scene",
    "split_indices",
]

#: Procedural texture families; ``"image"`` (cut from an image pool) is added when a pool is given.
TEXTURE_FAMILIES: tuple[str, ...] = ("noise", "stripes", "checker")
#: Foreground shapes; ``"silhouette"`` needs a silhouette pool.
SHAPES: tuple[str, ...] = ("polygon", "blob", "silhouette")
SPLITS: tuple[str, ...] = ("train", "valid", "test")
#: Pair ``i`` of a split is seeded by the key ``(SPLIT_KEY[split], seed, i)``: the splits' keys never meet.
SPLIT_KEY: dict[str, int] = {"train": 0, "valid": 1, "test": 2}
_DEFAULT_LENGTH = {"train": 100_000, "valid": 1_000, "test": 1_000}
_IMAGE_SETS = ("fashion-mnist", "mnist")


# --------------------------------------------------------------------------------------------
# motions


class SmoothWarp:
    """A smooth displacement ``w(p) = R · Σ_k a_k sin(ω_k · (p - c) / R + φ_k)``, ``p (N, 2)`` -> ``(N, 2)`` px.

    ``amplitudes (K, 2)``, ``frequencies (K, 2)``, ``phases (K,)``; ``radius`` R (px) sets the spatial
    scale. Its Lipschitz constant is at most ``Σ_k |a_k| |ω_k|`` (:attr:`lipschitz`) and its size at
    most ``R Σ_k |a_k|`` (:attr:`max_displacement`).
    """

    def __init__(
        self, center: Sequence[float], radius: float, amplitudes: Tensor, frequencies: Tensor, phases: Tensor
    ) -> None:
        self.center = torch.as_tensor(center, dtype=torch.float32).reshape(2)
        self.radius = float(radius)
        self.amplitudes = torch.as_tensor(amplitudes, dtype=torch.float32).reshape(-1, 2)
        self.frequencies = torch.as_tensor(frequencies, dtype=torch.float32).reshape(-1, 2)
        self.phases = torch.as_tensor(phases, dtype=torch.float32).reshape(-1)
        k = self.amplitudes.shape[0]
        if self.frequencies.shape[0] != k or self.phases.shape[0] != k:
            raise ValueError(
                f"amplitudes, frequencies and phases must have the same number of terms, got "
                f"{k}, {self.frequencies.shape[0]}, {self.phases.shape[0]}"
            )
        if not self.radius > 0:
            raise ValueError(f"radius must be positive, got {radius}")
        # channels-first form (points (2, N)), about 5x faster than (N, 2) for K = 3 on one thread
        self._freq = (self.frequencies / self.radius).contiguous()  # (K, 2)
        self._phase = (self.phases - self._freq @ self.center)[:, None].contiguous()  # (K, 1)
        self._amp = (self.amplitudes.T * self.radius).contiguous()  # (2, K)

    @property
    def lipschitz(self) -> float:
        return float((self.amplitudes.norm(dim=1) * self.frequencies.norm(dim=1)).sum())

    @property
    def max_displacement(self) -> float:
        return self.radius * float(self.amplitudes.norm(dim=1).sum())

    def __call__(self, p: Tensor) -> Tensor:
        """``w(p)`` for points ``(N, 2)`` -> ``(N, 2)``."""
        return self.channels_first(p.T.contiguous()).T

    def channels_first(self, pt: Tensor) -> Tensor:
        """``w`` for points ``(2, N)`` -> ``(2, N)``."""
        return self._amp @ torch.sin_(torch.addmm(self._phase, self._freq, pt))


class LayerMotion:
    """An invertible motion ``T(p) = c + A (p - c + w(p)) + t`` of one layer, frame 1 -> frame 2 (px).

    ``center`` c ``(2,)``, ``linear`` A ``(2, 2)`` (invertible), ``shift`` t ``(2,)``, ``warp`` w (a
    :class:`SmoothWarp` with Lipschitz constant < 1, or ``None``). Points are ``(..., 2)`` as ``(x, y)``.
    """

    def __init__(
        self,
        center: Sequence[float] | Tensor = (0.0, 0.0),
        linear: Tensor | Sequence[Sequence[float]] | None = None,
        shift: Sequence[float] | Tensor = (0.0, 0.0),
        warp: SmoothWarp | None = None,
        tolerance: float = 1e-4,
    ) -> None:
        self.center = torch.as_tensor(center, dtype=torch.float32).reshape(2)
        self.linear = torch.eye(2) if linear is None else torch.as_tensor(linear, dtype=torch.float32).reshape(2, 2)
        self.shift = torch.as_tensor(shift, dtype=torch.float32).reshape(2)
        det = float(torch.linalg.det(self.linear.double()))
        if not abs(det) > 1e-6:
            raise ValueError(f"linear must be invertible, got determinant {det:g}")
        self.linear_inv = torch.linalg.inv(self.linear.double()).float()
        if warp is not None and not warp.lipschitz < 0.9:
            raise ValueError(f"warp must be a contraction to stay invertible: Lipschitz {warp.lipschitz:.3f} >= 0.9")
        self.warp = warp if warp is not None and warp.max_displacement > 0 else None
        self.tolerance = float(tolerance)

    @classmethod
    def translation(cls, dx: float, dy: float) -> LayerMotion:
        """A pure translation by ``(dx, dy)`` px."""
        return cls(shift=(dx, dy))

    @property
    def inverse_iterations(self) -> int:
        """Fixed-point iterations that bring the warp's inversion error under ``tolerance`` px."""
        if self.warp is None:
            return 0
        lip, size = self.warp.lipschitz, self.warp.max_displacement
        if lip <= 0 or size <= self.tolerance:
            return 1
        return min(100, max(1, math.ceil(math.log(self.tolerance / size) / math.log(lip)) + 1))

    def forward(self, p: Tensor) -> Tensor:
        """``T(p)``: frame-1 points ``(..., 2)`` -> frame-2 points ``(..., 2)``."""
        pt = p.reshape(-1, 2).T.contiguous()  # (2, N)
        q = pt - self.center[:, None]
        if self.warp is not None:
            q = q + self.warp.channels_first(pt)
        return torch.addmm((self.center + self.shift)[:, None], self.linear, q).T.reshape(p.shape)

    def inverse(self, x: Tensor) -> Tensor:
        """``T⁻¹(x)``: frame-2 points ``(..., 2)`` -> frame-1 points (warp inverted to ``tolerance`` px)."""
        xt = x.reshape(-1, 2).T - (self.center + self.shift)[:, None]
        target = torch.addmm(self.center[:, None], self.linear_inv, xt)  # c + (p - c + w(p)) = p + w(p)
        p = target
        if self.warp is not None:
            for _ in range(self.inverse_iterations):
                p = target - self.warp.channels_first(p)
        return p.T.reshape(x.shape)

    def displacement_bound(self, radius: float) -> float:
        """An upper bound of ``|T(p) - p|`` (px) over ``|p - c| <= radius``."""
        a_minus_i = float(torch.linalg.matrix_norm(self.linear - torch.eye(2), ord=2))
        a = float(torch.linalg.matrix_norm(self.linear, ord=2))
        warp = self.warp.max_displacement if self.warp is not None else 0.0
        return a_minus_i * radius + a * warp + float(self.shift.norm())


# --------------------------------------------------------------------------------------------
# layers and rendering


@dataclass
class FlowLayer:
    """One layer: ``texture (3, h, w)`` in [0, 1] and ``alpha (h, w)`` in [0, 1] (``None``: opaque) on a
    canvas whose pixel ``(0, 0)`` sits at frame-1 point ``origin = (x0, y0)`` (integers), moving by ``motion``.

    The layer covers a point where its bilinearly interpolated alpha exceeds 0.5. Outside the canvas
    alpha is 0 and an opaque layer's texture repeats its border.
    """

    texture: Tensor
    alpha: Tensor | None
    origin: tuple[int, int]
    motion: LayerMotion
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.texture.dim() != 3 or self.texture.shape[0] != 3 or min(self.texture.shape[1:]) < 2:
            raise ValueError(f"texture must have shape (3, h, w) with h, w >= 2, got {tuple(self.texture.shape)}")
        if self.alpha is not None and self.alpha.shape != self.texture.shape[1:]:
            raise ValueError(
                f"alpha must have the texture's shape {tuple(self.texture.shape[1:])}, got {tuple(self.alpha.shape)}"
            )
        self.origin = (int(self.origin[0]), int(self.origin[1]))

    @property
    def canvas_size(self) -> tuple[int, int]:
        return int(self.texture.shape[1]), int(self.texture.shape[2])

    def sample(self, points: Tensor, alpha_only: bool = False) -> Tensor:
        """Bilinear samples at frame-1 points ``(N, 2)`` -> ``(4, N)`` (RGB, alpha) or ``(1, N)`` (alpha)."""
        h, w = self.canvas_size
        scale = torch.tensor([2.0 / (w - 1), 2.0 / (h - 1)])
        grid = ((points - torch.tensor(self.origin, dtype=torch.float32)) * scale - 1.0).reshape(1, 1, -1, 2)
        if self.alpha is None:
            if alpha_only:
                return torch.ones(1, points.shape[0])
            rgb = F.grid_sample(self.texture[None], grid, mode="bilinear", padding_mode="border", align_corners=True)
            return torch.cat([rgb[0, :, 0], torch.ones(1, points.shape[0])])
        canvas = self.alpha[None, None] if alpha_only else torch.cat([self.texture, self.alpha[None]])[None]
        return F.grid_sample(canvas, grid, mode="bilinear", padding_mode="zeros", align_corners=True)[0, :, 0]

    def frame2_box(self, size: tuple[int, int]) -> tuple[int, int, int, int] | None:
        """Pixel box ``(y0, y1, x0, x1)`` (inclusive) of frame 2 that can show this layer; ``None`` if none."""
        h, w = size
        if self.alpha is None:
            return 0, h - 1, 0, w - 1
        ch, cw = self.canvas_size
        x0, y0 = self.origin
        corners = torch.tensor([[x0, y0], [x0 + cw - 1, y0], [x0, y0 + ch - 1], [x0 + cw - 1, y0 + ch - 1]]).float()
        m = self.motion
        moved = m.center + (corners - m.center) @ m.linear.T + m.shift
        pad = 1.0
        if m.warp is not None:
            pad += float(torch.linalg.matrix_norm(m.linear, ord=2)) * m.warp.max_displacement
        lo, hi = moved.min(0).values - pad, moved.max(0).values + pad
        bx0, by0 = max(0, math.floor(lo[0])), max(0, math.floor(lo[1]))
        bx1, by1 = min(w - 1, math.ceil(hi[0])), min(h - 1, math.ceil(hi[1]))
        if bx0 > bx1 or by0 > by1:
            return None
        return by0, by1, bx0, bx1


def _pixel_grid(y0: int, y1: int, x0: int, x1: int) -> Tensor:
    """Points ``(N, 2)`` ``(x, y)`` of the pixel box rows y0..y1, columns x0..x1 (inclusive), row-major."""
    ys = torch.arange(y0, y1 + 1, dtype=torch.float32)
    xs = torch.arange(x0, x1 + 1, dtype=torch.float32)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=1)


def render_layers(
    layers: Sequence[FlowLayer], size: tuple[int, int], antialias: bool = True, return_layers: bool = False
) -> dict[str, Tensor]:
    """Composite ``layers`` (back to front; the first must be opaque and cover the image) into a pair.

    Returns ``frame1``, ``frame2`` ``(3, H, W)`` float, ``flow (2, H, W)`` px (exact: ``T_k(p) - p`` of
    the front-most layer ``k`` at ``p``), ``occluded (H, W)`` bool, ``flow_backward (2, H, W)`` px (exact:
    ``T_k⁻¹(x) - x`` of the front-most layer ``k`` at ``x`` in frame 2; the pair reversed); with ``return_layers`` also
    ``layers1`` / ``layers2 (H, W)`` uint8, the front-most layer index per pixel in each frame.
    ``antialias=False`` composites with hard 0/1 alpha (alpha > 0.5).
    """
    h, w = (int(v) for v in size)
    if not layers or layers[0].alpha is not None:
        raise ValueError("layers[0] must be an opaque background layer (alpha=None)")
    if len(layers) > 255:
        raise ValueError(f"at most 255 layers, got {len(layers)}")
    frame1 = torch.zeros(3, h, w)
    frame2 = torch.zeros(3, h, w)
    front1 = torch.zeros(h, w, dtype=torch.uint8)
    front2 = torch.zeros(h, w, dtype=torch.uint8)

    def hard(a: Tensor) -> Tensor:
        return a if antialias else (a > 0.5).float()

    # frame 1: every canvas is aligned with the pixel grid (integer origin): paste
    for k, layer in enumerate(layers):
        x0, y0 = layer.origin
        ch, cw = layer.canvas_size
        ix0, iy0, ix1, iy1 = max(0, x0), max(0, y0), min(w, x0 + cw), min(h, y0 + ch)
        if k == 0:
            if ix0 > 0 or iy0 > 0 or ix1 < w or iy1 < h:
                raise ValueError(f"the background canvas (origin {layer.origin}, size {ch}x{cw}) must cover the image")
        if ix0 >= ix1 or iy0 >= iy1:
            continue
        tex = layer.texture[:, iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0]
        if layer.alpha is None:
            frame1[:, iy0:iy1, ix0:ix1] = tex
            continue
        a = layer.alpha[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0]
        region = frame1[:, iy0:iy1, ix0:ix1]
        frame1[:, iy0:iy1, ix0:ix1] = region + (tex - region) * hard(a)
        front1[iy0:iy1, ix0:ix1][a > 0.5] = k

    # frame 2: each layer sampled at T^-1(x), only inside the box of frame 2 it can reach;
    # the backward flow T_k^-1(x) - x of the front-most layer k at x comes with it
    boxes = [layer.frame2_box((h, w)) for layer in layers]
    backward = torch.zeros(h, w, 2)
    for k, (layer, box) in enumerate(zip(layers, boxes, strict=True)):
        if box is None:
            continue
        by0, by1, bx0, bx1 = box
        bh, bw = by1 - by0 + 1, bx1 - bx0 + 1
        pts = _pixel_grid(by0, by1, bx0, bx1)
        source = layer.motion.inverse(pts)
        s = layer.sample(source).reshape(4, bh, bw)
        region = frame2[:, by0 : by1 + 1, bx0 : bx1 + 1]
        frame2[:, by0 : by1 + 1, bx0 : bx1 + 1] = region + (s[:3] - region) * hard(s[3])
        front = s[3] > 0.5
        front2[by0 : by1 + 1, bx0 : bx1 + 1][front] = k
        backward[by0 : by1 + 1, bx0 : bx1 + 1][front] = (source - pts).reshape(bh, bw, 2)[front]

    # flow: T_k(p) - p of the front-most layer k of frame 1 (the background's everywhere, then each object's box)
    grid = _pixel_grid(0, h - 1, 0, w - 1).reshape(h, w, 2)
    flow = layers[0].motion.forward(grid) - grid
    for k, layer in enumerate(layers[1:], start=1):
        x0, y0 = layer.origin
        ch, cw = layer.canvas_size
        ix0, iy0, ix1, iy1 = max(0, x0), max(0, y0), min(w, x0 + cw), min(h, y0 + ch)
        if ix0 >= ix1 or iy0 >= iy1:
            continue
        sel = front1[iy0:iy1, ix0:ix1] == k
        if sel.any():
            p = grid[iy0:iy1, ix0:ix1][sel]
            flow[iy0:iy1, ix0:ix1][sel] = layer.motion.forward(p) - p
    target = grid + flow
    occluded = (target[..., 0] < 0) | (target[..., 0] > w - 1) | (target[..., 1] < 0) | (target[..., 1] > h - 1)
    # covered in frame 2 by a nearer layer j > k, tested at the continuous point T_k(p)
    tx, ty = target[..., 0], target[..., 1]
    for j in range(1, len(layers)):
        box = boxes[j]
        if box is None:
            continue
        by0, by1, bx0, bx1 = box
        cand = (front1 < j) & ~occluded & (tx >= bx0 - 1) & (tx <= bx1 + 1) & (ty >= by0 - 1) & (ty <= by1 + 1)
        if cand.any():
            a = layers[j].sample(layers[j].motion.inverse(target[cand]), alpha_only=True)[0]
            occluded[cand] = a > 0.5  # cand holds no occluded pixel yet
    out = {
        "frame1": frame1.clamp_(0, 1),
        "frame2": frame2.clamp_(0, 1),
        "flow": flow.permute(2, 0, 1).contiguous(),
        "occluded": occluded,
        "flow_backward": backward.permute(2, 0, 1).contiguous(),
    }
    if return_layers:
        out["layers1"] = front1
        out["layers2"] = front2
    return out


# --------------------------------------------------------------------------------------------
# random scenes


@dataclass(frozen=True)
class FlowSceneConfig:
    """The random scene distribution (sizes in pixels, angles in radians).

    ``num_layers``: foreground layers, inclusive range. ``max_motion``: bound on ``|flow|`` of every
    pixel (default ``0.125 · min(H, W)``). Each layer's translation magnitude is uniform in
    ``[0, max_motion]`` (background: ``background_motion ×`` that); rotation uniform in ``±max_rotation``,
    log-scale in ``±max_scale``; with probability ``warp_probability`` a smooth non-rigid warp of
    Lipschitz constant up to ``max_warp`` (< 1: invertible); all shrunk together when their bound exceeds
    ``max_motion``. Object radii are ``object_size × min(H, W)``. Photometric changes (when
    ``photometric``): frame-2 gain ``1 ± brightness`` (per channel ``± brightness/3``) and offset
    ``± brightness/2``; each frame blurred with probability ``blur_probability`` (Gaussian σ up to
    ``blur``) and given Gaussian noise of σ up to ``noise``. ``shapes`` (of :data:`SHAPES`) and
    ``texture_families`` (of :data:`TEXTURE_FAMILIES` and ``"image"``) are drawn uniformly from the
    ones available (``"silhouette"`` / ``"image"`` need their pools; without them the others are
    used). ``texture_detail``: range of the finest lattice spacing (px) of the ``"noise"`` textures;
    smaller is more detail, so more of each pixel's motion shows in its own neighbourhood.
    ``antialias``: alpha ramps over about a pixel at layer edges (else hard 0/1 compositing).
    """

    size: tuple[int, int] = (128, 128)
    num_layers: tuple[int, int] = (2, 5)
    max_motion: float | None = None
    background_motion: float = 0.5
    max_rotation: float = 0.3
    max_scale: float = 0.15
    warp_probability: float = 0.5
    max_warp: float = 0.3
    object_size: tuple[float, float] = (0.08, 0.35)
    shapes: tuple[str, ...] = SHAPES
    texture_families: tuple[str, ...] = (*TEXTURE_FAMILIES, "image")
    texture_detail: tuple[float, float] = (4.0, 8.0)
    photometric: bool = True
    brightness: float = 0.1
    blur: float = 1.0
    blur_probability: float = 0.3
    noise: float = 0.02
    antialias: bool = True

    def __post_init__(self) -> None:
        h, w = self.size
        if not (isinstance(h, int) and isinstance(w, int) and h >= 2 and w >= 2):
            raise ValueError(f"size must be two integers >= 2, got {self.size!r}")
        lo, hi = self.num_layers
        if not 0 <= lo <= hi:
            raise ValueError(f"num_layers must be a range (lo, hi) with 0 <= lo <= hi, got {self.num_layers!r}")
        if self.max_motion is not None and not self.max_motion >= 0:
            raise ValueError(f"max_motion must be >= 0 pixels (or None), got {self.max_motion!r}")
        if not 0 <= self.max_warp < 0.9:
            raise ValueError(f"max_warp must be in [0, 0.9) to keep the warp invertible, got {self.max_warp!r}")
        bad = [s for s in self.shapes if s not in SHAPES]
        if bad or not self.shapes:
            raise ValueError(f"shapes must be a non-empty subset of {SHAPES}, got {self.shapes!r}")
        bad = [t for t in self.texture_families if t not in (*TEXTURE_FAMILIES, "image")]
        if bad or not self.texture_families:
            raise ValueError(
                f"texture_families must be a non-empty subset of {(*TEXTURE_FAMILIES, 'image')}, "
                f"got {self.texture_families!r}"
            )
        a, b = self.texture_detail
        if not 1.0 <= a <= b:
            raise ValueError(f"texture_detail must be a range (lo, hi) with 1 <= lo <= hi px, got {(a, b)!r}")
        a, b = self.object_size
        if not 0 < a <= b:
            raise ValueError(f"object_size must be a range (lo, hi) with 0 < lo <= hi, got {self.object_size!r}")

    @property
    def motion_bound(self) -> float:
        return 0.125 * min(self.size) if self.max_motion is None else float(self.max_motion)


Rng = np.random.Generator


def make_rng(key: int | Sequence[int] | np.random.Generator) -> np.random.Generator:
    """The random generator of a scene: numpy PCG64 seeded by ``SeedSequence(key)`` (an int or a
    sequence of non-negative ints), or ``key`` itself when it is a generator.

    Not ``torch.Generator``: its CPU ``manual_seed`` keeps only the low 32 bits of a seed.
    """
    if isinstance(key, np.random.Generator):
        return key
    entropy = [int(key)] if isinstance(key, (int, np.integer)) else [int(k) for k in key]
    if not entropy or min(entropy) < 0:
        raise ValueError(f"seed must be a non-negative int or a non-empty sequence of them, got {key!r}")
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(entropy)))


def _u(g: Rng, lo: float = 0.0, hi: float = 1.0) -> float:
    return lo + (hi - lo) * float(g.random())


def _randint(g: Rng, lo: int, hi: int) -> int:
    """Uniform integer in ``[lo, hi]`` (inclusive)."""
    return int(g.integers(lo, hi + 1))


def _rand(g: Rng, *shape: int) -> Tensor:
    """Uniform [0, 1) float32 tensor of ``shape``."""
    return torch.from_numpy(g.random(shape, dtype=np.float32))


def _randn(g: Rng, *shape: int) -> Tensor:
    """Standard normal float32 tensor of ``shape``; large ones drawn by torch (~3x faster than numpy)
    from a seed drawn from ``g``."""
    if math.prod(shape) >= 1 << 16:
        return torch.randn(shape, generator=torch.Generator().manual_seed(int(g.integers(1 << 62))))
    return torch.from_numpy(g.standard_normal(shape, dtype=np.float32))


# ---- textures


def _fractal_noise(
    channels: int, h: int, w: int, scale: float, g: Rng, finest_range: tuple[float, float] = (4.0, 8.0)
) -> Tensor:
    """Multi-scale value noise ``(channels, h, w)``, standardised per channel.

    Octaves of random lattices whose spacing halves from about ``U(0.2, 0.6) · scale`` px down to the
    finest ``U(*finest_range)`` px, amplitudes falling by a random persistence per octave. Built as a pyramid:
    the running sum is upsampled ×2 (bicubic) and the next lattice added, then one final bicubic
    upsampling to pixels; so the cost is about that of the last upsampling.
    """
    finest = _u(g, *finest_range)
    top = max(8.0, _u(g, 0.2, 0.6) * scale)
    octaves = max(1, math.floor(math.log2(top / finest)) + 1)
    persistence = _u(g, 0.35, 0.7)
    # lattice sizes nest exactly under align_corners=True: size_k = 2 (size_{k+1} - 1) + 1
    need_h, need_w = math.ceil(h / finest) + 2, math.ceil(w / finest) + 2
    step = 1 << (octaves - 1)
    ch, cw = math.ceil((need_h - 1) / step) + 1, math.ceil((need_w - 1) / step) + 1
    x = _randn(g, 1, channels, ch, cw)
    amp = 1.0
    for _ in range(octaves - 1):
        ch, cw = 2 * (ch - 1) + 1, 2 * (cw - 1) + 1
        amp *= persistence
        x = F.interpolate(x, size=(ch, cw), mode="bicubic", align_corners=True)
        x = x + amp * _randn(g, 1, channels, ch, cw)
    oh, ow = round((ch - 1) * finest) + 1, round((cw - 1) * finest) + 1
    x = F.interpolate(x, size=(oh, ow), mode="bicubic", align_corners=True)[0]
    oy, ox = _randint(g, 0, oh - h), _randint(g, 0, ow - w)
    out = x[:, oy : oy + h, ox : ox + w]
    return (out - out.mean((1, 2), keepdim=True)) / out.std((1, 2), keepdim=True).clamp_min(1e-6)


def _colourise(z: Tensor, g: Rng) -> Tensor:
    """Standardised fields ``(C, h, w)`` -> RGB ``(3, h, w)`` in (0, 1): random colour mix, then a sigmoid."""
    mix = _randn(g, 3, z.shape[0])
    mix = mix / mix.norm(dim=1, keepdim=True).clamp_min(1e-6)
    mean = torch.logit(_rand(g, 3) * 0.6 + 0.2)
    contrast = _u(g, 0.6, 1.8)
    return torch.sigmoid(mean[:, None, None] + contrast * torch.einsum("oc,chw->ohw", mix, z))


def _two_colours(s: Tensor, g: Rng) -> Tensor:
    """A field ``(h, w)`` in [0, 1] -> RGB ``(3, h, w)`` between two random colours."""
    c1, c2 = _rand(g, 3), _rand(g, 3)
    return c1[:, None, None] + (c2 - c1)[:, None, None] * s[None]


def _oriented_coords(h: int, w: int, g: Rng) -> tuple[Tensor, Tensor]:
    theta = _u(g, 0, math.pi)
    ys = torch.arange(h, dtype=torch.float32)[:, None]
    xs = torch.arange(w, dtype=torch.float32)[None, :]
    return xs * math.cos(theta) + ys * math.sin(theta), -xs * math.sin(theta) + ys * math.cos(theta)


def _periodic_texture(kind: str, h: int, w: int, scale: float, g: Rng) -> Tensor:
    """Stripes or a checker board: period ``U(12, max(16, scale / 3))`` px, softened edges, wavy distortion."""
    period = _u(g, 12.0, max(16.0, scale / 3))
    a, b = _oriented_coords(h, w, g)
    wobble = _fractal_noise(1, h, w, scale, g)[0] * _u(g, 0.0, 0.25) * period
    omega = 2 * math.pi / period
    phase = _u(g, 0, 2 * math.pi)
    if kind == "stripes":
        s = torch.sin(omega * (a + wobble) + phase)
    else:
        s = torch.sin(omega * (a + wobble) + phase) * torch.sin(omega * b + _u(g, 0, 2 * math.pi))
    sharp = _u(g, 0.5, 1.5)  # tanh(sharp · s): soft enough for bilinear interpolation to stay accurate
    s = (torch.tanh(sharp * s) / math.tanh(sharp) + 1) / 2
    shade = 1 + 0.15 * _fractal_noise(1, h, w, scale, g)[0].clamp(-2, 2)
    return (_two_colours(s, g) * shade[None]).clamp(0, 1)


def _image_texture(pool: Tensor, h: int, w: int, g: Rng) -> Tensor:
    """A texture ``(3, h, w)`` cut from an image pool ``uint8 (N, C, h0, w0)`` (C = 1 or 3).

    Large images: a random crop resized to the canvas; small ones (side under half the canvas):
    a mosaic of random images, each enlarged 1.5-3×. Grey images are mapped between two random colours.
    """
    n, c, h0, w0 = pool.shape
    if min(h0, w0) * 2 >= min(h, w):
        zoom = _u(g, 0.6, 1.4)
        ch, cw = min(h0, max(2, round(h / zoom))), min(w0, max(2, round(w / zoom)))
        y, x = _randint(g, 0, h0 - ch), _randint(g, 0, w0 - cw)
        img = pool[_randint(g, 0, n - 1), :, y : y + ch, x : x + cw].float()[None] / 255
        img = F.interpolate(img, size=(h, w), mode="bilinear", align_corners=False, antialias=True)[0]
    else:
        cell = max(2, round(min(h0, w0) * _u(g, 1.5, 3.0)))
        rows, cols = math.ceil(h / cell) + 1, math.ceil(w / cell) + 1
        idx = torch.from_numpy(g.integers(0, n, rows * cols))
        tiles = F.interpolate(pool[idx].float() / 255, size=(cell, cell), mode="bilinear", align_corners=False)
        mosaic = tiles.reshape(rows, cols, c, cell, cell).permute(2, 0, 3, 1, 4).reshape(c, rows * cell, cols * cell)
        y, x = _randint(g, 0, rows * cell - h), _randint(g, 0, cols * cell - w)
        img = mosaic[:, y : y + h, x : x + w]
    if c == 1:
        return _two_colours(img[0], g).clamp(0, 1)
    return img.clamp(0, 1)


def _texture(
    family: str, h: int, w: int, scale: float, g: Rng, pool: Tensor | None, detail: tuple[float, float]
) -> Tensor:
    if family == "noise":
        return _colourise(_fractal_noise(3, h, w, scale, g, detail), g)
    if family in ("stripes", "checker"):
        return _periodic_texture(family, h, w, scale, g)
    if family == "image":
        if pool is None:
            raise ValueError("texture family 'image' needs an image pool (textures=...)")
        return _image_texture(pool, h, w, g)
    raise ValueError(f"unknown texture family {family!r}; known: {(*TEXTURE_FAMILIES, 'image')}")


# ---- shapes: signed distance (px, positive inside) on the canvas grid, object-local coordinates


def _local_coords(h: int, w: int, origin: tuple[int, int], center: Tensor, radius: float, g: Rng):
    """Canvas points in the object's frame: ``u = S (p - c) / R`` (S: a random squash, singular values >= 1)."""
    pts = _pixel_grid(origin[1], origin[1] + h - 1, origin[0], origin[0] + w - 1)
    theta = _u(g, 0, math.pi)
    rot = torch.tensor([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    squash = torch.diag(torch.tensor([1.0, _u(g, 1.0, 1.8)]))
    s = rot @ squash @ rot.T
    u = ((pts - center) / radius) @ s.T
    return u[:, 0].reshape(h, w), u[:, 1].reshape(h, w), float(squash[1, 1])


def _polygon_sdf(ux: Tensor, uy: Tensor, g: Rng) -> Tensor:
    """Radial signed distance (units of R) to a random star-shaped polygon of 3-8 vertices inside the unit disc."""
    n = _randint(g, 3, 8)
    jitter = (_rand(g, n) - 0.5) * 0.4
    beta = (torch.arange(n) + jitter) * (2 * math.pi / n)
    beta = beta - beta[0]  # relative angles, beta[0] = 0, gaps < pi
    rho = _rand(g, n) * 0.45 + 0.55
    alpha0 = _u(g, 0, 2 * math.pi)
    verts = torch.stack([rho * torch.cos(beta + alpha0), rho * torch.sin(beta + alpha0)], dim=1)  # (n, 2)
    phi = torch.remainder(torch.atan2(uy, ux) - alpha0, 2 * math.pi)
    i = (torch.searchsorted(beta.contiguous(), phi.reshape(-1).contiguous(), right=True) - 1).clamp(0, n - 1)
    vi, vj = verts[i], verts[(i + 1) % n]
    e = vj - vi
    d = torch.stack([torch.cos(phi.reshape(-1) + alpha0), torch.sin(phi.reshape(-1) + alpha0)], dim=1)
    cross_ve = vi[:, 0] * vj[:, 1] - vi[:, 1] * vj[:, 0]
    cross_de = d[:, 0] * e[:, 1] - d[:, 1] * e[:, 0]
    boundary = (cross_ve / cross_de.clamp_min(1e-6)).reshape(ux.shape)
    return boundary - torch.sqrt(ux * ux + uy * uy)


def _blob_sdf(ux: Tensor, uy: Tensor, g: Rng) -> Tensor:
    """Radial signed distance (units of R) to a smooth star-shaped blob ``r(φ) = r0 (1 + Σ a_n cos(nφ + ψ_n))``."""
    phi = torch.atan2(uy, ux)
    amps = _rand(g, 4) * 0.15
    r = torch.ones_like(phi)
    for k in range(4):
        r = r + amps[k] * torch.cos((k + 2) * phi + _u(g, 0, 2 * math.pi))
    r = r * (_u(g, 0.8, 1.0) / (1 + float(amps.sum())))
    return r - torch.sqrt(ux * ux + uy * uy)


def _silhouette_alpha(ux: Tensor, uy: Tensor, image: Tensor, radius: float, squash: float) -> Tensor:
    """Alpha from a grey image ``uint8 (h0, w0)`` spread over the square ``u ∈ [-1, 1]²``: the shape is
    where the bilinearly enlarged image exceeds 0.25 (of its range 0-1), alpha ramping over about a pixel."""
    grid = torch.stack([ux, uy], dim=-1)[None]
    v = F.grid_sample(image.float()[None, None] / 255, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    ramp = radius / (0.25 * max(image.shape) * squash)  # about 1 px per unit of alpha across an edge
    return ((v[0, 0] - 0.25) * ramp + 0.5).clamp(0, 1)


# ---- scenes


def _random_motion(
    g: Rng, center: Tensor, radius: float, bound: float, cfg: FlowSceneConfig, background: bool
) -> LayerMotion:
    """A random invertible motion whose displacement over ``|p - c| <= radius`` is at most ``bound`` px."""
    tmax = bound * (cfg.background_motion if background else 1.0)
    mag, ang = _u(g, 0, tmax), _u(g, 0, 2 * math.pi)
    shift = torch.tensor([mag * math.cos(ang), mag * math.sin(ang)])
    theta = _u(g, -cfg.max_rotation, cfg.max_rotation)
    log_s = _u(g, -cfg.max_scale, cfg.max_scale)
    warp = None
    if cfg.max_warp > 0 and _u(g) < cfg.warp_probability:
        k = 3
        freq_dir = _rand(g, k) * 2 * math.pi
        freq = (_rand(g, k) * 2.5 + 0.5)[:, None] * torch.stack([torch.cos(freq_dir), torch.sin(freq_dir)], dim=1)
        amps = _randn(g, k, 2)
        lip = float((amps.norm(dim=1) * freq.norm(dim=1)).sum())
        amps = amps * (_u(g, 0.2, 1.0) * cfg.max_warp / max(lip, 1e-6))
        warp_r = radius if not background else 0.5 * radius
        warp = (amps, freq, _rand(g, k) * 2 * math.pi, warp_r)
    for _ in range(50):
        s = math.exp(log_s)
        linear = s * torch.tensor([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
        w = SmoothWarp(center, warp[3], warp[0], warp[1], warp[2]) if warp is not None else None
        motion = LayerMotion(center, linear, shift, w)
        b = motion.displacement_bound(radius)
        if b <= bound:
            return motion
        f = 0.97 * bound / b
        theta, log_s, shift = theta * f, log_s * f, shift * f
        if warp is not None:
            warp = (warp[0] * f, *warp[1:])
    return LayerMotion(center)  # pragma: no cover - the shrinking converges long before


def sample_scene(
    cfg: FlowSceneConfig,
    g: Rng,
    textures: Tensor | None = None,
    silhouettes: Tensor | None = None,
) -> list[FlowLayer]:
    """Random layers (background first) of one scene. ``textures``: ``uint8 (N, C, h, w)`` pool for the
    ``"image"`` family; ``silhouettes``: ``uint8 (N, h, w)`` grey images for ``"silhouette"`` shapes."""
    h, w = cfg.size
    bound = cfg.motion_bound
    margin = math.ceil(bound) + 2
    scale = float(min(h, w))
    families = [f for f in cfg.texture_families if f != "image" or textures is not None] or list(TEXTURE_FAMILIES)
    shapes = [s for s in cfg.shapes if s != "silhouette" or silhouettes is not None] or ["polygon", "blob"]

    # background: covers the image plus a margin that frame 2 can reveal
    bh, bw = h + 2 * margin, w + 2 * margin
    bc = torch.tensor([_u(g, 0, w - 1), _u(g, 0, h - 1)])
    corners = torch.tensor([[-margin, -margin], [w - 1 + margin, -margin], [-margin, h - 1 + margin]]).float()
    corners = torch.cat([corners, torch.tensor([[w - 1 + margin, h - 1 + margin]]).float()])
    bg_radius = float((corners - bc).norm(dim=1).max())
    fam = families[_randint(g, 0, len(families) - 1)]
    layers = [
        FlowLayer(
            _texture(fam, bh, bw, scale, g, textures, cfg.texture_detail),
            None,
            (-margin, -margin),
            _random_motion(g, bc, bg_radius, bound, cfg, background=True),
            {"texture": fam, "shape": "background"},
        )
    ]
    for _ in range(_randint(g, *cfg.num_layers)):
        radius = _u(g, *cfg.object_size) * scale
        shape = shapes[_randint(g, 0, len(shapes) - 1)]
        extent = radius * (math.sqrt(2) if shape == "silhouette" else 1.0) + 1.5
        center = torch.tensor([_u(g, -0.1 * w, 1.1 * w - 1), _u(g, -0.1 * h, 1.1 * h - 1)])
        x0 = max(-margin, math.floor(float(center[0]) - extent))
        y0 = max(-margin, math.floor(float(center[1]) - extent))
        x1 = min(w - 1 + margin, math.ceil(float(center[0]) + extent))
        y1 = min(h - 1 + margin, math.ceil(float(center[1]) + extent))
        if x1 - x0 < 2 or y1 - y0 < 2:
            continue
        ch, cw = y1 - y0 + 1, x1 - x0 + 1
        ux, uy, squash = _local_coords(ch, cw, (x0, y0), center, radius, g)
        if shape == "polygon":
            alpha = (0.5 + _polygon_sdf(ux, uy, g) * radius / squash).clamp(0, 1)
        elif shape == "blob":
            alpha = (0.5 + _blob_sdf(ux, uy, g) * radius / squash).clamp(0, 1)
        else:
            assert silhouettes is not None
            img = silhouettes[_randint(g, 0, silhouettes.shape[0] - 1)]
            alpha = _silhouette_alpha(ux, uy, img, radius, squash)
        fam = families[_randint(g, 0, len(families) - 1)]
        tex = _texture(fam, ch, cw, scale, g, textures, cfg.texture_detail)
        motion = _random_motion(g, center, extent, bound, cfg, background=False)
        layers.append(FlowLayer(tex, alpha, (x0, y0), motion, {"texture": fam, "shape": shape}))
    return layers


def _gaussian_blur(img: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur of ``(3, H, W)`` with reflected borders."""
    r = max(1, math.ceil(2.5 * sigma))
    x = torch.arange(-r, r + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    k = k / k.sum()
    c = img.shape[0]
    out = F.pad(img[None], (r, r, 0, 0), mode="reflect" if img.shape[2] > r else "replicate")
    out = F.conv2d(out, k.reshape(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    out = F.pad(out, (0, 0, r, r), mode="reflect" if img.shape[1] > r else "replicate")
    return F.conv2d(out, k.reshape(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)[0]


def _photometric(frame1: Tensor, frame2: Tensor, cfg: FlowSceneConfig, g: Rng) -> tuple[Tensor, Tensor]:
    b = cfg.brightness
    gain = 1 + _u(g, -b, b) + (_rand(g, 3) * 2 - 1) * (b / 3)
    frame2 = frame2 * gain[:, None, None] + _u(g, -b / 2, b / 2)
    frames = []
    for f in (frame1, frame2):
        if cfg.blur > 0 and _u(g) < cfg.blur_probability:
            f = _gaussian_blur(f, _u(g, 0.3, 1.0) * cfg.blur)
        if cfg.noise > 0:
            f = f + _randn(g, *f.shape) * _u(g, 0, cfg.noise)
        frames.append(f.clamp(0, 1))
    return frames[0], frames[1]


def render_flow_pair(
    cfg: FlowSceneConfig,
    seed: int | Sequence[int] | np.random.Generator,
    textures: Tensor | None = None,
    silhouettes: Tensor | None = None,
    return_layers: bool = False,
) -> dict[str, Tensor]:
    """One random pair: ``frame1``, ``frame2 (3, H, W)`` in [0, 1], ``flow (2, H, W)`` px, ``occluded (H, W)`` bool,
    ``flow_backward (2, H, W)`` px (frame 2 -> frame 1).

    Deterministic in ``seed`` (and the pools): an int, a sequence of ints or a numpy generator, see
    :func:`make_rng`. See :func:`sample_scene` for the pools and :func:`render_layers` for ``return_layers``.
    """
    g = make_rng(seed)
    layers = sample_scene(cfg, g, textures, silhouettes)
    out = render_layers(layers, cfg.size, antialias=cfg.antialias, return_layers=return_layers)
    if cfg.photometric:
        out["frame1"], out["frame2"] = _photometric(out["frame1"], out["frame2"], cfg, g)
    return out


# --------------------------------------------------------------------------------------------
# pools and the data set


def split_indices(n: int, split: str) -> Tensor:
    """Disjoint indices of a pool of ``n`` images for ``split``: ``i % 10`` in 0-7 (train), 8 (valid), 9 (test)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    r = torch.arange(n) % 10
    keep = {"train": r < 8, "valid": r == 8, "test": r == 9}[split]
    return torch.arange(n)[keep]


def _as_pool(images: Tensor, name: str, grey: bool) -> Tensor:
    """``(N, H, W)`` / ``(N, C, H, W)`` uint8 or float in [0, 1] -> uint8 ``(N, C, H, W)`` (``grey``: ``(N, H, W)``)."""
    x = torch.as_tensor(images)
    if x.dim() == 3:
        x = x[:, None]
    if x.dim() != 4 or x.shape[1] not in (1, 3) or x.shape[0] < 1 or min(x.shape[2:]) < 2:
        raise ValueError(f"{name} must have shape (N, H, W) or (N, C, H, W) with C in (1, 3), got {tuple(x.shape)}")
    if x.dtype != torch.uint8:
        if not x.is_floating_point():
            raise ValueError(f"{name} must be uint8 or float in [0, 1], got {x.dtype}")
        x = (x.clamp(0, 1) * 255).round().to(torch.uint8)
    if grey:
        return x.float().mean(1).round().to(torch.uint8) if x.shape[1] == 3 else x[:, 0]
    return x


def load_image_pool(
    source: str | os.PathLike | Tensor | dict[str, Tensor] | None, split: str, name: str = "images", grey: bool = False
) -> tuple[Tensor | None, list[str]]:
    """The images of ``split`` from ``source`` -> (uint8 pool or ``None``, names of the sets used).

    ``source``: ``None``; ``"auto"`` (every cached set of ``fashion-mnist`` and ``mnist`` that loads,
    none if neither is cached; never fetches; a damaged cache is skipped with a warning); a data-set
    name or folder for
    :func:`~perceiver_io.data.load_image_classification` (its own disjoint train/valid/test split);
    a dict ``{split: images}``; or one tensor of images, split by :func:`split_indices`.
    """
    if source is None:
        return None, []
    if isinstance(source, dict):
        if split not in source:
            raise ValueError(f"{name}: the dict has no images for split {split!r} (keys: {sorted(source)})")
        return _as_pool(source[split], name, grey), [f"{name}[{split}]"]
    if isinstance(source, Tensor):
        return _as_pool(source[split_indices(source.shape[0], split)], name, grey), [f"{name} (tensor)"]
    from perceiver_io.data.errors import DataError
    from perceiver_io.data.loaders import load_image_classification

    names = list(_IMAGE_SETS) if source == "auto" else [source]
    pools, used = [], []
    for n in names:
        try:
            images, _ = load_image_classification(n, split)
        except FileNotFoundError:
            if source != "auto":
                raise
            continue
        except (DataError, ValueError, OSError) as e:
            if source != "auto":
                raise
            warnings.warn(f"{name}: skipping the cached {n!r} images: {e}", stacklevel=3)
            continue
        pools.append(_as_pool(images, name, grey))
        used.append(os.fspath(n))
    if not pools:
        return None, []
    if len({tuple(p.shape[1:]) for p in pools}) > 1:
        raise ValueError(f"{name}: the image sets {used} have different image shapes")
    return torch.cat(pools), used


class FlowPairs(Dataset):
    """Procedural flow pairs: ``data[i]`` -> dict of ``frame1``, ``frame2 (3, H, W)`` float in [0, 1],
    ``flow (2, H, W)`` px (u = Δx, v = Δy, exact), ``occluded (H, W)`` bool, ``flow_backward (2, H, W)``
    px (exact flow of the reversed pair, frame 2 -> frame 1).

    ``split`` selects disjoint seeds (pair ``i`` is seeded by the key ``(SPLIT_KEY[split], seed, i)``
    through numpy's ``SeedSequence``) and disjoint image pools: ``textures`` / ``silhouettes`` as
    :func:`load_image_pool` (default ``"auto"``: the cached Fashion-MNIST / MNIST images of the split,
    or, when none is cached, procedural textures and polygon / blob shapes only; :attr:`sources` says
    which was used — pass explicit values (or ``None``) for data that does not depend on the cache).
    Procedural textures are fresh random fields drawn from each pair's seed, so no texture is shared
    across splits either. ``size (H, W)``, ``num_layers`` (foreground, inclusive range), ``max_motion``
    (px bound on ``|flow|``), ``photometric``; any other :class:`FlowSceneConfig` field as a keyword.
    ``return_layers`` adds ``layers1`` / ``layers2`` (front-most layer per pixel).
    """

    def __init__(
        self,
        split: str = "train",
        size: Sequence[int] = (128, 128),
        length: int | None = None,
        num_layers: Sequence[int] = (2, 5),
        max_motion: float | None = None,
        photometric: bool = True,
        textures: str | os.PathLike | Tensor | dict[str, Tensor] | None = "auto",
        silhouettes: str | os.PathLike | Tensor | dict[str, Tensor] | None = "auto",
        seed: int = 0,
        return_layers: bool = False,
        **scene: Any,
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if not (isinstance(seed, int) and seed >= 0):
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        self.length = _DEFAULT_LENGTH[split] if length is None else int(length)
        if not self.length > 0:
            raise ValueError(f"length must be a positive number of pairs, got {length!r}")
        self.split = split
        self.seed = seed
        self.return_layers = return_layers
        self.config = FlowSceneConfig(
            size=tuple(int(v) for v in size),  # type: ignore[arg-type]
            num_layers=tuple(int(v) for v in num_layers),  # type: ignore[arg-type]
            max_motion=max_motion,
            photometric=photometric,
            **scene,
        )
        self.textures, tex_used = load_image_pool(textures, split, "textures")
        if isinstance(silhouettes, (str, os.PathLike)) and silhouettes == textures and self.textures is not None:
            # the same image sets: share the memory when they are grey already
            sil = self.textures[:, 0] if self.textures.shape[1] == 1 else _as_pool(self.textures, "silhouettes", True)
            self.silhouettes, sil_used = sil, list(tex_used)
        else:
            self.silhouettes, sil_used = load_image_pool(silhouettes, split, "silhouettes", grey=True)
        self.sources = {"textures": tex_used, "silhouettes": sil_used}

    def __len__(self) -> int:
        return self.length

    def seed_of(self, index: int) -> tuple[int, int, int]:
        """The seed key of pair ``index`` (see :func:`make_rng`)."""
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} pairs")
        return SPLIT_KEY[self.split], self.seed, index

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        if index < 0:
            index += self.length
        return render_flow_pair(self.config, self.seed_of(index), self.textures, self.silhouettes, self.return_layers)

    def with_config(self, **changes: Any) -> FlowPairs:
        """A copy whose scene config has ``changes`` (e.g. ``photometric=False``), same pools and seeds."""
        new = object.__new__(FlowPairs)
        new.__dict__.update(self.__dict__)
        new.config = replace(self.config, **changes)
        return new
