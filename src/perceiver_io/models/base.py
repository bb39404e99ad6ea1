"""Base class of assembled models: config handling, saving and loading."""

from __future__ import annotations

import os
from typing import ClassVar

from torch import nn

from perceiver_io.config import Config

__all__ = ["PerceiverModel", "MODEL_CLASSES"]

MODEL_CLASSES: dict[str, type[PerceiverModel]] = {}


class PerceiverModel(nn.Module):
    """An assembled model built from one typed config. Subclasses set ``config_class``."""

    config_class: ClassVar[type[Config]]

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        MODEL_CLASSES[cls.__name__] = cls

    def __init__(self, config: Config) -> None:
        super().__init__()
        if not isinstance(config, self.config_class):
            raise TypeError(f"{type(self).__name__} needs a {self.config_class.__name__}, got {type(config).__name__}")
        self.config = config

    def num_parameters(self, trainable_only: bool = False) -> int:
        """Number of distinct parameters (shared weights counted once)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """Write ``config.json`` and ``model.safetensors`` to ``directory`` (atomically per file)."""
        from perceiver_io.checkpoints import save_pretrained

        save_pretrained(self, directory)

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, **kwargs) -> PerceiverModel:
        """Load a model saved by :meth:`save_pretrained`; it must be of this class (or a subclass)."""
        from perceiver_io.checkpoints import from_pretrained

        model = from_pretrained(directory, **kwargs)
        if not isinstance(model, cls):
            raise TypeError(f"{os.fspath(directory)} holds a {type(model).__name__}, not a {cls.__name__}")
        return model
