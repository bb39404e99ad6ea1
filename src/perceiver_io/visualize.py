"""Pictures of model outputs: flow fields as colour images, frame grids, audio waveforms.

``flow_to_rgb`` needs only torch; writing PNG files needs Pillow (extra ``vision``) and the audio
plot needs matplotlib (extra ``train``); both are imported only when called.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["flow_to_rgb", "save_flow_png", "save_image_grid", "save_reconstruction_png", "save_audio_plot"]


def _pil():
    try:
        from PIL import Image
    except ImportError as e:  # pragma: no cover - optional extra
        raise ImportError("writing PNG files needs Pillow: pip install 'perceiver-io[vision]'") from e
    return Image


def _as_flow(flow) -> Tensor:
    if not isinstance(flow, Tensor):
        flow = torch.as_tensor(flow)
    if flow.dim() != 3 or flow.shape[-1] != 2:
        raise ValueError(f"flow must have shape (H, W, 2), got {tuple(flow.shape)}")
    return flow.detach().float().cpu()


def flow_to_rgb(flow: Tensor, max_radius: float | None = None) -> Tensor:
    """Colour-code a flow field ``(H, W, 2)`` (``u`` right, ``v`` down) -> ``uint8 (H, W, 3)``.

    HSV coding as the official flow colab: hue = direction ``atan2(v, u)`` (0 = right = red), saturation =
    magnitude / ``max_radius`` clipped to 1, value = 1. Zero flow is white. ``max_radius`` defaults
    to the field's largest magnitude (the colab uses a fixed 24 pixels).
    """
    f = _as_flow(flow)
    u, v = f[..., 0], f[..., 1]
    mag = torch.sqrt(u * u + v * v)
    if max_radius is not None and not (isinstance(max_radius, (int, float)) and max_radius > 0):
        raise ValueError(f"max_radius must be a positive number of pixels (or None), got {max_radius!r}")
    if max_radius is None:
        max_radius = float(mag.max()) if mag.numel() else 0.0
    if not max_radius > 0:
        max_radius = 1.0  # zero field: all white
    hue = torch.remainder(torch.atan2(v, u), 2 * math.pi) / (2 * math.pi)  # [0, 1)
    sat = (mag / max_radius).clamp(0, 1)
    val = torch.ones_like(sat)
    # HSV -> RGB
    h6 = hue * 6.0
    i = torch.floor(h6).long() % 6
    frac = h6 - torch.floor(h6)
    p = val * (1 - sat)
    q = val * (1 - sat * frac)
    t = val * (1 - sat * (1 - frac))
    choices = [
        (val, t, p),
        (q, val, p),
        (p, val, t),
        (p, q, val),
        (t, p, val),
        (val, p, q),
    ]
    rgb = torch.zeros(*sat.shape, 3)
    for k, (r, g, b) in enumerate(choices):
        sel = i == k
        rgb[sel] = torch.stack([r[sel], g[sel], b[sel]], dim=-1)
    return (rgb * 255.0).round().clamp(0, 255).to(torch.uint8)


def save_flow_png(flow: Tensor, path: str | os.PathLike, max_radius: float | None = None) -> None:
    """Write :func:`flow_to_rgb` of ``flow (H, W, 2)`` to a PNG file."""
    Image = _pil()
    Image.fromarray(flow_to_rgb(flow, max_radius).numpy()).save(os.fspath(path))


def _to_hwc_uint8(image: Tensor) -> Tensor:
    """``(C, H, W)`` or ``(H, W, C)`` float in ``[0, 1]`` (or uint8) -> ``uint8 (H, W, 3)``."""
    x = image.detach().cpu()
    if x.dim() == 2:
        x = x[None]
    if x.dim() != 3:
        raise ValueError(f"image must have shape (C, H, W) or (H, W, C), got {tuple(x.shape)}")
    if x.shape[0] in (1, 3) and x.shape[-1] not in (1, 3):
        x = x.permute(1, 2, 0)
    if x.dtype != torch.uint8:
        x = (x.float().clamp(0, 1) * 255).round().to(torch.uint8)
    if x.shape[-1] == 1:
        x = x.expand(-1, -1, 3)
    return x.contiguous()


def save_image_grid(
    images: Sequence[Tensor] | Tensor, path: str | os.PathLike, ncols: int | None = None, padding: int = 2
) -> None:
    """Tile images (each ``(C, H, W)`` / ``(H, W, C)``, float in ``[0, 1]`` or uint8, same size) into one PNG."""
    Image = _pil()
    tiles = [_to_hwc_uint8(im) for im in images]
    if not tiles:
        raise ValueError("images is empty")
    h, w, _ = tiles[0].shape
    if any(t.shape != tiles[0].shape for t in tiles):
        raise ValueError("all images in the grid must have the same size")
    ncols = ncols or len(tiles)
    nrows = math.ceil(len(tiles) / ncols)
    grid = torch.full((nrows * (h + padding) + padding, ncols * (w + padding) + padding, 3), 255, dtype=torch.uint8)
    for k, t in enumerate(tiles):
        r, c = divmod(k, ncols)
        y, x = padding + r * (h + padding), padding + c * (w + padding)
        grid[y : y + h, x : x + w] = t
    Image.fromarray(grid.numpy()).save(os.fspath(path))


def save_reconstruction_png(
    reconstruction: Tensor, path: str | os.PathLike, original: Tensor | None = None, max_frames: int = 8
) -> None:
    """Video frames ``(T, C, H, W)`` in ``[0, 1]``: originals (if given) in the top row, reconstructions below."""
    if reconstruction.dim() != 4:
        raise ValueError(f"reconstruction must have shape (T, C, H, W), got {tuple(reconstruction.shape)}")
    t = reconstruction.shape[0]
    idx = torch.linspace(0, t - 1, min(t, max_frames)).round().long().tolist()
    rows = [original[idx]] if original is not None else []
    rows.append(reconstruction[idx])
    save_image_grid([f for row in rows for f in row], path, ncols=len(idx))


def save_audio_plot(reconstruction: Tensor, path: str | os.PathLike, original: Tensor | None = None) -> None:
    """Plot waveforms ``(S,)`` (original dashed if given, reconstruction solid) to a PNG (needs matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:  # pragma: no cover - optional extra
        raise ImportError("plotting audio needs matplotlib: pip install 'perceiver-io[train]'") from e
    fig, ax = plt.subplots(figsize=(10, 3))
    if original is not None:
        ax.plot(original.detach().cpu().float().numpy(), lw=0.5, alpha=0.6, label="original")
    ax.plot(reconstruction.detach().cpu().float().numpy(), lw=0.5, label="reconstruction")
    ax.set_xlabel("sample")
    ax.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(os.fspath(path), dpi=100)
    plt.close(fig)
