"""The one registry of models: named presets, each with everything known about its configuration.

A preset is a function returning a config, registered with the model class it builds and its
:class:`PretrainedInfo` (the published checkpoint it describes, how to import it, and how to feed
it at inference), as timm's ``@register_model`` next to its ``default_cfgs``::

    @register_model("vision-perceiver-fourier", ImageClassifier, info=PretrainedInfo(
        hub_id="deepmind/vision-perceiver-fourier", hf_architecture="PerceiverForImageClassificationFourier",
        mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), crop_size=224))
    def vision_perceiver_fourier() -> ImageClassifierConfig: ...

Every model family also registers tiny ``test-*`` presets (``info.tiny = True``) that tests,
``perceiver-io demo`` and the benchmarks' smoke runs use. This module imports nothing from the
models, so checkpoints, tasks and the CLI can all read it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from perceiver_io.config import Config

__all__ = [
    "PretrainedInfo",
    "Preset",
    "register_model",
    "create_model",
    "list_models",
    "get_config",
    "get_preset",
    "model_class",
    "preset_for_architecture",
]


@dataclass(frozen=True)
class PretrainedInfo:
    """What is known about a preset beyond its config.

    * ``hub_id``: the Hugging Face hub name of the published checkpoint (``None``: not published);
    * ``hf_architecture``: ``transformers``' class of that checkpoint (its ``config.json``
      ``architectures``), which selects the converter;
    * ``paper_params``: the parameter count the paper reports, where it does;
    * ``mean``/``std``/``crop_size``/``resize_size``: image normalisation and centre-crop at inference;
    * ``input_range``: the value range the model was trained on (e.g. flow frames in ``(-1, 1)``);
    * ``output_scale``: factor applied to the model's output at inference (flow: the colab's ×20);
    * ``tile_size``: inference tile ``(H, W)`` for inputs larger than the training size (flow);
    * ``tiny``: a test preset (``test-*``).
    """

    hub_id: str | None = None
    hf_architecture: str | None = None
    paper_params: str | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    crop_size: int | None = None
    resize_size: int | None = None
    input_range: tuple[float, float] | None = None
    output_scale: float | None = None
    tile_size: tuple[int, int] | None = None
    tiny: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Preset:
    name: str
    model_class: type
    config_fn: Callable[[], Config]
    info: PretrainedInfo


_PRESETS: dict[str, Preset] = {}
_CLASSES: dict[str, type] = {}


def register_model(
    name: str, model_class: type, info: PretrainedInfo | None = None
) -> Callable[[Callable[[], Config]], Callable[[], Config]]:
    """Register the decorated config function as preset ``name`` of ``model_class``."""

    def decorator(fn: Callable[[], Config]) -> Callable[[], Config]:
        if name in _PRESETS:
            raise ValueError(f"model preset {name!r} is already registered")
        tiny = name.startswith("test-")
        preset_info = info or PretrainedInfo(tiny=tiny)
        if tiny and not preset_info.tiny:
            raise ValueError(f"preset {name!r}: test-* presets must have info.tiny=True")
        _PRESETS[name] = Preset(name, model_class, fn, preset_info)
        _CLASSES[model_class.__name__] = model_class
        return fn

    return decorator


def list_models(include_tests: bool = True) -> list[str]:
    """Names of all registered presets, sorted (``include_tests=False``: without ``test-*``)."""
    return sorted(n for n, p in _PRESETS.items() if include_tests or not p.info.tiny)


def get_preset(name: str) -> Preset:
    if name not in _PRESETS:
        raise KeyError(f"unknown model {name!r}; available: {', '.join(list_models())}")
    return _PRESETS[name]


def get_config(name: str, **overrides: Any) -> Config:
    """The preset's config with ``overrides`` applied (nested configs take dicts)."""
    return get_preset(name).config_fn().replace(**overrides)


def create_model(name: str, **overrides: Any):
    """Build the preset ``name``; e.g. ``create_model("perceiver-io-tiny", encoder={"num_latents": 32})``."""
    return get_preset(name).model_class(get_config(name, **overrides))


def model_class(class_name: str) -> type:
    """A registered model class by its name (as saved in ``config.json``)."""
    if class_name not in _CLASSES:
        raise ValueError(f"unknown model_class {class_name!r}; known: {sorted(_CLASSES)}")
    return _CLASSES[class_name]


def preset_for_architecture(architecture: str) -> Preset | None:
    """The published preset whose checkpoint has ``transformers`` architecture ``architecture``."""
    for preset in _PRESETS.values():
        if preset.info.hf_architecture == architecture:
            return preset
    return None
