"""Typed, validated, JSON round-trippable configuration dataclasses."""

from __future__ import annotations

import dataclasses
import functools
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
        self._check_types()
        self.validate()

    def _check_types(self) -> None:
        """Fields typed ``Literal[...]`` must hold one of the choices and ``bool`` fields a bool
        (so a string ``"no"`` is not taken as true); the message names the field."""
        for name, (choices, is_bool, optional) in _checked_fields(type(self)).items():
            value = getattr(self, name)
            if value is None and optional:
                continue
            if choices is not None and value not in choices:
                raise ConfigError(f"{type(self).__name__}.{name} must be one of {choices}, got {value!r}")
            if is_bool and not isinstance(value, bool):
                raise ConfigError(f"{type(self).__name__}.{name} must be true or false, got {value!r}")

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


@functools.cache
def _checked_fields(cls: type) -> dict[str, tuple[tuple | None, bool, bool]]:
    """Per field of a config class: (Literal choices or None, is a bool, may be None)."""
    out = {}
    try:
        hints = typing.get_type_hints(cls)
    except NameError:  # a config class whose annotations name local types: no checks from hints
        return out
    for name, hint in hints.items():
        args = typing.get_args(hint)
        optional = type(None) in args
        inner = [a for a in args if a is not type(None)] if optional else [hint]
        if len(inner) != 1:
            continue
        h = inner[0]
        if typing.get_origin(h) is typing.Literal:
            out[name] = (typing.get_args(h), False, optional)
        elif h is bool:
            out[name] = (None, True, optional)
    return out


def _config_type(hint: Any) -> type[Config] | None:
    for t in (hint, *typing.get_args(hint)):
        if isinstance(t, type) and issubclass(t, Config):
            return t
    return None


def _is_tuple(hint: Any) -> bool:
    return any(t is tuple or typing.get_origin(t) is tuple for t in (hint, *typing.get_args(hint)))
