"""Pictures of model outputs: flow fields as colour images and arrow overlays, frame grids, audio waveforms.

Two flow colour codings: :func:`flow_to_color`, the Middlebury colour wheel of Baker et al. (the
standard in optical-flow papers and benchmarks), and :func:`flow_to_rgb`, the HSV coding of the
official Perceiver IO flow colab. Both need only torch; writing PNG files needs Pillow (extra
``vision``) and the audio plot needs matplotlib (extra ``train``); both are imported only when called.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = [
    "FLOW_WHEELS",
    "diverging_rgb",
    "flow_to_color",
    "flow_to_rgb",
    "middlebury_colorwheel",
    "save_audio_plot",
    "save_flow_arrows",
    "save_flow_png",
    "save_image_grid",
    "save_reconstruction_png",
]

#: The flow colour codings that :func:`save_flow_png` accepts as ``wheel``.
FLOW_WHEELS: tuple[str, ...] = ("middlebury", "hsv")


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


def _check_max_radius(max_radius: float | None) -> None:
    if max_radius is not None and (
        isinstance(max_radius, bool) or not (isinstance(max_radius, (int, float)) and max_radius > 0)
    ):
        raise ValueError(f"max_radius must be a positive number of pixels (or None), got {max_radius!r}")


# Middlebury colour-wheel segments (Baker et al., "A Database and Evaluation Methodology for Optical
# Flow", IJCV 2011; ``colorcode.cpp`` of the flow-code release): number of hues from each primary /
# secondary colour to the next, chosen to make the wheel perceptually more uniform.
_WHEEL_SEGMENTS = (("RY", 15), ("YG", 6), ("GC", 4), ("CB", 11), ("BM", 13), ("MR", 6))


def middlebury_colorwheel() -> Tensor:
    """The Middlebury colour wheel: ``(55, 3)`` float64 RGB in ``[0, 255]``.

    Six segments, red -> yellow (15 colours), yellow -> green (6), green -> cyan (4), cyan -> blue (11),
    blue -> magenta (13), magenta -> red (6); within a segment the changing channel ramps as
    ``floor(255 · i / n)``, ``i = 0 … n - 1``.
    """
    rows: list[list[float]] = []
    for name, n in _WHEEL_SEGMENTS:
        for i in range(n):
            up = math.floor(255 * i / n)
            rows.append(
                {
                    "RY": [255, up, 0],
                    "YG": [255 - up, 255, 0],
                    "GC": [0, 255, up],
                    "CB": [0, 255 - up, 255],
                    "BM": [up, 0, 255],
                    "MR": [255, 0, 255 - up],
                }[name]
            )
    return torch.tensor(rows, dtype=torch.float64)


def flow_to_color(flow: Tensor, max_radius: float | None = None) -> Tensor:
    """Middlebury colour coding of a flow field ``(H, W, 2)`` (``u`` right, ``v`` down) -> ``uint8 (H, W, 3)``.

    As the reference ``colorcode.cpp`` of Baker et al.: the hue comes from the angle
    ``atan2(-v, -u) / π`` in ``[-1, 1]``, mapped linearly onto the 55-colour wheel
    (:func:`middlebury_colorwheel`) with linear interpolation between neighbouring colours; the
    magnitude ``r = |flow| / max_radius`` blends from white (``r = 0``) to the wheel colour
    (``r = 1``), and pixels beyond the radius (``r > 1``) get the wheel colour dimmed to 75 %. Each
    channel is ``floor(255 · c)``. At full magnitude, flow to the right is red ``(255, 0, 0)``, down
    yellow ``(255, 229, 0)``, left sky blue ``(0, 209, 255)`` and up violet ``(88, 0, 255)``.
    ``max_radius`` (pixels) defaults to the field's largest magnitude (1 for an all-zero field).
    Non-finite pixels (unknown flow) are black and ignored for the default radius.
    """
    f = _as_flow(flow).double()
    _check_max_radius(max_radius)
    finite = torch.isfinite(f).all(dim=-1)
    f = torch.where(finite[..., None], f, torch.zeros_like(f))
    u, v = f[..., 0], f[..., 1]
    mag = torch.sqrt(u * u + v * v)
    if max_radius is None:
        max_radius = float(mag.max()) if mag.numel() else 0.0
    if not max_radius > 0:
        max_radius = 1.0  # zero field: all white
    rad = mag / max_radius
    # ``+ 0.0`` turns -0.0 into +0.0, so that flow straight to the right is always angle -1 (red) rather
    # than +1, whichever sign its zero v component carries
    angle = torch.atan2(-(v + 0.0), -(u + 0.0)) / math.pi  # [-1, 1]
    wheel = middlebury_colorwheel() / 255.0
    ncols = wheel.shape[0]
    fk = (angle + 1.0) / 2.0 * (ncols - 1)  # [0, ncols - 1]
    k0 = fk.floor().long().clamp(0, ncols - 1)
    k1 = (k0 + 1) % ncols
    frac = (fk - k0.double())[..., None]
    col = (1.0 - frac) * wheel[k0] + frac * wheel[k1]  # (H, W, 3)
    r = rad[..., None]
    col = torch.where(r <= 1.0, 1.0 - r * (1.0 - col), col * 0.75)
    rgb = torch.floor(255.0 * col).clamp(0, 255).to(torch.uint8)
    rgb[~finite] = 0
    return rgb


def save_flow_png(
    flow: Tensor, path: str | os.PathLike, max_radius: float | None = None, *, wheel: str = "middlebury"
) -> None:
    """Write ``flow (H, W, 2)`` colour-coded to a PNG file.

    ``wheel="middlebury"`` (default) uses :func:`flow_to_color`, ``wheel="hsv"`` the colab's
    :func:`flow_to_rgb`; ``max_radius`` (pixels of full colour) defaults to the largest magnitude.
    """
    if wheel not in FLOW_WHEELS:
        raise ValueError(f"wheel must be one of {FLOW_WHEELS}, got {wheel!r}")
    Image = _pil()
    rgb = flow_to_color(flow, max_radius) if wheel == "middlebury" else flow_to_rgb(flow, max_radius)
    Image.fromarray(rgb.numpy()).save(os.fspath(path))


def _arrow_grid(h: int, w: int, step: int | None, max_arrows: int) -> tuple[Tensor, Tensor, int]:
    """Grid points ``ys (Ny,)``, ``xs (Nx,)`` (centred in their ``step × step`` cells) and the step used."""
    if isinstance(max_arrows, bool) or not isinstance(max_arrows, int) or max_arrows < 1:
        raise ValueError(f"max_arrows must be a positive integer, got {max_arrows!r}")
    if step is None:
        step = max(4, math.ceil(math.sqrt(h * w / max_arrows)))
        while math.ceil(h / step) * math.ceil(w / step) > max_arrows:
            step += 1
    elif isinstance(step, bool) or not isinstance(step, int) or step < 1:
        raise ValueError(f"step must be a positive integer number of pixels (or None), got {step!r}")
    ys = torch.arange(min(step // 2, h - 1), h, step)
    xs = torch.arange(min(step // 2, w - 1), w, step)
    return ys, xs, step


def save_flow_arrows(
    frame1: Tensor,
    flow: Tensor,
    path: str | os.PathLike,
    step: int | None = None,
    max_arrows: int = 625,
    scale: float | None = 1.0,
    color: str | tuple[int, int, int] = "wheel",
) -> None:
    """Draw ``flow (H, W, 2)`` as arrows over ``frame1`` and write the picture to a PNG file.

    ``frame1`` is ``(H, W, 3)`` uint8 or ``(3, H, W)`` float in ``[0, 1]`` (grey ``(H, W)`` works too).
    One arrow starts at the centre of every ``step × step`` cell; ``step=None`` picks the smallest
    step (at least 4 px) that gives at most ``max_arrows`` arrows. An arrow from ``(x, y)`` ends at
    ``(x + scale · u, y + scale · v)``: with the default ``scale=1`` its length is the flow in pixels;
    ``scale=None`` scales the field so that the longest arrow is 0.9 ``step`` (readable for small
    motions). ``color="wheel"`` colours each arrow by its direction on the Middlebury wheel (full
    saturation, as :func:`flow_to_color` at ``|flow| = max_radius``), drawn over a black outline so
    it stands out on any frame; or give one ``(r, g, b)`` colour. Non-finite flow draws no arrow.
    """
    Image = _pil()
    from PIL import ImageDraw

    image = _to_hwc_uint8(torch.as_tensor(frame1))
    f = _as_flow(flow)
    if tuple(image.shape[:2]) != tuple(f.shape[:2]):
        raise ValueError(
            f"frame1 and flow must have the same (H, W), got {tuple(image.shape[:2])} and {tuple(f.shape[:2])}"
        )
    if scale is not None and (isinstance(scale, bool) or not (isinstance(scale, (int, float)) and scale > 0)):
        raise ValueError(f"scale must be a positive number (or None for automatic), got {scale!r}")
    if color != "wheel" and not (
        isinstance(color, tuple) and len(color) == 3 and all(isinstance(c, int) and 0 <= c <= 255 for c in color)
    ):
        raise ValueError(f'color must be "wheel" or an (r, g, b) tuple of integers in [0, 255], got {color!r}')
    h, w = f.shape[:2]
    ys, xs, step = _arrow_grid(h, w, step, max_arrows)
    samples = f[ys][:, xs].reshape(-1, 2)  # (N, 2)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    points = torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=1).double()  # (N, 2) x, y
    finite = torch.isfinite(samples).all(dim=1)
    mags = samples.norm(dim=1)
    if scale is None:
        longest = float(mags[finite].max()) if finite.any() else 0.0
        scale = 0.9 * step / longest if longest > 0 else 1.0
    if color == "wheel":
        unit = torch.where(mags[:, None] > 0, samples / mags.clamp_min(1e-12)[:, None], torch.zeros_like(samples))
        colours = [tuple(c) for c in flow_to_color(unit[None], max_radius=1.0)[0].tolist()]
    else:
        colours = [color] * samples.shape[0]
    canvas = Image.fromarray(image.numpy())
    draw = ImageDraw.Draw(canvas)
    outline = color == "wheel"
    for (x0, y0), (u, v), ok, c in zip(
        points.tolist(), samples.double().tolist(), finite.tolist(), colours, strict=True
    ):
        if not ok:
            continue
        x1, y1 = x0 + scale * u, y0 + scale * v
        length = math.hypot(x1 - x0, y1 - y0)
        segments = [((x0, y0), (x1, y1))]
        if length >= 1.0:  # arrow head: two strokes 25 degrees either side of the shaft, back from the tip
            head = min(max(2.0, 0.3 * length), 6.0)
            back = math.atan2(y0 - y1, x0 - x1)
            for side in (-1, 1):
                a = back + side * math.radians(25)
                segments.append(((x1, y1), (x1 + head * math.cos(a), y1 + head * math.sin(a))))
        if outline:
            for seg in segments:
                draw.line(seg, fill=(0, 0, 0), width=3)
        for seg in segments:
            draw.line(seg, fill=c, width=1)
        if length < 1.0:
            draw.point((x0, y0), fill=c)
    canvas.save(os.fspath(path))


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


def diverging_rgb(values: Tensor) -> Tensor:
    """``(H, W)`` values in ``[-1, 1]`` -> ``(3, H, W)`` in ``[0, 1]``: blue (-1), white (0), red (+1)."""
    v = values.detach().float().clamp(-1, 1)
    pos, neg = v.clamp(min=0), (-v).clamp(min=0)
    return torch.stack([1 - neg, 1 - pos - neg, 1 - pos])


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


def save_audio_comparison(
    originals: Sequence[Tensor], reconstructions: Sequence[Tensor], sample_rate: int, path: str | os.PathLike
) -> None:
    """One row per clip: both waveforms ``(S,)`` overlaid, then the original's and the reconstruction's
    spectrograms (dB, the same colour scale), to a PNG (needs matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:  # pragma: no cover - optional extra
        raise ImportError("plotting audio needs matplotlib: pip install 'perceiver-family[train]'") from e
    if len(originals) != len(reconstructions) or not originals:
        raise ValueError(
            f"need as many originals as reconstructions (>= 1), got {len(originals)} and {len(reconstructions)}"
        )
    import numpy as np

    n = len(originals)
    fig, axes = plt.subplots(n, 3, figsize=(12, 2.2 * n), squeeze=False)
    for row, (x, y) in enumerate(zip(originals, reconstructions, strict=True)):
        x, y = (v.detach().cpu().float().numpy() for v in (x, y))
        t = torch.arange(len(x)).numpy() / sample_rate
        ax = axes[row, 0]
        ax.plot(t, x, lw=0.5, alpha=0.7, label="input")
        ax.plot(t, y, lw=0.5, alpha=0.8, label="reconstruction")
        ax.set_ylim(-1, 1)
        ax.set_xlabel("s")
        if row == 0:
            ax.legend(loc="upper right", fontsize=7)
        for col, (v, title) in enumerate(((x, "input"), (y, "reconstruction")), start=1):
            v = v + 1e-7 * np.sin(np.arange(len(v)))  # a floor far below vmin: silence plots as black, not -inf
            axes[row, col].specgram(v, NFFT=256, Fs=sample_rate, noverlap=192, vmin=-120, vmax=-20, cmap="magma")
            axes[row, col].set_title(title, fontsize=8)
            axes[row, col].set_ylabel("Hz", fontsize=7)
    fig.tight_layout()
    fig.savefig(os.fspath(path), dpi=72)
    plt.close(fig)
