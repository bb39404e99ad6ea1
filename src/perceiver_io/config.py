"""Typed, validated, JSON round-trippable configuration dataclasses."""

from __future__ import annotations

import dataclasses
import json
import typing
from typing import Any, TypeVar

__all__ = ["Config", "ConfigError"]

C = TypeVar("C", bound="Config")


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field."""


class Config:
    """Mixin for config dataclasses: validation helpers, ``to_dict``/``from_dict``, JSON.

    Subclasses are ``@dataclass``es and implement ``validate()``; nested configs are fields
    whose type is another ``Config`` dataclass.
    """

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:  # overridden
        pass

    # -- helpers for validate() ----------------------------------------------------------
    def _positive(self, *names: str, allow_none: bool = False) -> None:
        for name in names:
            value = getattr(self, name)
            if value is None and allow_none:
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"{type(self).__name__}.{name} must be a positive integer, got {value!r}")

    def _probability(self, *names: str) -> None:
        for name in names:
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
                raise ConfigError(f"{type(self).__name__}.{name} must be in [0, 1), got {value!r}")

    def _one_of(self, name: str, choices: tuple) -> None:
        value = getattr(self, name)
        if value not in choices:
            raise ConfigError(f"{type(self).__name__}.{name} must be one of {choices}, got {value!r}")

    def _divisible(self, name: str, value: int | None, heads_name: str) -> None:
        heads = getattr(self, heads_name)
        if value is not None and value % heads != 0:
            raise ConfigError(f"{type(self).__name__}.{name} ({value}) must be divisible by {heads_name} ({heads})")

    # -- serialisation -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), indent=2, **kwargs)

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any]) -> C:
        if not isinstance(data, dict):
            raise ConfigError(f"{cls.__name__}: expected a mapping, got {type(data).__name__}")
        fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise ConfigError(f"{cls.__name__}: unknown field(s) {unknown}; known: {sorted(fields)}")
        hints = typing.get_type_hints(cls)
        kwargs = {}
        for name, value in data.items():
            sub = _config_type(hints[name])
            if sub is not None and isinstance(value, dict):
                value = sub.from_dict(value)
            elif isinstance(value, list):
                value = tuple(value) if _is_tuple(hints[name]) else value
            kwargs[name] = value
        return cls(**kwargs)

    @classmethod
    def from_json(cls: type[C], text: str) -> C:
        return cls.from_dict(json.loads(text))

    def replace(self: C, **overrides: Any) -> C:
        """A copy with fields replaced; nested configs accept a dict of their own fields."""
        current = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}  # type: ignore[arg-type]
        for name, value in overrides.items():
            if name not in current:
                raise ConfigError(f"{type(self).__name__}: unknown field {name!r}; known: {sorted(current)}")
            if isinstance(current[name], Config) and isinstance(value, dict):
                value = current[name].replace(**value)
            current[name] = value
        return type(self)(**current)


def _config_type(hint: Any) -> type[Config] | None:
    for t in (hint, *typing.get_args(hint)):
        if isinstance(t, type) and issubclass(t, Config):
            return t
    return None


def _is_tuple(hint: Any) -> bool:
    return any(t is tuple or typing.get_origin(t) is tuple for t in (hint, *typing.get_args(hint)))
