"""Configs are data: YAML files loaded into dataclasses, overridden with ``--set key=value``.

Generic over any (nested) dataclass type: :func:`load_config` reads YAML, :func:`from_dict`
builds the dataclass and rejects unknown keys by their dotted name, :func:`apply_overrides`
applies ``a.b=value`` strings (values parsed as YAML, so ``x=0.5``, ``flag=true``,
``classes=[a,b]`` work), :func:`save_config` writes the resolved config next to outputs.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from typing import Any, Sequence, TypeVar

import yaml

from backbone.errors import UserError

T = TypeVar("T")


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _strip_optional(tp: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _convert(value: Any, tp: Any, where: str, source: str) -> Any:
    tp = _strip_optional(tp)
    if value is None:
        return None
    if _is_dataclass_type(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise UserError(f"{source}: {where} must be a mapping, got {value!r}")
        return from_dict(tp, value, source=source, prefix=where + ".")
    origin = typing.get_origin(tp)
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp is int and isinstance(value, bool):
        raise UserError(f"{source}: {where} must be an integer, got {value!r}")
    if tp in (int, str, bool) and not isinstance(value, tp):
        if tp is str and isinstance(value, (int, float)):
            return str(value)
        raise UserError(f"{source}: {where} must be {tp.__name__}, got {value!r}")
    if origin in (list, tuple, Sequence) or tp in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise UserError(f"{source}: {where} must be a list, got {value!r}")
        args = typing.get_args(tp)
        if args and args[-1] is not Ellipsis and origin is not tuple:
            value = [_convert(v, args[0], f"{where}[{i}]", source) for i, v in enumerate(value)]
        elif args and origin is tuple and args[-1] is Ellipsis:
            value = [_convert(v, args[0], f"{where}[{i}]", source) for i, v in enumerate(value)]
        return list(value)
    return value


def from_dict(cls: type[T], data: dict, *, source: str = "config", prefix: str = "") -> T:
    """Build dataclass ``cls`` from ``data``; unknown keys raise :class:`UserError` naming them."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UserError(f"{source}: {prefix.rstrip('.') or 'the config'} must be a mapping")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = [k for k in data if k not in fields]
    if unknown:
        known = ", ".join(fields)
        raise UserError(f"{source}: unknown config key {prefix}{unknown[0]!s} (known keys here: {known})")
    kwargs = {k: _convert(v, hints[k], prefix + k, source) for k, v in data.items()}
    return cls(**kwargs)


def to_dict(cfg: Any) -> dict:
    """The config as plain data (for YAML/JSON and checkpoints)."""
    return dataclasses.asdict(cfg)


def apply_overrides(cfg: T, overrides: Sequence[str]) -> T:
    """Return a copy of ``cfg`` with ``key.sub=value`` overrides applied (value parsed as YAML)."""
    data = to_dict(cfg)
    for item in overrides or ():
        if "=" not in item:
            raise UserError(f"--set {item!r}: expected key=value")
        key, raw = item.split("=", 1)
        key = key.strip()
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        node = data
        parts = key.split(".")
        for i, part in enumerate(parts[:-1]):
            if not isinstance(node, dict) or part not in node or not isinstance(node[part], dict):
                raise UserError(f"--set {item}: unknown config key {'.'.join(parts[: i + 1])}")
            node = node[part]
        if parts[-1] not in node:
            raise UserError(f"--set {item}: unknown config key {key}")
        node[parts[-1]] = value
    return from_dict(type(cfg), data, source="--set")


def load_config(cls: type[T], path: str | os.PathLike | None = None, overrides: Sequence[str] = ()) -> T:
    """Load ``cls`` from YAML file ``path`` (defaults when None), then apply ``overrides``."""
    data: dict = {}
    if path is not None:
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise UserError(f"config {path}: no such file")
        try:
            with open(path, encoding="utf-8") as f:
                data = yaml.safe_load(f) or {}
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            line = f" line {mark.line + 1}" if mark is not None else ""
            raise UserError(f"config {path}:{line} is not valid YAML ({getattr(e, 'problem', e)})") from None
        except (OSError, UnicodeDecodeError) as e:
            raise UserError(f"config {path}: cannot read ({e})") from None
    cfg = from_dict(cls, data, source=f"config {path}" if path else "config")
    return apply_overrides(cfg, overrides) if overrides else cfg


def save_config(cfg: Any, path: str | os.PathLike) -> None:
    """Write the resolved config as YAML (atomically)."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        yaml.safe_dump(to_dict(cfg), f, sort_keys=False)
    os.replace(tmp, path)
