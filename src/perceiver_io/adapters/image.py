"""Images, video frames and optical-flow pairs -> ``(B, M, C)`` inputs with position features.

One adapter serves all three, as the official ``ImagePreprocessor``. Images at the API boundary
are ``(B, C, H, W)``; with ``num_frames`` set, video ``(B, T, C, H, W)`` (a flow pair is a video of
two frames). The adapter
preprocesses them (``prep_type``), flattens the resulting grid to ``M`` rows (row-major, as
DeepMind and ``transformers``) and concatenates or adds position features:

* ``pixels``: raw pixels, strided subsampling by ``spatial_downsample`` (``temporal_downsample``);
* ``conv``: ``log4(spatial_downsample)`` × [7×7 stride-2 conv without bias -> BatchNorm -> ReLU
  -> 3×3 stride-2 max-pool], ``out_channels`` wide (ImageNet "conv": 224² -> 56² × 64);
* ``conv1x1``: a 1×1 conv with stride ``spatial_downsample`` to ``out_channels``;
* ``patches``: space-to-depth, ``(dt dh dw c)`` channel order; a single remaining frame is
  squeezed (optical flow); optional ``Linear(out_channels)`` after patching
  (``conv_after_patching``). With ``pixel_patch_size = k`` every pixel is first replaced by its
  ``k×k`` neighbourhood (the official ``patches_for_flow``); such patches ``(B, T, k²C, H, W)``
  are also accepted as input directly.

Position features are Fourier features of the post-processing grid (``linspace(-1, 1, n)``
per axis, bands up to ``max_resolution/2``) or a trainable array, optionally projected by a
Linear layer to ``project_pos_dim``.

Faithfulness switches: DeepMind pads the conv and the max-pool "SAME" (TF rule: 56×56 from
224); ``transformers`` pads the conv symmetrically with ``k//2`` and the max-pool not at all
(55×55 from 224). ``conv_padding``/``pool_padding`` select; defaults follow DeepMind.
"""

from __future__ import annotations

import math
import typing
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from perceiver_io.adapters.base import AdaptedInputs, InputAdapter
from perceiver_io.config import Config, ConfigError
from perceiver_io.layers.init import variance_scaling_
from perceiver_io.layers.position import FourierPositionEncoding, TrainablePositionEncoding, num_fourier_channels
from perceiver_io.layers.spatial import patches_for_flow, same_padding, space_to_depth
from perceiver_io.validation import check_dtype, check_tensor

__all__ = ["ImageAdapterConfig", "ImageInputAdapter", "ConvDownsample", "PREP_TYPES"]

PrepType = Literal["pixels", "conv", "conv1x1", "patches"]
PREP_TYPES: tuple[str, ...] = typing.get_args(PrepType)


@dataclass
class ImageAdapterConfig(Config):
    """Image/video preprocessing and position features (defaults: ImageNet with 2-D Fourier features)."""

    image_shape: tuple[int, int] = (224, 224)
    num_image_channels: int = 3
    num_frames: int | None = None
    fixed_shape: bool = False  # inputs must be exactly image_shape (outputs tied to that grid)
    prep_type: PrepType = "pixels"
    pixel_patch_size: int | None = None
    spatial_downsample: int = 1
    temporal_downsample: int = 1
    out_channels: int = 64
    conv_after_patching: bool = False
    use_batchnorm: bool = True
    conv_padding: Literal["same", "symmetric"] = "same"
    pool_padding: Literal["same", "valid"] = "same"
    position_encoding: Literal["fourier", "trainable"] = "fourier"
    num_bands: int = 64
    max_resolution: tuple[int, ...] | None = None
    concat_pos: bool = True
    sine_only: bool = False
    num_position_channels: int = 256
    position_init_scale: float = 0.02
    project_pos_dim: int | None = None
    concat_or_add_pos: Literal["concat", "add"] = "concat"

    def validate(self) -> None:
        name = type(self).__name__
        if len(tuple(self.image_shape)) != 2:
            raise ConfigError(f"{name}.image_shape must be (H, W), got {self.image_shape!r}")
        for v in self.image_shape:
            if not isinstance(v, int) or v <= 0:
                raise ConfigError(f"{name}.image_shape must hold positive integers, got {self.image_shape!r}")
        self._positive("num_image_channels", "spatial_downsample", "temporal_downsample", "out_channels", "num_bands")
        self._positive("num_frames", "project_pos_dim", "pixel_patch_size", allow_none=True)
        if self.pixel_patch_size is not None and (self.prep_type != "patches" or self.pixel_patch_size % 2 == 0):
            raise ConfigError(
                f"{name}.pixel_patch_size must be odd and needs prep_type='patches', got {self.pixel_patch_size} "
                f"with prep_type={self.prep_type!r}"
            )
        self._positive("num_position_channels")
        if self.prep_type == "conv":
            layers = math.log(self.spatial_downsample, 4)
            if self.spatial_downsample < 4 or layers != round(layers):
                raise ConfigError(
                    f"{name}.spatial_downsample must be a power of 4 (>= 4) with prep_type='conv', "
                    f"got {self.spatial_downsample}"
                )
        if self.prep_type in ("conv", "conv1x1"):
            if self.temporal_downsample != 1 or self.num_frames is not None:
                raise ConfigError(
                    f"{name}: prep_type={self.prep_type!r} takes images only (num_frames=None, temporal_downsample=1)"
                )
        if self.prep_type == "patches":
            for axis, size in zip("HW", self.image_shape, strict=True):
                if size % self.spatial_downsample:
                    raise ConfigError(
                        f"{name}.image_shape {axis} ({size}) must be divisible by spatial_downsample "
                        f"({self.spatial_downsample}) with prep_type='patches'"
                    )
            if self.num_frames is not None and self.num_frames % self.temporal_downsample:
                raise ConfigError(
                    f"{name}.num_frames ({self.num_frames}) must be divisible by temporal_downsample "
                    f"({self.temporal_downsample})"
                )
        if self.max_resolution is not None and len(self.max_resolution) != len(self.index_dims()):
            raise ConfigError(
                f"{name}.max_resolution must have {len(self.index_dims())} entries (one per grid axis), "
                f"got {self.max_resolution!r}"
            )
        if self.concat_or_add_pos == "add" and self.feature_channels() != self.position_channels():
            raise ConfigError(
                f"{name}: concat_or_add_pos='add' needs equal feature ({self.feature_channels()}) and "
                f"position ({self.position_channels()}) channels"
            )

    @property
    def num_conv_layers(self) -> int:
        return round(math.log(self.spatial_downsample, 4)) if self.prep_type == "conv" else 0

    def grid_shape(self, height: int, width: int, frames: int | None = None) -> tuple[int, ...]:
        """Grid of input rows after preprocessing an image ``(H, W)`` (video: ``(T, H, W)``)."""
        s, t = self.spatial_downsample, self.temporal_downsample
        if self.prep_type == "conv":
            for _ in range(self.num_conv_layers):
                height, width = -(-height // 2), -(-width // 2)  # both conv paddings give ceil(n/2)
                if self.pool_padding == "same":
                    height, width = -(-height // 2), -(-width // 2)
                else:
                    height, width = (height - 3) // 2 + 1, (width - 3) // 2 + 1
            return (height, width)
        if self.prep_type == "patches":
            dims = (height // s, width // s)
            if frames is None or frames // t == 1:
                return dims
            return (frames // t, *dims)
        dims = (-(-height // s), -(-width // s))  # pixels (strided slicing) and conv1x1 (stride s)
        return dims if frames is None else (-(-frames // t), *dims)

    def index_dims(self) -> tuple[int, ...]:
        """The grid for the configured ``image_shape`` (and ``num_frames``)."""
        return self.grid_shape(*self.image_shape, frames=self.num_frames)

    def feature_channels(self) -> int:
        if self.prep_type in ("conv", "conv1x1") or self.conv_after_patching:
            return self.out_channels
        c = self.num_image_channels
        if self.prep_type == "patches":
            c *= self.spatial_downsample**2 * (self.pixel_patch_size or 1) ** 2
            if self.num_frames is not None:
                c *= self.temporal_downsample
        return c

    def position_channels(self) -> int:
        if self.project_pos_dim is not None:
            return self.project_pos_dim
        if self.position_encoding == "trainable":
            return self.num_position_channels
        return num_fourier_channels(len(self.index_dims()), self.num_bands, self.concat_pos, self.sine_only)

    def num_channels(self) -> int:
        """Width C of the adapter's output ``(B, M, C)``."""
        if self.concat_or_add_pos == "add":
            return self.position_channels()
        return self.feature_channels() + self.position_channels()


class ConvDownsample(nn.Module):
    """7×7 stride-2 conv (no bias) -> BatchNorm -> ReLU -> 3×3 stride-2 max-pool; ``(B, C, H, W)`` -> 4× smaller."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        use_batchnorm: bool = True,
        conv_padding: Literal["same", "symmetric"] = "same",
        pool_padding: Literal["same", "valid"] = "same",
    ) -> None:
        super().__init__()
        self.conv_padding = conv_padding
        self.pool_padding = pool_padding
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=7, stride=2, bias=False)
        variance_scaling_(self.conv.weight)
        self.norm: nn.Module = nn.BatchNorm2d(out_channels) if use_batchnorm else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        if self.conv_padding == "same":
            (top, bottom), (left, right) = same_padding(h, 7, 2), same_padding(w, 7, 2)
        else:
            top = bottom = left = right = 3
        x = torch.relu(self.norm(self.conv(F.pad(x, (left, right, top, bottom)))))
        if self.pool_padding == "same":
            h, w = x.shape[-2:]
            (top, bottom), (left, right) = same_padding(h, 3, 2), same_padding(w, 3, 2)
            x = F.pad(x, (left, right, top, bottom), value=float("-inf"))
        return F.max_pool2d(x, kernel_size=3, stride=2)


class ImageInputAdapter(InputAdapter):
    """``(B, C, H, W)`` images (or ``(B, T, C, H, W)`` video, flow pairs) -> inputs ``(B, M, num_channels)``."""

    def __init__(self, config: ImageAdapterConfig) -> None:
        super().__init__()
        c = config
        self.config = config
        if c.prep_type == "conv":
            self.conv = nn.Sequential(
                *(
                    ConvDownsample(
                        c.num_image_channels if i == 0 else c.out_channels,
                        c.out_channels,
                        c.use_batchnorm,
                        c.conv_padding,
                        c.pool_padding,
                    )
                    for i in range(c.num_conv_layers)
                )
            )
        elif c.prep_type == "conv1x1":
            self.conv = nn.Conv2d(c.num_image_channels, c.out_channels, kernel_size=1, stride=c.spatial_downsample)
            variance_scaling_(self.conv.weight)
            nn.init.zeros_(self.conv.bias)
        self.patch_projection: nn.Module | None = None
        if c.prep_type == "patches" and c.conv_after_patching:
            self.patch_projection = nn.Linear(c.replace(conv_after_patching=False).feature_channels(), c.out_channels)
            variance_scaling_(self.patch_projection.weight)
            nn.init.zeros_(self.patch_projection.bias)

        dims = c.index_dims()
        if c.position_encoding == "fourier":
            self.fourier = FourierPositionEncoding(
                dims, c.num_bands, c.max_resolution or dims, c.concat_pos, c.sine_only
            )
            pos_channels = self.fourier.num_channels
        else:
            self.positions = TrainablePositionEncoding(math.prod(dims), c.num_position_channels, c.position_init_scale)
            pos_channels = c.num_position_channels
        self.position_projection: nn.Module | None = None
        if c.project_pos_dim is not None:
            self.position_projection = nn.Linear(pos_channels, c.project_pos_dim)
            variance_scaling_(self.position_projection.weight)
            nn.init.zeros_(self.position_projection.bias)

    @property
    def num_channels(self) -> int:
        return self.config.num_channels()

    def _check(self, images: Tensor) -> None:
        c = self.config
        video = c.num_frames is not None
        channels = (c.num_image_channels,)
        if c.pixel_patch_size is not None:
            channels += (c.num_image_channels * c.pixel_patch_size**2,)
        ch = " or ".join(map(str, channels))
        desc = f"(B, {c.num_frames}, {ch}, H, W)" if video else f"(B, {ch}, H, W)"
        check_tensor("images", images, 5 if video else 4, desc)
        if images.shape[2 if video else 1] not in channels or (video and images.shape[1] != c.num_frames):
            raise ValueError(f"images must have shape {desc} (channels first), got {tuple(images.shape)}")
        if not images.is_floating_point():
            raise TypeError(f"images must be floating point, got dtype {images.dtype}")
        param = next(self.parameters(), None)
        if param is not None:
            check_dtype("images", images, param.dtype)
        if c.fixed_shape and tuple(images.shape[-2:]) != tuple(c.image_shape):
            raise ValueError(
                f"images must be {c.image_shape[0]}×{c.image_shape[1]} (this model's outputs are tied to that "
                f"grid), got shape {tuple(images.shape)}"
            )
        if images.shape[-1] == 0 or images.shape[-2] == 0:
            raise ValueError(f"images must not be empty, got shape {tuple(images.shape)}")
        if c.prep_type == "patches":
            h, w = images.shape[-2:]
            s = c.spatial_downsample
            if h % s or w % s:
                raise ValueError(f"images {tuple(images.shape)}: H, W must be divisible by spatial_downsample ({s})")

    def features(self, images: Tensor) -> Tensor:
        """Preprocessed features on their grid, channels last: ``(B, *grid, C_features)``."""
        self._check(images)
        c = self.config
        s, t = c.spatial_downsample, c.temporal_downsample
        if c.prep_type in ("conv", "conv1x1"):
            return self.conv(images).permute(0, 2, 3, 1)
        if c.prep_type == "pixels":
            if images.dim() == 4:
                return images[:, :, ::s, ::s].permute(0, 2, 3, 1)
            return images[:, ::t, :, ::s, ::s].permute(0, 1, 3, 4, 2)
        if c.pixel_patch_size is not None and images.shape[2] == c.num_image_channels:
            images = patches_for_flow(images, c.pixel_patch_size)
        x = space_to_depth(images, t, s)
        if x.dim() == 5 and x.shape[1] == 1:
            x = x.squeeze(1)
        if self.patch_projection is not None:
            x = self.patch_projection(x)
        return x

    def position_features(self, grid: tuple[int, ...], device: torch.device, dtype: torch.dtype) -> Tensor:
        """Position features ``(M, P)`` for a preprocessed grid (projected if configured)."""
        if self.config.position_encoding == "fourier":
            pos = self.fourier.grid(grid, device=device, dtype=torch.float32).to(dtype)
        else:
            pos = self.positions.embeddings
            if pos.shape[0] != math.prod(grid):
                raise ValueError(
                    f"learned positions cover a {self.config.index_dims()} grid (images of shape "
                    f"{self.config.image_shape}), got images giving a {tuple(grid)} grid"
                )
            pos = pos.to(dtype)
        if self.position_projection is not None:
            pos = self.position_projection(pos)
        return pos

    def forward(self, images: Tensor) -> AdaptedInputs:
        """``images`` -> inputs ``(B, M, C)`` with ``index_shape`` the preprocessed grid (M = its product)."""
        x = self.features(images)
        b, grid = x.shape[0], tuple(x.shape[1:-1])
        x = x.reshape(b, -1, x.shape[-1])
        pos = self.position_features(grid, x.device, x.dtype).unsqueeze(0)
        if self.config.concat_or_add_pos == "concat":
            out = torch.cat([x, pos.expand(b, -1, -1)], dim=-1)
        else:
            out = x + pos
        return AdaptedInputs(out, index_shape=grid)

    def example_inputs(self, batch_size: int = 1) -> Tensor:
        """Random images at the configured size, in the model's input range (-1, 1)."""
        c = self.config
        frames = () if c.num_frames is None else (c.num_frames,)
        return torch.rand(batch_size, *frames, c.num_image_channels, *c.image_shape) * 2 - 1
