"""Reconstruct video + audio (and classify) with the multimodal autoencoder; PSNR."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from perceiver_io.inference.common import model_device as _model_device
from perceiver_io.inference.common import require_model as _require
from perceiver_io.metrics import psnr_from_mse


def psnr(reconstruction: Tensor, target: Tensor, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB: ``10·log10(data_range² / MSE)`` (``inf`` when identical)."""
    if reconstruction.shape != target.shape:
        raise ValueError(f"psnr: shapes differ, {tuple(reconstruction.shape)} vs {tuple(target.shape)}")
    return psnr_from_mse(float((reconstruction.float() - target.float()).square().mean()), data_range)


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
        if name == "video" and x.numel():
            if not x.is_floating_point():
                raise TypeError(f"video must be floating point with values in [0, 1], got dtype {x.dtype}")
            lo, hi = float(x.min()), float(x.max())
            if not (lo >= 0.0 and hi <= 1.0):
                raise ValueError(f"video must have values in [0, 1] (the model's training range), got [{lo:g}, {hi:g}]")
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
