"""Apply YAML files and ``key=value`` overrides (dotted keys) to nested typed configs, with type checks.

``apply_overrides(cfg, {"train.max_steps": 200, "model.encoder.num_latents": 64})`` returns a new
config; an unknown key or a value of the wrong type raises :class:`ConfigError` with one line that
names the key, the expected type and the value.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

from perceiver_io.config import Config, ConfigError

_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")

__all__ = ["parse_overrides", "load_yaml", "flatten", "apply_overrides", "config_keys"]


def parse_value(text: str) -> Any:
    """YAML scalar parsing of one override value: ``64`` -> int, ``1e-3`` -> float, ``true`` -> bool, ``null``."""
    import yaml

    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, str) and _NUMBER.match(value.strip()):
        return float(value)  # YAML 1.1 reads "1e-3" as a string
    return value


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["train.max_steps=200", ...]`` -> ``{"train.max_steps": 200, ...}``."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value (e.g. train.max_steps=200)")
        key, _, value = item.partition("=")
        out[key.strip()] = parse_value(value)
    return out


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mapping -> dotted keys; mappings are descended into, everything else is a leaf."""
    out: dict[str, Any] = {}
    for k, v in data.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def load_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML config file as dotted overrides."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {str(path)!r} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(path)!r} must hold a mapping at the top level")
    return flatten(data)


def config_keys(cfg: Config, prefix: str = "") -> list[str]:
    """Every dotted leaf key of ``cfg``."""
    keys = []
    for f in dataclasses.fields(cfg):  # type: ignore[arg-type]
        v = getattr(cfg, f.name)
        if isinstance(v, Config):
            keys.extend(config_keys(v, f"{prefix}{f.name}."))
        else:
            keys.append(prefix + f.name)
    return keys


def _type_name(hint: Any) -> str:
    if isinstance(hint, type):
        return hint.__name__
    if typing.get_origin(hint) is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(hint))
    return str(hint).replace("typing.", "")


def _check(value: Any, hint: Any) -> tuple[bool, Any]:
    """Whether ``value`` fits ``hint``; returns the (possibly converted) value."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return True, value
    if origin in (Union, types.UnionType):
        for arg in typing.get_args(hint):
            ok, v = _check(value, arg)
            if ok:
                return True, v
        return False, value
    if origin is Literal:
        return value in typing.get_args(hint), value
    if hint is type(None):
        return value is None, value
    if origin is tuple or hint is tuple:
        if not isinstance(value, (list, tuple)):
            return False, value
        args = typing.get_args(hint)
        if args and args[-1] is not Ellipsis and len(args) != len(value):
            return False, value
        elem = [args[0]] * len(value) if args and args[-1] is Ellipsis else list(args) or [Any] * len(value)
        conv = []
        for v, h in zip(value, elem, strict=True):
            ok, v = _check(v, h)
            if not ok:
                return False, value
            conv.append(v)
        return True, tuple(conv)
    if origin in (list, dict):
        return isinstance(value, origin), value
    if hint is bool:
        return isinstance(value, bool), value
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return ok, float(value) if ok else value
    if hint is str:
        return isinstance(value, str), value
    if isinstance(hint, type):
        return isinstance(value, hint), value
    return True, value


def _resolve(cfg: Config, path: list[str], value: Any, full_key: str) -> dict[str, Any]:
    """Check ``path`` exists below ``cfg`` and ``value`` fits its type; -> flat ``{dotted key: converted value}``."""
    fields = {f.name for f in dataclasses.fields(cfg)}  # type: ignore[arg-type]
    name = path[0]
    if name not in fields:
        raise KeyError(name)
    current = getattr(cfg, name)
    if len(path) > 1 and isinstance(current, dict):  # a mapping field (e.g. mask_probs): one entry of it
        return {name: _Entry(current, ".".join(path[1:]), value)}
    if len(path) > 1:
        if not isinstance(current, Config):
            raise KeyError(name)
        return {f"{name}.{k}": v for k, v in _resolve(current, path[1:], value, full_key).items()}
    if isinstance(current, Config):
        if not isinstance(value, dict):
            raise ConfigError(f"config key {full_key!r} is a section; expected a mapping, got {value!r}")
        out: dict[str, Any] = {}
        for k, v in flatten(value).items():
            out.update({f"{name}.{kk}": vv for kk, vv in _resolve(current, k.split("."), v, f"{full_key}.{k}").items()})
        return out
    hint = typing.get_type_hints(type(cfg))[name]
    ok, converted = _check(value, hint)
    if not ok:
        raise ConfigError(f"config key {full_key!r} expects {_type_name(hint)}, got {value!r} ({type(value).__name__})")
    return {name: converted}


class _Entry(dict):
    """One entry ``{key: value}`` of a mapping-valued field, and the field's current mapping (``base``)."""

    def __init__(self, base: dict, key: str, value: Any) -> None:
        super().__init__({key: value})
        self.base = base


def _nest(flat: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in flat.items():
        *parents, leaf = key.split(".")
        node = out
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def apply_overrides(cfg: Config, overrides: dict[str, Any]) -> Config:
    """A copy of ``cfg`` with every dotted key set at once (sections are validated after all their changes)."""
    flat: dict[str, Any] = {}
    for key, value in overrides.items():
        try:
            for k, v in _resolve(cfg, key.split("."), value, key).items():
                if isinstance(v, _Entry):  # entries of one mapping field given as separate keys add up
                    prev = flat.get(k)
                    v = {**(prev if isinstance(prev, dict) else v.base), **v}
                flat[k] = v
        except KeyError:
            close = difflib.get_close_matches(key, config_keys(cfg), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"unknown config key {key!r}{hint}") from None
    try:
        return cfg.replace(**_nest(flat))
    except ConfigError:
        raise
    except (TypeError, ValueError) as e:
        raise ConfigError(f"invalid config: {str(e).splitlines()[0]}") from None
