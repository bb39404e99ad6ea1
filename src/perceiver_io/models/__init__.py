"""Assembled models and their named presets."""

from perceiver_io.models.base import PerceiverModel
from perceiver_io.models.perceiver_io import (
    PerceiverIO,
    PerceiverIOBase,
    PerceiverIOConfig,
    PerceiverIOOutput,
    QueryConfig,
)
from perceiver_io.models.registry import create_model, get_config, list_models, register_model

__all__ = [
    "PerceiverModel",
    "PerceiverIO",
    "PerceiverIOBase",
    "PerceiverIOConfig",
    "PerceiverIOOutput",
    "QueryConfig",
    "create_model",
    "get_config",
    "list_models",
    "register_model",
]
