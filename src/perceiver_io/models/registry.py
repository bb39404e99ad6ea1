"""Named presets: ``create_model(name, **overrides)`` and ``list_models()``.

A preset is a function returning a config, registered with the model class it builds::

    @register_model("perceiver-io-tiny", PerceiverIO)
    def tiny() -> PerceiverIOConfig: ...
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from perceiver_io.config import Config
from perceiver_io.models.base import PerceiverModel

__all__ = ["register_model", "create_model", "list_models", "get_config"]

_REGISTRY: dict[str, tuple[type[PerceiverModel], Callable[[], Config]]] = {}


def register_model(
    name: str, model_class: type[PerceiverModel]
) -> Callable[[Callable[[], Config]], Callable[[], Config]]:
    def decorator(fn: Callable[[], Config]) -> Callable[[], Config]:
        if name in _REGISTRY:
            raise ValueError(f"model preset {name!r} is already registered")
        _REGISTRY[name] = (model_class, fn)
        return fn

    return decorator


def list_models() -> list[str]:
    """Names of all registered presets, sorted."""
    return sorted(_REGISTRY)


def _lookup(name: str) -> tuple[type[PerceiverModel], Callable[[], Config]]:
    if name not in _REGISTRY:
        raise KeyError(f"unknown model {name!r}; available: {', '.join(list_models())}")
    return _REGISTRY[name]


def get_config(name: str, **overrides: Any) -> Config:
    """The preset's config with ``overrides`` applied (nested configs take dicts)."""
    return _lookup(name)[1]().replace(**overrides)


def create_model(name: str, **overrides: Any) -> PerceiverModel:
    """Build the preset ``name``; e.g. ``create_model("perceiver-io-tiny", encoder={"num_latents": 32})``."""
    model_class, _ = _lookup(name)
    return model_class(get_config(name, **overrides))
