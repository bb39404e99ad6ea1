"""Boundary checks: bad input raises an error naming the argument, expected and actual values."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "check_inputs",
    "check_mask",
    "check_tensor",
    "check_dtype",
    "check_indices",
    "check_finite",
    "allow_non_finite",
]

_CHECK_FINITE = True


def allow_non_finite(allow: bool = True) -> None:
    """Switch off (``True``) or on (``False``) the check that real input rows of CPU tensors are finite.
    It costs one pass over the inputs; it is skipped under ``torch.compile`` and on accelerators,
    where it would be a host sync per forward."""
    global _CHECK_FINITE
    _CHECK_FINITE = not allow


def check_tensor(name: str, x: object, ndim: int, shape_desc: str) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape {shape_desc}, got {type(x).__name__}")
    if x.dim() != ndim:
        raise ValueError(f"{name} must have shape {shape_desc}, got {tuple(x.shape)}")
    return x


def check_mask(name: str, mask: Tensor | None, batch_size: int, length: int) -> None:
    if mask is None:
        return
    check_tensor(name, mask, 2, f"({batch_size}, {length})")
    if mask.dtype != torch.bool:
        raise TypeError(f"{name} must be a bool tensor (True = real/attend), got dtype {mask.dtype}")
    if tuple(mask.shape) != (batch_size, length):
        raise ValueError(f"{name} must have shape ({batch_size}, {length}), got {tuple(mask.shape)}")


def check_inputs(
    inputs: Tensor, input_mask: Tensor | None, num_channels: int, name: str = "inputs", mask_name: str = "input_mask"
) -> None:
    """``inputs`` must be ``(B, M, num_channels)`` floating point; ``input_mask`` ``(B, M)`` bool."""
    check_tensor(name, inputs, 3, f"(B, M, {num_channels})")
    if inputs.shape[-1] != num_channels:
        raise ValueError(f"{name} must have {num_channels} channels (last dim), got shape {tuple(inputs.shape)}")
    if not inputs.is_floating_point():
        raise TypeError(f"{name} must be floating point, got dtype {inputs.dtype}")
    check_mask(mask_name, input_mask, inputs.shape[0], inputs.shape[1])


def check_dtype(name: str, x: Tensor, expected: torch.dtype) -> None:
    """Outside autocast, floating inputs must have the model's dtype (autocast casts them itself)."""
    if x.dtype == expected or torch.is_autocast_enabled(x.device.type):
        return
    raise TypeError(
        f"{name} has dtype {x.dtype} but the model's parameters are {expected}: convert the inputs "
        f"(x.to({expected})), the model (model.to({x.dtype})), or run under torch.autocast"
    )


def check_indices(name: str, indices: Tensor, size: int) -> None:
    """Flat indices ``(P,)`` must be integers in ``[0, size)`` (negative ones would wrap around)."""
    check_tensor(name, indices, 1, f"(P,) integers in [0, {size})")
    if indices.is_floating_point() or indices.dtype == torch.bool:
        raise TypeError(f"{name} must be an integer tensor, got dtype {indices.dtype}")
    if indices.numel() and not torch.compiler.is_compiling():
        lo, hi = int(indices.min()), int(indices.max())
        if lo < 0 or hi >= size:
            raise ValueError(f"{name} must be in [0, {size}) (the output points), got values in [{lo}, {hi}]")


def check_finite(name: str, x: Tensor) -> None:
    """NaN or Inf in ``x`` (padding already zeroed) -> ``ValueError`` (see :func:`allow_non_finite`).

    Checked for CPU tensors only: on an accelerator the check would be a host sync per forward."""
    if not _CHECK_FINITE or torch.compiler.is_compiling() or not x.is_floating_point() or x.device.type != "cpu":
        return
    if x.numel() and not bool(torch.isfinite(torch.stack(torch.aminmax(x))).all()):  # one reduction, no mask
        bad = (~torch.isfinite(x)).nonzero()[0].tolist()
        raise ValueError(
            f"{name} holds NaN or Inf (first at index {tuple(bad)}); mark such rows as padding in the input "
            "mask, or call perceiver_io.validation.allow_non_finite() to let them through"
        )
