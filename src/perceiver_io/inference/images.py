"""Load and preprocess images; classify them with an image classifier (ImageNet conventions from the registry)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

import perceiver_io.models  # noqa: F401  (registers the presets read below)
from perceiver_io.inference.common import model_device as _model_device
from perceiver_io.inference.common import require_model as _require
from perceiver_io.registry import get_preset

# Inference conventions live with the published presets (perceiver_io.registry.PretrainedInfo).
_IMAGENET = get_preset("vision-perceiver-fourier").info
IMAGENET_MEAN: tuple[float, ...] = _IMAGENET.mean  # type: ignore[assignment]
IMAGENET_STD: tuple[float, ...] = _IMAGENET.std  # type: ignore[assignment]

ImageLike = Any  # str | os.PathLike | PIL.Image.Image | numpy.ndarray | Tensor


def load_image(image: ImageLike, name: str = "image") -> Tensor:
    """Any supported image -> float tensor ``(C, H, W)`` with values in ``[0, 255]``.

    Paths and ``PIL`` images are converted to RGB; grayscale tensors ``(1, H, W)`` are repeated to 3 channels.
    """
    if isinstance(image, (str, os.PathLike)):
        try:
            from PIL import Image
        except ImportError as e:  # pragma: no cover - optional extra
            raise ImportError("reading image files needs Pillow: pip install 'perceiver-io[vision]'") from e
        path = os.fspath(image)
        if os.path.isdir(path):
            raise IsADirectoryError(f"{name}: {path!r} is a directory, not an image file")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{name}: no such file {path!r}")
        try:
            with Image.open(path) as im:
                image = im.convert("RGB")
        except Exception as e:  # PIL raises UnidentifiedImageError, OSError ...
            raise ValueError(f"{name}: cannot read {path!r} as an image ({e})") from None
    if type(image).__module__.startswith("PIL."):
        import numpy as np

        image = torch.from_numpy(np.asarray(image.convert("RGB")).copy()).permute(2, 0, 1)
    elif type(image).__module__ == "numpy":
        image = torch.from_numpy(image.copy())
        if image.dim() == 3 and image.shape[-1] in (1, 3) and image.shape[0] not in (1, 3):
            image = image.permute(2, 0, 1)  # (H, W, C) -> (C, H, W)
        elif image.dim() == 2:
            image = image[None]
    if not isinstance(image, Tensor):
        raise TypeError(f"{name} must be a path, PIL image, numpy array or tensor, got {type(image).__name__}")
    if image.dim() != 3 or image.shape[0] not in (1, 3):
        raise ValueError(f"{name} must have shape (C, H, W) with C = 1 or 3, got {tuple(image.shape)}")
    if image.dtype == torch.uint8:
        image = image.float()
    elif image.is_floating_point():
        if image.numel():
            lo, hi = float(image.min()), float(image.max())
            if not (lo >= 0.0 and hi <= 1.0):  # also catches NaN
                raise ValueError(
                    f"{name}: floating-point images must be in [0, 1], got values in [{lo:g}, {hi:g}] "
                    "(pass uint8 for 0-255 images)"
                )
        image = image.float() * 255.0
    else:
        raise TypeError(f"{name} must be uint8 (0-255) or floating point (0-1), got dtype {image.dtype}")
    if image.shape[0] == 1:
        image = image.expand(3, -1, -1)
    return image.contiguous()


def preprocess_image(
    image: ImageLike,
    size: Sequence[int] = (224, 224),
    crop_padding: int = 32,
    mean: Sequence[float] | None = IMAGENET_MEAN,
    std: Sequence[float] | None = IMAGENET_STD,
) -> Tensor:
    """ImageNet evaluation preprocessing -> ``(3, size[0], size[1])`` float.

    As DeepMind's ImageNet pipeline and ``transformers``' ``PerceiverImageProcessor``: center-crop a
    ``size / (size + crop_padding)`` fraction of the shorter side (224/256), resize bicubically
    (antialiased) to ``size``, rescale to ``[0, 1]``, normalise with ``mean``/``std`` (``None``: skip).
    """
    x = load_image(image)
    _, h, w = x.shape
    th, tw = (int(v) for v in size)
    min_dim = min(h, w)
    ch = min(h, int(th / (th + crop_padding) * min_dim))
    cw = min(w, int(tw / (tw + crop_padding) * min_dim))
    top, left = (h - ch) // 2, (w - cw) // 2
    x = x[:, top : top + ch, left : left + cw]
    x = F.interpolate(x[None], size=(th, tw), mode="bicubic", align_corners=False, antialias=True)[0]
    x = x.clamp(0, 255) / 255.0
    if mean is not None and std is not None:
        x = (x - torch.tensor(mean).view(-1, 1, 1)) / torch.tensor(std).view(-1, 1, 1)
    return x


@dataclass
class ClassPrediction:
    """One of the top-k classes: ``index``, ``label`` (the name, or ``str(index)``) and ``probability``."""

    index: int
    label: str
    probability: float


def _label_name(labels: Sequence[str] | Mapping[int, str] | None, index: int) -> str:
    if labels is None:
        return str(index)
    if isinstance(labels, Mapping):
        return str(labels.get(index, labels.get(str(index), index)))  # type: ignore[call-overload]
    return str(labels[index]) if 0 <= index < len(labels) else str(index)


@torch.no_grad()
def classify_image(
    model: torch.nn.Module,
    images: ImageLike | Sequence[ImageLike],
    top_k: int = 5,
    labels: Sequence[str] | Mapping[int, str] | None = None,
    normalize: bool = True,
) -> list[ClassPrediction] | list[list[ClassPrediction]]:
    """Top-k classes (most likely first) for one image, or a list of images.

    ``model``: an ``ImageClassifier``. Each image is preprocessed at the model's configured
    ``image.image_shape`` (:func:`preprocess_image`; ``normalize=False`` skips the ImageNet mean/std).
    """
    _require(model, "ImageClassifier", "classify_image")
    single = not isinstance(images, (list, tuple))
    batch = [images] if single else list(images)
    if not batch:
        raise ValueError("images is empty")
    cfg = model.config
    num_classes = cfg.num_classes
    if not 1 <= top_k <= num_classes:
        raise ValueError(f"top_k must be in [1, {num_classes}], got {top_k}")
    if cfg.image.num_image_channels != 3:
        raise ValueError(f"classify_image handles RGB models; this one has {cfg.image.num_image_channels} channels")
    x = torch.stack(
        [preprocess_image(img, cfg.image.image_shape, mean=IMAGENET_MEAN if normalize else None) for img in batch]
    )
    model.eval()
    logits = model(x.to(_model_device(model))).logits.float().cpu()
    probs = logits.softmax(-1)
    values, idx = probs.topk(top_k, dim=-1)
    out = [
        [ClassPrediction(int(i), _label_name(labels, int(i)), float(v)) for v, i in zip(vs, ids, strict=True)]
        for vs, ids in zip(values, idx, strict=True)
    ]
    return out[0] if single else out
