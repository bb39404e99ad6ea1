"""Helpers shared by the inference modules."""

from __future__ import annotations

import torch

__all__ = ["model_device", "require_model"]


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of the model's parameters (CPU for a model without any)."""
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def require_model(model: object, class_name: str, fn: str) -> None:
    """Raise ``TypeError`` unless ``model`` is a ``class_name`` (or a subclass)."""
    if class_name not in {c.__name__ for c in type(model).__mro__}:
        raise TypeError(f"{fn} needs a {class_name}, got {type(model).__name__}")
