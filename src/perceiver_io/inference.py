"""Inference helpers for the published tasks: fill masked bytes, classify images, estimate optical flow
between two frames, and reconstruct video + audio with the multimodal autoencoder.

Every function takes an already loaded model (``perceiver_io.from_pretrained(dir)``), runs it under
``torch.no_grad()`` in eval mode on the model's device, and returns plain results (dataclasses,
tensors on the CPU). Images may be given as a path, a ``PIL.Image``, a ``numpy`` array ``(H, W, C)``
or a tensor ``(C, H, W)``: ``uint8`` values are in ``[0, 255]``, floating-point values in ``[0, 1]``.
Pillow is needed only to read image files or ``PIL`` images (extra ``vision``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

import perceiver_io.models  # noqa: F401  (registers the presets read below)
from perceiver_io.adapters.text import BytesTokenizer
from perceiver_io.registry import get_preset

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "FLOW_SCALE_FACTOR",
    "BytePrediction",
    "FillMaskResult",
    "ClassPrediction",
    "AutoencodeResult",
    "fill_mask",
    "load_image",
    "preprocess_image",
    "classify_image",
    "flow_tile_starts",
    "flow_tile_weights",
    "estimate_flow",
    "psnr",
    "autoencode",
]

# Inference conventions live with the published presets (perceiver_io.registry.PretrainedInfo).
_IMAGENET = get_preset("vision-perceiver-fourier").info
IMAGENET_MEAN: tuple[float, ...] = _IMAGENET.mean  # type: ignore[assignment]
IMAGENET_STD: tuple[float, ...] = _IMAGENET.std  # type: ignore[assignment]
#: The official flow colab multiplies the network output (already ÷ ``rescale_factor`` = 100) by 20
#: (``FLOW_SCALE_FACTOR``) to get pixels; the published checkpoint needs it.
FLOW_SCALE_FACTOR: float = get_preset("optical-flow-perceiver").info.output_scale  # type: ignore[assignment]

ImageLike = Any  # str | os.PathLike | PIL.Image.Image | numpy.ndarray | Tensor


def _model_device(model: torch.nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def _require(model: object, class_name: str, fn: str) -> None:
    if type(model).__name__ != class_name and class_name not in {c.__name__ for c in type(model).__mro__}:
        raise TypeError(f"{fn} needs a {class_name}, got {type(model).__name__}")


# --------------------------------------------------------------------------------------------
# fill-mask


@dataclass
class BytePrediction:
    """One candidate for a masked byte: the byte value (0-255), its text (``repr``-safe) and probability."""

    byte: int
    text: str
    probability: float


@dataclass
class FillMaskResult:
    """``text``: the input with every ``[MASK]`` replaced by the most likely byte (invalid UTF-8 -> U+FFFD);
    ``filled_bytes``: the same as raw bytes; ``positions``: byte offsets of the masked bytes in
    ``filled_bytes``; ``predictions``: per masked byte, the top-k candidates (most likely first)."""

    text: str
    filled_bytes: bytes
    positions: list[int] = field(default_factory=list)
    predictions: list[list[BytePrediction]] = field(default_factory=list)


def _byte_text(b: int) -> str:
    return chr(b) if b < 0x80 else f"\\x{b:02x}"


@torch.no_grad()
def fill_mask(
    model: torch.nn.Module, texts: str | Sequence[str], top_k: int = 5
) -> FillMaskResult | list[FillMaskResult]:
    """Fill every ``[MASK]`` (one byte each; write ``[MASK][MASK]`` for two bytes) in ``texts``.

    ``model``: a ``MaskedLanguageModel``. A single string gives one :class:`FillMaskResult`, a list
    gives a list. Only byte ids (not special tokens) are predicted.
    """
    _require(model, "MaskedLanguageModel", "fill_mask")
    single = isinstance(texts, str)
    batch = [texts] if single else list(texts)
    if not batch:
        raise ValueError("texts is empty")
    if not 1 <= top_k <= 256:
        raise ValueError(f"top_k must be in [1, 256], got {top_k}")
    tok = BytesTokenizer()
    max_len = model.config.text.max_seq_len
    for i, t in enumerate(batch):
        if not isinstance(t, str):
            raise TypeError(f"texts[{i}] must be a str, got {type(t).__name__}")
        n = len(tok.encode(t)) + 2
        if n > max_len:
            raise ValueError(f"texts[{i}] is {n} tokens with [CLS]/[SEP], more than the model's max_seq_len {max_len}")
    model.eval()
    device = _model_device(model)
    ids, mask = tok(batch)
    logits = model(ids.to(device), mask.to(device)).logits.float().cpu()  # (B, L, V)
    probs = logits[..., tok.num_special_tokens :].softmax(-1)  # (B, L, 256) over bytes only
    results = []
    for row in range(len(batch)):
        length = int(mask[row].sum())
        seq = ids[row, 1 : length - 1].clone()  # drop [CLS] ... [SEP]
        p = probs[row, 1 : length - 1]
        positions = (seq == tok.mask_id).nonzero().flatten().tolist()
        preds = []
        for pos in positions:
            values, idx = p[pos].topk(top_k)
            preds.append(
                [BytePrediction(int(b), _byte_text(int(b)), float(v)) for v, b in zip(values, idx, strict=True)]
            )
            seq[pos] = int(idx[0]) + tok.num_special_tokens
        data = bytes(int(i) - tok.num_special_tokens for i in seq if int(i) >= tok.num_special_tokens)
        results.append(FillMaskResult(data.decode("utf-8", errors="replace"), data, positions, preds))
    return results[0] if single else results


# --------------------------------------------------------------------------------------------
# images


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


# --------------------------------------------------------------------------------------------
# optical flow


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
    tile_overlap: int = 20,
    tile_size: Sequence[int] | None = None,
    flow_scale: float | None = None,
    batch_size: int = 1,
    chunk_size: int | str | None = "auto",
) -> Tensor:
    """Optical flow from ``frame1`` to ``frame2`` (RGB, same size ``H × W``) -> ``(H, W, 2)`` float, pixels ``(u, v)``.

    As the official colab: pixels are mapped to ``[-1, 1]`` (``x / 255 · 2 - 1``); the image is
    covered by tiles of the model's training size (``config.image_size``, or ``tile_size``;
    clipped to the image where it is smaller) overlapping by at least ``tile_overlap`` pixels;
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
    tiles = [
        (y, x)
        for y in flow_tile_starts(h, th, min(tile_overlap, th - 1))
        for x in flow_tile_starts(w, tw, min(tile_overlap, tw - 1))
    ]
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


# --------------------------------------------------------------------------------------------
# multimodal autoencoding


def psnr(reconstruction: Tensor, target: Tensor, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB: ``10·log10(data_range² / MSE)`` (``inf`` when identical)."""
    if reconstruction.shape != target.shape:
        raise ValueError(f"psnr: shapes differ, {tuple(reconstruction.shape)} vs {tuple(target.shape)}")
    mse = float((reconstruction.float() - target.float()).square().mean())
    return math.inf if mse == 0 else 10.0 * math.log10(data_range**2 / mse)


@dataclass
class AutoencodeResult:
    """Reconstructions from the multimodal autoencoder (batch dimension kept only if the inputs had one).

    * ``video``: ``(T, C, H, W)``; ``audio``: ``(S,)``; ``label_probs``: ``(K,)`` class probabilities;
    * ``psnr``: dB per given modality (``"video"``, ``"audio"``; peak 1: video in ``[0, 1]``, audio in ``[-1, 1]``).
    """

    video: Tensor
    audio: Tensor
    label_probs: Tensor
    psnr: dict[str, float] = field(default_factory=dict)


@torch.no_grad()
def autoencode(
    model: torch.nn.Module,
    video: Tensor | None = None,
    audio: Tensor | None = None,
    label: Tensor | None = None,
    chunk_size: int | None = 8192,
) -> AutoencodeResult:
    """Encode video ``(T, C, H, W)`` (values in ``[0, 1]``), audio ``(S,)`` and/or a one-hot ``label (K,)``
    once, then decode every output point ``chunk_size`` queries at a time (``None``: all at once).

    Inputs may carry a leading batch dimension. A modality not given is fed as zeros and, where the
    model has a mask token for it, replaced by that token. PSNR is reported for the given modalities.
    """
    _require(model, "MultimodalAutoencoder", "autoencode")
    cfg = model.config
    if video is None and audio is None and label is None:
        raise ValueError("autoencode needs at least one of video, audio, label")
    t, h, w = cfg.video_shape
    expected = {
        "video": (t, cfg.num_image_channels, h, w),
        "audio": (cfg.num_audio_samples,),
        "label": (cfg.num_classes,),
    }
    given = {"video": video, "audio": audio, "label": label}
    batched = None
    batch = 1
    for name, x in given.items():
        if x is None:
            continue
        if not isinstance(x, Tensor):
            raise TypeError(f"{name} must be a tensor, got {type(x).__name__}")
        shape = tuple(x.shape)
        is_batched = shape[1:] == expected[name]
        if shape != expected[name] and not is_batched:
            raise ValueError(
                f"{name} must have shape {expected[name]} (or with a leading batch dimension), got {shape}"
            )
        if batched is not None and (is_batched != batched or (is_batched and shape[0] != batch)):
            raise ValueError("video, audio and label must all have the same batch dimension (or none)")
        batched = is_batched
        batch = shape[0] if is_batched else 1
    device = _model_device(model)
    inputs, mask_probs = {}, {}
    for name, key in (("video", "image"), ("audio", "audio"), ("label", "label")):
        x = given[name]
        if x is None:
            x = torch.zeros(batch, *expected[name])
            if key in model.input_adapter.mask:
                mask_probs[key] = 1.0
        elif not batched:
            x = x[None]
        inputs[key] = x.float().to(device)
    model.eval()
    latents = model.encode(inputs, mask_probs=mask_probs or None)
    out = model.decode(latents, chunk_size=chunk_size)
    rec_video = out.image.float().cpu()
    rec_audio = out.audio.float().cpu()
    probs = out.label.float().cpu().softmax(-1)
    scores = {}
    if video is not None:
        scores["video"] = psnr(rec_video, inputs["image"].cpu())
    if audio is not None:
        scores["audio"] = psnr(rec_audio, inputs["audio"].cpu())
    if not batched:
        rec_video, rec_audio, probs = rec_video[0], rec_audio[0], probs[0]
    return AutoencodeResult(video=rec_video, audio=rec_audio, label_probs=probs, psnr=scores)
