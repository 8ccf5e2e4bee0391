"""Typed configuration: dataclasses filled from defaults, a YAML file, the environment and flags.

Precedence is flags, then environment, then file, then defaults. Unknown keys are rejected
with their name, so a typo never passes silently.
"""

from __future__ import annotations

import dataclasses
import os
import types
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

from raftorch.errors import Invalid

T = TypeVar("T")


def _norm(key: str) -> str:
    return key.replace("-", "_")


def _coerce(value: Any, kind: Any, where: str) -> Any:
    origin = get_origin(kind)
    if origin in (Union, types.UnionType):
        options = [a for a in get_args(kind) if a is not type(None)]
        if value is None:
            return None
        return _coerce(value, options[0], where)
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            return value.lower() in ("1", "true", "yes", "on")
        raise Invalid(f"{where}: expected true or false, got {value!r}")
    if kind in (int, float):
        if isinstance(value, bool):
            raise Invalid(f"{where}: expected a number, got {value!r}")
        try:
            return kind(value)
        except (TypeError, ValueError):
            raise Invalid(f"{where}: expected a number, got {value!r}") from None
    if kind is str:
        if isinstance(value, (dict, list)):
            raise Invalid(f"{where}: expected a string, got {type(value).__name__}")
        return str(value)
    if kind is Path:
        return Path(str(value))
    if origin is dict:
        if isinstance(value, str):
            return parse_pairs(value, where)
        if not isinstance(value, Mapping):
            raise Invalid(f"{where}: expected a mapping of NAME: VALUE")
        return {str(k): str(v) for k, v in value.items()}
    if origin is list:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        if not isinstance(value, list):
            raise Invalid(f"{where}: expected a list")
        return [str(v) for v in value]
    return value


def parse_pairs(text: str, where: str) -> dict[str, str]:
    """Parse `NAME=VALUE,NAME=VALUE`."""
    out: dict[str, str] = {}
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            raise Invalid(f"{where}: expected NAME=VALUE, got {item!r}")
        out[name.strip()] = value.strip()
    return out


def build(cls: type[T], layers: Sequence[tuple[str, Mapping[str, Any]]]) -> T:
    """Fill `cls` from layers, lowest precedence first; each layer is (source name, values)."""
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    merged: dict[str, Any] = {}
    for source, values in layers:
        for raw_key, value in values.items():
            key = _norm(str(raw_key))
            if key not in names:
                known = ", ".join(sorted(n.replace("_", "-") for n in names))
                raise Invalid(f"{source}: unknown key {raw_key!r} (known keys: {known})")
            if value is None:
                continue
            merged[key] = _coerce(value, hints[key], f"{source}: key {raw_key!r}")
    try:
        return cls(**merged)
    except TypeError as exc:
        raise Invalid(f"configuration incomplete: {exc}") from None


def load(cls: type[T], config_file: Path | None, env_prefix: str, flags: Mapping[str, Any]) -> T:
    """A program's configuration: flags over `<env_prefix>_*` variables over the file over defaults."""
    layers: list[tuple[str, Mapping[str, Any]]] = []
    if config_file is not None:
        layers.append((f"config file {config_file}", read_file(config_file)))
    layers.append(("environment", from_env(cls, env_prefix)))
    layers.append(("flags", {k: v for k, v in flags.items() if v is not None}))
    return build(cls, layers)


def read_file(path: Path) -> dict[str, Any]:
    # Imported here: services started with flags only (the agent) do without its ~1 MB.
    import yaml

    try:
        text = path.read_text()
    except OSError as exc:
        raise Invalid(f"cannot read config file {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise Invalid(f"config file {path}: not valid YAML{where}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise Invalid(f"config file {path}: expected a mapping of keys, got {type(data).__name__}")
    return data


def from_env(cls: type[Any], prefix: str) -> dict[str, str]:
    """Values from PREFIX_FIELD environment variables."""
    out: dict[str, str] = {}
    for f in dataclasses.fields(cls):
        value = os.environ.get(f"{prefix}_{f.name.upper()}")
        if value is not None:
            out[f.name] = value
    return out
