"""Optical flow between two frames: tiled at the training size and blended as the official colab."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

import perceiver_io.models  # noqa: F401  (registers the presets read below)
from perceiver_io.inference.common import model_device as _model_device
from perceiver_io.inference.common import require_model as _require
from perceiver_io.inference.images import ImageLike, load_image
from perceiver_io.registry import get_preset

#: The official flow colab multiplies the network output (already ÷ ``rescale_factor`` = 100) by 20
#: (``FLOW_SCALE_FACTOR``) to get pixels; the published checkpoint needs it (its preset's ``output_scale``).
FLOW_SCALE_FACTOR: float = get_preset("optical-flow-perceiver").info.output_scale  # type: ignore[assignment]


def flow_tile_starts(length: int, tile: int, min_overlap: int) -> list[int]:
    """Start offsets of tiles of size ``tile`` covering ``[0, length)`` with at least ``min_overlap`` overlap.

    The first tile starts at 0, the last ends at ``length``, the rest are evenly spaced (the colab's
    ``compute_grid_indices`` steps by ``tile - min_overlap`` and moves the last tile flush with the
    border; even spacing gives the same coverage without its out-of-range last tile).
    """
    if tile <= 0 or length < tile:
        raise ValueError(f"tile size {tile} must be in [1, {length}]")
    if not 0 <= min_overlap < tile:
        raise ValueError(f"tile_overlap must be in [0, {tile}) for tile size {tile}, got {min_overlap}")
    if length == tile:
        return [0]
    n = math.ceil((length - tile) / (tile - min_overlap)) + 1
    return sorted({round(i * (length - tile) / (n - 1)) for i in range(n)})


def flow_tile_weights(height: int, width: int) -> Tensor:
    """Blending weights ``(H, W)`` of one tile, as the colab: ``min(x+1, W-x, y+1, H-y)`` (1 at the border)."""
    y = torch.arange(height)
    x = torch.arange(width)
    wy = torch.minimum(y + 1, height - y)
    wx = torch.minimum(x + 1, width - x)
    return torch.minimum(wy[:, None], wx[None, :]).float()


@torch.no_grad()
def estimate_flow(
    model: torch.nn.Module,
    frame1: ImageLike,
    frame2: ImageLike,
    tile_overlap: int | None = None,
    tile_size: Sequence[int] | None = None,
    flow_scale: float | None = None,
    batch_size: int = 1,
    chunk_size: int | str | None = "auto",
) -> Tensor:
    """Optical flow from ``frame1`` to ``frame2`` (RGB, same size ``H × W``) -> ``(H, W, 2)`` float, pixels ``(u, v)``.

    As the official colab: pixels are mapped to ``[-1, 1]`` (``x / 255 · 2 - 1``); the image is
    covered by tiles of the model's training size (``config.image_size``, or ``tile_size``;
    clipped to the image where it is smaller) overlapping by at least ``tile_overlap`` pixels
    (default: the colab's 20, or half the tile for tiles under 40 pixels; it must be less than the tile);
    each tile's flow (3×3 patches are extracted per tile by the model) is weighted by
    :func:`flow_tile_weights` and the weighted flows are averaged. The model outputs flow ÷
    ``rescale_factor``; ``flow_scale`` (default: the ``optical-flow-perceiver`` preset's
    ``output_scale``, 20, the colab's ``FLOW_SCALE_FACTOR``, right for the published checkpoint)
    converts it to pixels; pass ``flow_scale=1`` for a model trained on pixel targets.
    ``batch_size`` tiles run at once; ``chunk_size`` bounds the decoder's memory (default "auto").
    """
    _require(model, "OpticalFlow", "estimate_flow")
    if flow_scale is None:
        flow_scale = FLOW_SCALE_FACTOR
    f1 = load_image(frame1, "frame1")
    f2 = load_image(frame2, "frame2")
    if f1.shape != f2.shape:
        raise ValueError(f"frame1 and frame2 must have the same shape, got {tuple(f1.shape)} and {tuple(f2.shape)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    _, h, w = f1.shape
    th, tw = (int(v) for v in (tile_size or model.config.image_size))
    th, tw = min(th, h), min(tw, w)
    if min(th, tw) < 1:
        raise ValueError(f"tile_size must be positive, got {tile_size}")
    frames = torch.stack([f1, f2]) / 255.0 * 2.0 - 1.0  # (2, 3, H, W) in [-1, 1]
    if tile_overlap is None:
        tile_overlap = min(20, min(th, tw) // 2)
    if not isinstance(tile_overlap, int) or not 0 <= tile_overlap < min(th, tw):
        raise ValueError(
            f"tile_overlap must be an integer in [0, {min(th, tw)}) for {th}×{tw} tiles, got {tile_overlap!r} "
            "(a larger overlap would mean a tile every pixel)"
        )
    tiles = [(y, x) for y in flow_tile_starts(h, th, tile_overlap) for x in flow_tile_starts(w, tw, tile_overlap)]
    weights = flow_tile_weights(th, tw)[..., None]  # (th, tw, 1)
    flow = torch.zeros(h, w, 2)
    total = torch.zeros(h, w, 1)
    model.eval()
    device = _model_device(model)
    for i in range(0, len(tiles), batch_size):
        group = tiles[i : i + batch_size]
        x = torch.stack([frames[:, :, y : y + th, x0 : x0 + tw] for y, x0 in group]).to(device)  # (b, 2, 3, th, tw)
        out = model(x, chunk_size=chunk_size).flow.float().cpu() * flow_scale  # (b, th, tw, 2)
        for (y, x0), piece in zip(group, out, strict=True):
            flow[y : y + th, x0 : x0 + tw] += piece * weights
            total[y : y + th, x0 : x0 + tw] += weights
    return flow / total
