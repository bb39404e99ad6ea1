"""Position encodings: Fourier features (official formula), trainable embeddings, rotary.

Official conventions (DeepMind ``position_encoding.py``):

* grid positions per axis are ``linspace(-1, 1, n)`` combined with an ``ij`` meshgrid;
* positions of *subsampled* points given as flat indices are ``-1 + 2·i/n`` (note: not the
  same as the grid's ``-1 + 2·i/(n-1)``);
* bands are ``linspace(1, max_resolution/2, K)`` per axis, features are axis-major and the
  output is ``[pos | sin(π·f·p) | cos(π·f·p)]``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = [
    "FourierPositionEncoding",
    "TrainablePositionEncoding",
    "RotaryPositionEmbedding",
    "fourier_features",
    "grid_positions",
    "grid_fourier_features",
    "index_positions",
    "num_fourier_channels",
    "sinusoid_codes",
]


def grid_positions(index_dims: Sequence[int], device=None, dtype=torch.float32) -> Tensor:
    """Positions of every point of a grid, ``(prod(index_dims), len(index_dims))`` in [-1, 1]."""
    axes = [torch.linspace(-1.0, 1.0, n, device=device, dtype=dtype) for n in index_dims]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, len(index_dims))


def index_positions(
    indices: Tensor, index_dims: Sequence[int], dtype=torch.float32, formula: str = "subsampled"
) -> Tensor:
    """Positions of grid points given as flat (row-major) indices ``(P,)`` -> ``(P, d)``.

    ``formula="subsampled"``: the official subsampled-decoding positions ``-1 + 2·i/n`` per axis;
    ``formula="grid"``: the full grid's ``linspace(-1, 1, n)`` positions (``-1 + 2·i/(n-1)``, taken
    from ``linspace`` itself so that they equal :func:`grid_positions` exactly).
    """
    if formula not in ("subsampled", "grid"):
        raise ValueError(f"formula must be 'subsampled' or 'grid', got {formula!r}")
    coords = []
    rest = indices
    for n in reversed(index_dims):
        coords.append(rest % n)
        rest = torch.div(rest, n, rounding_mode="floor")
    coords = coords[::-1]
    if formula == "grid":  # the very values of linspace(-1, 1, n), so chunks equal the whole grid bit for bit
        axes = [torch.linspace(-1.0, 1.0, n, device=indices.device, dtype=dtype) for n in index_dims]
        return torch.stack([axis[c] for axis, c in zip(axes, coords, strict=True)], dim=-1)
    coords = torch.stack(coords, dim=-1).to(dtype)
    dims = torch.tensor(list(index_dims), dtype=dtype, device=indices.device)
    return -1.0 + 2.0 * coords / dims


def num_fourier_channels(num_axes: int, num_bands: int, concat_pos: bool = True, sine_only: bool = False) -> int:
    """Width of :func:`fourier_features`: ``d·K·(1 if sine_only else 2) + (d if concat_pos)``."""
    return num_axes * num_bands * (1 if sine_only else 2) + (num_axes if concat_pos else 0)


def fourier_features(
    pos: Tensor,
    num_bands: int,
    max_resolution: Sequence[int],
    concat_pos: bool = True,
    sine_only: bool = False,
) -> Tensor:
    """Fourier features of positions ``(P, d)`` -> ``(P, num_fourier_channels(d, K))``."""
    d = pos.shape[-1]
    if len(max_resolution) != d:
        raise ValueError(f"max_resolution must have {d} entries (one per axis), got {len(max_resolution)}")
    freqs = torch.stack(
        [torch.linspace(1.0, r / 2.0, num_bands, device=pos.device, dtype=pos.dtype) for r in max_resolution]
    )  # (d, K)
    feats = (pos[:, :, None] * freqs[None]).reshape(pos.shape[0], d * num_bands)  # axis-major
    parts = [pos] if concat_pos else []
    parts.append(torch.sin(math.pi * feats))
    if not sine_only:
        parts.append(torch.cos(math.pi * feats))
    return torch.cat(parts, dim=-1)


def grid_fourier_features(
    index_dims: Sequence[int],
    num_bands: int,
    max_resolution: Sequence[int],
    concat_pos: bool = True,
    sine_only: bool = False,
    device=None,
    dtype=torch.float32,
) -> Tensor:
    """:func:`fourier_features` of :func:`grid_positions` ``(prod(index_dims), C)``, bit for bit, computed
    per axis: every channel depends on one axis, so each sine/cosine is evaluated ``n_a`` times, not
    ``prod(index_dims)`` times, and the grid is filled by broadcasting (368×496, 64 bands: 0.23 s -> 0.10 s,
    ``bench/flow_default.py``)."""
    d = len(index_dims)
    if len(max_resolution) != d:
        raise ValueError(f"max_resolution must have {d} entries (one per axis), got {len(max_resolution)}")
    k = num_bands
    width = num_fourier_channels(d, k, concat_pos, sine_only)
    out = torch.empty(*index_dims, width, device=device, dtype=dtype)
    offset = d if concat_pos else 0
    for a, (n, r) in enumerate(zip(index_dims, max_resolution, strict=True)):
        shape = [1] * d
        shape[a] = n
        pos = torch.linspace(-1.0, 1.0, n, device=device, dtype=dtype)
        freqs = torch.linspace(1.0, r / 2.0, k, device=device, dtype=dtype)
        feats = math.pi * (pos[:, None] * freqs[None])  # (n, K), as fourier_features' per-element product
        if concat_pos:
            out[..., a] = pos.view(shape)
        out[..., offset + a * k : offset + (a + 1) * k] = torch.sin(feats).view(*shape, k)
        if not sine_only:
            out[..., offset + (d + a) * k : offset + (d + a + 1) * k] = torch.cos(feats).view(*shape, k)
    return out.reshape(-1, width)


class FourierPositionEncoding(nn.Module):
    """Fourier features for a grid of shape ``index_dims``; no parameters.

    ``forward(batch_size)`` returns the full grid ``(B, prod(index_dims), C)``;
    ``forward(batch_size, indices=idx)`` the points at flat indices ``idx (P,)``.
    Full-grid features are computed on the requested device and cached per (shape, device, dtype)
    when they hold at most ``CACHE_LIMIT`` values (2^24, 64 MiB in fp32: ImageNet's 224² grid and the
    Kinetics input patch grid 16×56×56 are cached). Larger grids (a 368×496 flow frame: 47M values)
    are rebuilt per call by :func:`grid_fourier_features`, about 0.1 s on 2 CPU cores
    (``bench/flow_default.py``), where keeping them would hold their memory for good.
    """

    CACHE_LIMIT = 2**24

    def __init__(
        self,
        index_dims: Sequence[int],
        num_bands: int,
        max_resolution: Sequence[int] | None = None,
        concat_pos: bool = True,
        sine_only: bool = False,
    ) -> None:
        super().__init__()
        self.index_dims = tuple(int(n) for n in index_dims)
        self.num_bands = num_bands
        self.max_resolution = tuple(max_resolution) if max_resolution is not None else self.index_dims
        self.concat_pos = concat_pos
        self.sine_only = sine_only
        self._cache: dict[tuple, Tensor] = {}

    @property
    def num_channels(self) -> int:
        return num_fourier_channels(len(self.index_dims), self.num_bands, self.concat_pos, self.sine_only)

    def features(self, pos: Tensor) -> Tensor:
        return fourier_features(pos, self.num_bands, self.max_resolution, self.concat_pos, self.sine_only)

    def grid(self, index_dims: Sequence[int] | None = None, device=None, dtype=torch.float32) -> Tensor:
        """Features of every grid point, ``(prod(index_dims), C)``, cached."""
        index_dims = tuple(index_dims or self.index_dims)
        if torch.compiler.is_compiling():
            return self.features(grid_positions(index_dims, device, dtype))
        key = (index_dims, str(device), dtype)
        if key in self._cache:
            return self._cache[key]
        features = grid_fourier_features(
            index_dims, self.num_bands, self.max_resolution, self.concat_pos, self.sine_only, device, dtype
        )
        if features.numel() <= self.CACHE_LIMIT:
            self._cache[key] = features
        return features

    def forward(self, batch_size: int, indices: Tensor | None = None, device=None, dtype=torch.float32) -> Tensor:
        if indices is None:
            enc = self.grid(device=device, dtype=dtype)
        else:
            enc = self.features(index_positions(indices.to(device), self.index_dims, dtype))
        return enc.unsqueeze(0).expand(batch_size, -1, -1)


def sinusoid_codes(positions: Tensor, num_channels: int) -> Tensor:
    """The Transformer's sinusoids at (possibly fractional) ``positions (P,)``: ``(P, C)``, channels
    ``2i`` and ``2i+1`` are ``sin`` and ``cos`` of ``position / 10000^(2i/C)``; unit scale (std ~ 1/√2)."""
    pos = positions.to(torch.float64)[:, None]
    freq = 10000.0 ** (-torch.arange(0, num_channels, 2, dtype=torch.float64) / num_channels)
    out = torch.zeros(len(positions), num_channels, dtype=torch.float64)
    out[:, 0::2] = torch.sin(pos * freq)
    out[:, 1::2] = torch.cos(pos * freq)[:, : num_channels // 2]
    return out.float()


class TrainablePositionEncoding(nn.Module):
    """A learned ``(num_positions, C)`` array (truncated normal, std ``init_scale``).

    Used for latents, learned output queries and learned input positions.
    """

    def __init__(self, num_positions: int, num_channels: int, init_scale: float = 0.02) -> None:
        super().__init__()
        self.init_scale = init_scale
        self.embeddings = nn.Parameter(torch.empty(num_positions, num_channels))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        s = self.init_scale
        nn.init.trunc_normal_(self.embeddings, std=s, a=-2 * s, b=2 * s)

    @property
    def num_positions(self) -> int:
        return self.embeddings.shape[0]

    @property
    def num_channels(self) -> int:
        return self.embeddings.shape[1]

    def forward(self, batch_size: int, indices: Tensor | None = None) -> Tensor:
        """``(B, num_positions, C)``, or ``(B, P, C)`` at ``indices (P,)``."""
        emb = self.embeddings if indices is None else self.embeddings[indices]
        return emb.unsqueeze(0).expand(batch_size, -1, -1)


class RotaryPositionEmbedding(nn.Module):
    """Rotary embedding on the first ``num_rotated_channels`` of each head (Perceiver AR style).

    ``forward(x (B, H, N, D), positions (N,) or (B, N))`` rotates channel pairs (half-split
    convention) by angle ``position · max_wavelength^(-2i/R)``.
    """

    def __init__(self, num_rotated_channels: int, max_wavelength: float = 10_000.0) -> None:
        super().__init__()
        if num_rotated_channels % 2:
            raise ValueError(f"num_rotated_channels must be even, got {num_rotated_channels}")
        self.num_rotated_channels = num_rotated_channels
        inv_freq = max_wavelength ** (
            -torch.arange(0, num_rotated_channels, 2, dtype=torch.float32) / num_rotated_channels
        )
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, x: Tensor, positions: Tensor) -> Tensor:
        r = self.num_rotated_channels
        angles = positions.to(torch.float32)[..., None] * self.inv_freq  # (..., N, R/2)
        if angles.dim() == 3:  # (B, N, R/2) -> (B, 1, N, R/2)
            angles = angles[:, None]
        cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
        x_rot, x_pass = x[..., :r], x[..., r:]
        x1, x2 = x_rot.chunk(2, dim=-1)
        rotated = torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)
        return torch.cat([rotated, x_pass], dim=-1)
