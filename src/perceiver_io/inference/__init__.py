"""Inference helpers for the published tasks: fill masked bytes, classify images, estimate optical flow
between two frames, and reconstruct video + audio with the multimodal autoencoder.

Every function takes an already loaded model (``perceiver_io.from_pretrained(dir)``), runs it under
``torch.no_grad()`` in eval mode on the model's device, and returns plain results (dataclasses,
tensors on the CPU). Images may be given as a path, a ``PIL.Image``, a ``numpy`` array ``(H, W, C)``
or a tensor ``(C, H, W)``: ``uint8`` values are in ``[0, 255]``, floating-point values in ``[0, 1]``.
Pillow is needed only to read image files or ``PIL`` images (extra ``vision``).
"""

from perceiver_io.inference.flow import FLOW_SCALE_FACTOR, estimate_flow, flow_tile_starts, flow_tile_weights
from perceiver_io.inference.images import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ClassPrediction,
    classify_image,
    load_image,
    preprocess_image,
)
from perceiver_io.inference.multimodal import AutoencodeResult, autoencode, psnr
from perceiver_io.inference.text import BytePrediction, FillMaskResult, fill_mask, fill_masked_ids

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "FLOW_SCALE_FACTOR",
    "BytePrediction",
    "FillMaskResult",
    "ClassPrediction",
    "AutoencodeResult",
    "fill_mask",
    "fill_masked_ids",
    "load_image",
    "preprocess_image",
    "classify_image",
    "flow_tile_starts",
    "flow_tile_weights",
    "estimate_flow",
    "psnr",
    "autoencode",
]
