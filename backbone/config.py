"""Configs are data: YAML files loaded into dataclasses, overridden with ``--set key=value``,
every value checked when loaded.

Generic over any (nested) dataclass type: :func:`load_config` reads YAML, :func:`from_dict`
builds the dataclass, :func:`apply_overrides` applies ``a.b=value`` strings (values parsed as
YAML, so ``x=0.5``, ``flag=true``, ``classes=[a,b]`` work), :func:`save_config` writes the
resolved config next to outputs. All three check every value and raise one
:class:`UserError` line naming the dotted key (``--set train.lr=abc: train.lr must be a
number, got 'abc'``); unknown keys are named the same way.

A schema declares its fields with :func:`setting`::

    @dataclass
    class TrainConfig:
        epochs: int = setting(10, ge=1)
        lr: float = setting(0.01, gt=0)
        lr_steps: list[int] = setting([7], ge=1)           # each element >= 1
        protocol: str = setting("voc", choices=("voc", "coco"))
        max_boxes: int | None = setting(None, ge=1)          # None always allowed when Optional

        def cross_check(self, prefix: str) -> None:         # optional: rules over several fields
            if sorted(self.lr_steps) != self.lr_steps:
                raise UserError(f"{prefix}lr_steps must be in increasing order, got {self.lr_steps}")

The type comes from the annotation (``int``, ``float``, ``bool``, ``str``, ``Optional[...]``,
``list[...]``, nested dataclasses). Checks: ints are ints (not booleans, not 2.5), floats are
finite numbers (ints accepted; strings such as ``'1e-3'``, which YAML 1.1 leaves as text,
parsed), booleans are booleans, strings are strings (numbers accepted as their text), lists
are lists; then the ranges (``ge``/``gt``/``le``/``lt``) and ``choices`` (per element for
lists) and ``min_len``; then each class's ``cross_check(prefix)``, whose :class:`UserError`
message names the keys as ``prefix + name``. :func:`check_config` runs the same checks on a
config built or changed in code; :func:`describe` lists every key with its type and rule.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
import os
import re
import types
import typing
from typing import Any, Sequence, TypeVar

import yaml

from .errors import UserError
from .googlenet import MIN_INPUT_SIZE as _GOOGLENET_MIN
from .io import YAMLShapeError, parse_yaml, read_yaml, write_text

T = TypeVar("T")

_META = "backbone.config"


# -- declarations ---------------------------------------------------------------------------

@dataclasses.dataclass
class Rules:
    """A field's checks (see :func:`setting`); for a list field they apply to each element."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    choices: tuple | None = None
    min_len: int | None = None
    doc: str = ""
    check: Any = None
    expect: str = ""


def setting(default: Any = dataclasses.MISSING, *, ge=None, gt=None, le=None, lt=None, choices=None,
            min_len: int | None = None, doc: str = "", default_factory=dataclasses.MISSING,
            check=None, expect: str = "") -> Any:
    """A dataclass field with its checks: bounds ``ge`` (>=), ``gt`` (>), ``le`` (<=), ``lt`` (<),
    ``choices`` (a sequence, or a mapping whose keys are the choices), ``min_len`` (lists);
    ``check``: a predicate on the value as given (after the type and range checks), for what the annotation cannot say (a state
    dict of tensors, a list of exactly 3), refused as ``{key} must be {expect}``.
    Mutable defaults (lists, dicts, dataclass instances) are copied per instance."""
    rules = Rules(ge, gt, le, lt, tuple(choices) if choices is not None else None, min_len, doc, check,
                  expect or "valid")
    meta = {_META: rules}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    if isinstance(default, (list, dict, set)) or dataclasses.is_dataclass(default):
        value = default
        return dataclasses.field(default_factory=lambda: copy.deepcopy(value), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def rules_of(f: dataclasses.Field) -> Rules | None:
    """The :class:`Rules` a field was declared with (None: a plain field, e.g. a section)."""
    return f.metadata.get(_META)


# -- facts about the backbone networks the schemas check ------------------------------------

#: smallest input side each network accepts (ceil-mode pools; torchvision's adaptive pools)
MIN_INPUT_SIZES = {"googlenet": _GOOGLENET_MIN, "googlenet_bn": 15, "inception_v3": 75}
#: largest input side any schema or checkpoint may ask for (a 1024 px input is 21 times the
#: activations of the paper's 224; a checkpoint's 100000 asked for 200 GB)
MAX_INPUT_SIZE = 1024
#: most classes a network head may have (ImageNet-21k has 21841; 10^8 asked for 400 GB)
MAX_NUM_CLASSES = 100_000
#: torchvision's Inception v3 auxiliary head (avg pool 5/3, then a 5x5 conv) needs a 17x17
#: Mixed_6e map: 299 px inputs and up, in training
INCEPTION_V3_AUX_MIN = 299


def check_input_size(arch: str, size: int, aux_logits: bool = False, prefix: str = "") -> None:
    """Raise :class:`UserError` (naming ``{prefix}input_size``) when network ``arch`` cannot
    take ``size`` px inputs (with its auxiliary heads in training when ``aux_logits``), or
    ``size`` is above :data:`MAX_INPUT_SIZE`."""
    if size > MAX_INPUT_SIZE:
        raise UserError(f"{prefix}input_size {size}: at most {MAX_INPUT_SIZE} px")
    need = MIN_INPUT_SIZES.get(arch)
    if need is not None and size < need:
        raise UserError(f"{prefix}input_size {size}: {prefix}arch {arch} needs at least {need} px")
    if aux_logits and arch == "inception_v3" and size < INCEPTION_V3_AUX_MIN:
        raise UserError(f"{prefix}input_size {size}: {prefix}arch {arch} with {prefix}aux_logits needs at least "
                        f"{INCEPTION_V3_AUX_MIN} px (its auxiliary head; or set {prefix}aux_logits=false)")


# -- checking ---------------------------------------------------------------------------------

class _Invalid(Exception):
    """A problem without its source (added by the public functions)."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _split_optional(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1:
            return rest[0], len(rest) < len(args)
    return tp, False


def _strip_optional(tp: Any) -> Any:
    return _split_optional(tp)[0]


@functools.lru_cache(maxsize=None)
def _fields(cls: type) -> tuple[tuple[str, Any, Rules | None], ...]:
    hints = typing.get_type_hints(cls)
    return tuple((f.name, hints[f.name], rules_of(f)) for f in dataclasses.fields(cls))


def _show(value: Any) -> str:
    """A value for a message, on one short line (a tensor or other object by its type)."""
    text = _show_plain(value)
    return text if text is not None and len(text) <= 200 else f"a {type(value).__name__}"


def _show_plain(value: Any) -> str | None:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_show(k)}: {_show(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (int, float)) or (type(value).__module__ == "numpy" and getattr(value, "ndim", 1) == 0):
        return str(value)
    return None


def _num(x: Any) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


def _bounds(r: Rules) -> str | None:
    lo = (f"[{_num(r.ge)}" if r.ge is not None else f"({_num(r.gt)}") if (r.ge, r.gt) != (None, None) else None
    hi = (f"{_num(r.le)}]" if r.le is not None else f"{_num(r.lt)})") if (r.le, r.lt) != (None, None) else None
    if lo and hi:
        return f"in {lo}, {hi}"
    if lo:
        return (">= " if lo[0] == "[" else "> ") + lo[1:]
    if hi:
        return ("<= " if hi[-1] == "]" else "< ") + hi[:-1]
    return None


def _type_name(tp: Any) -> str:
    tp = _strip_optional(tp)
    if tp is bool:
        return "true or false"
    if tp is int:
        return "an integer"
    if tp is float:
        return "a number"
    if tp is str:
        return "a string"
    if typing.get_origin(tp) in (list, tuple, Sequence) or tp in (list, tuple):
        return "a list"
    if _is_dataclass_type(tp):
        return "a mapping"
    return getattr(tp, "__name__", str(tp))


def _scalar(value: Any, tp: Any, key: str, optional: bool) -> Any:
    """``value`` converted to scalar type ``tp`` (raises :class:`_Invalid`)."""
    null = " or null" if optional else ""

    def bad():
        return _Invalid(f"{key} must be {_type_name(tp)}{null}, got {_show(value)}")

    if tp is bool:
        if not isinstance(value, bool):
            raise bad()
        return value
    numpy_kind = value.dtype.kind if type(value).__module__ == "numpy" and hasattr(value, "dtype") else ""
    if tp is int:
        if numpy_kind in ("i", "u"):
            return int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad()
        return value
    if tp is float:
        if isinstance(value, str):
            try:
                out = float(value.strip())
            except ValueError:
                raise bad() from None
        elif (isinstance(value, (int, float)) and not isinstance(value, bool)) or numpy_kind in ("i", "u", "f"):
            out = float(value)
        else:
            raise bad()
        if not math.isfinite(out):
            raise _Invalid(f"{key} must be a finite number{null}, got {_show(value)}")
        return out
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise bad()
    return value


def _apply_rules(value: Any, shown: Any, rules: Rules | None, key: str, optional: bool) -> None:
    if rules is None:
        return
    null = " or null" if optional else ""
    if rules.choices is not None and value not in rules.choices:
        raise _Invalid(f"{key} must be one of {', '.join(map(str, rules.choices))}{null}, got {_show(shown)}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        ok = ((rules.ge is None or value >= rules.ge) and (rules.gt is None or value > rules.gt)
              and (rules.le is None or value <= rules.le) and (rules.lt is None or value < rules.lt))
        if not ok:
            raise _Invalid(f"{key} must be {_bounds(rules)}{null}, got {_show(shown)}")


def _value(value: Any, tp: Any, key: str, rules: Rules | None) -> Any:
    """``value`` converted to annotation ``tp`` and checked against ``rules``."""
    tp, optional = _split_optional(tp)
    if value is None:
        if optional:
            return None
        raise _Invalid(f"{key} must be {_type_name(tp)}, got null")
    if _is_dataclass_type(tp):
        if isinstance(value, tp):
            _check(value, key + ".")
            return value
        if not isinstance(value, dict):
            raise _Invalid(f"{key} must be a mapping, got {_show(value)}")
        return _build(tp, value, key + ".")
    origin = typing.get_origin(tp)
    if origin in (list, tuple, Sequence) or tp in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise _Invalid(f"{key} must be a list{' or null' if optional else ''}, got {_show(value)}")
        args = typing.get_args(tp)
        elem = args[0] if args and (origin is not tuple or (len(args) == 2 and args[1] is Ellipsis)) else Any
        out = []
        for i, v in enumerate(value):
            ek = f"{key}[{i}]"
            if v is None:
                raise _Invalid(f"{ek} must be {_type_name(elem)}, got null")
            c = _scalar(v, elem, ek, False) if elem is not Any else v
            _apply_rules(c, v, rules, ek, False)
            out.append(c)
        if rules is not None and rules.min_len is not None and len(out) < rules.min_len:
            need = "must not be empty" if rules.min_len == 1 else f"needs at least {rules.min_len} elements"
            raise _Invalid(f"{key} {need}, got {_show(value)}")
        _predicate(out, value, rules, key)
        return out
    out = _scalar(value, tp, key, optional)
    _apply_rules(out, value, rules, key, optional)
    _predicate(out, value, rules, key)
    return out


def _predicate(out: Any, shown: Any, rules: Rules | None, key: str) -> None:
    if rules is not None and rules.check is not None and not rules.check(shown):  # the value as given
        raise _Invalid(f"{key} must be {rules.expect}, got {_show(shown)}")


def _cross(obj: Any, prefix: str) -> None:
    hook = getattr(obj, "cross_check", None)
    if hook is not None:
        try:
            hook(prefix)
        except UserError as e:
            raise _Invalid(str(e)) from None


def _build(cls: type[T], data: Any, prefix: str) -> T:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise _Invalid(f"{prefix.rstrip('.') or 'the config'} must be a mapping, got {_show(data)}")
    upgrade = getattr(cls, "upgrade", None)  # optional: older layouts of the section -> today's
    if upgrade is not None:
        try:
            data = upgrade(dict(data))
        except UserError as e:
            raise _Invalid(str(e)) from None
    fields = {name: (tp, rules) for name, tp, rules in _fields(cls)}
    unknown = [k for k in data if k not in fields]
    if unknown:
        raise _Invalid(f"unknown config key {prefix}{unknown[0]!s} (known keys here: {', '.join(fields)})")
    label = _labeller(cls, prefix)
    missing = [f.name for f in dataclasses.fields(cls) if f.name not in data
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise _Invalid(f"incomplete, missing {', '.join(missing)}")
    kwargs = {k: _value(v, fields[k][0], label(k), fields[k][1]) for k, v in data.items()}
    obj = cls(**kwargs)
    # defaults are values too (and may be replaced in code): every field, then the cross rules
    for name, tp, rules in _fields(cls):
        if name not in kwargs:
            _value(getattr(obj, name), tp, label(name), rules)
    _cross(obj, prefix)
    return obj


def _labeller(cls: type, prefix: str):
    """How messages name a field: ``prefix.key`` (configs), or ``field 'key'`` for a schema of
    saved data that sets ``FIELD_LABELS = True`` (backbone.formats)."""
    if getattr(cls, "FIELD_LABELS", False):
        return lambda name: f"field {prefix + name!r}"
    return lambda name: prefix + name


def _check(obj: Any, prefix: str) -> None:
    label = _labeller(type(obj), prefix)
    for name, tp, rules in _fields(type(obj)):
        _value(getattr(obj, name), tp, label(name), rules)
    _cross(obj, prefix)


def _raise(source: str | None, e: _Invalid):
    raise UserError(f"{source}: {e.message}" if source else e.message) from None


# -- the public functions ---------------------------------------------------------------------

def from_dict(cls: type[T], data: dict, *, source: str = "config", prefix: str = "") -> T:
    """Build dataclass ``cls`` from ``data`` and check every value; a problem (unknown key, wrong
    type, out of range) raises one :class:`UserError` line ``{source}: {dotted key} ...``."""
    try:
        return _build(cls, data, prefix)
    except _Invalid as e:
        _raise(source, e)


def check_config(cfg: Any, *, source: str | None = None, prefix: str = "") -> None:
    """Check a config built or changed in code as :func:`from_dict` checks a loaded one (keys
    named ``prefix + name``; the message starts with ``source:`` when given). Values are not
    converted: an int where a float is declared passes."""
    try:
        _check(cfg, prefix)
    except _Invalid as e:
        _raise(source, e)


def to_dict(cfg: Any) -> dict:
    """The config as plain data (for YAML/JSON and checkpoints)."""
    return dataclasses.asdict(cfg)


def _mentioned(key: str, message: str) -> bool:
    return re.search(rf"(?<![\w.]){re.escape(key)}(?!\w)", message) is not None


def apply_overrides(cfg: T, overrides: Sequence[str]) -> T:
    """Return a copy of ``cfg`` with ``key.sub=value`` overrides applied (value parsed as YAML),
    checked: a problem is reported as ``--set <the override naming the key>: ...``."""
    data = to_dict(cfg)
    overrides = list(overrides or ())
    for item in overrides:
        if "=" not in item:
            raise UserError(f"--set {item!r}: expected key=value")
        key, raw = item.split("=", 1)
        key = key.strip()
        try:
            value = parse_yaml(raw) if raw.strip() else None
        except YAMLShapeError as e:  # a recursive alias, a key given twice: never a value
            raise UserError(f"--set {item}: {e.problem}") from None
        except yaml.YAMLError:
            value = raw
        node, tp = data, type(cfg)
        parts = key.split(".")
        for i, part in enumerate(parts[:-1]):
            if not isinstance(node, dict) or part not in node:
                raise UserError(f"--set {item}: unknown config key {'.'.join(parts[: i + 1])}")
            sub = _strip_optional(typing.get_type_hints(tp).get(part)) if _is_dataclass_type(tp) else None
            if node[part] is None and _is_dataclass_type(sub):
                node[part] = to_dict(sub())  # an optional section left empty: its defaults, then the key
            if not isinstance(node[part], dict):
                raise UserError(f"--set {item}: unknown config key {'.'.join(parts[: i + 1])}")
            node, tp = node[part], sub
        if parts[-1] not in node:
            raise UserError(f"--set {item}: unknown config key {key}")
        node[parts[-1]] = value
    try:
        return _build(type(cfg), data, "")
    except _Invalid as e:
        # name the override(s) behind the problem (the last one setting a key the message names)
        last = {it.split("=", 1)[0].strip(): it for it in overrides}
        named = [it for key, it in last.items() if _mentioned(key, e.message)]
        _raise("--set " + ", ".join(named) if named else "config", e)


def load_config(cls: type[T], path: str | os.PathLike | None = None, overrides: Sequence[str] = ()) -> T:
    """Load ``cls`` from YAML file ``path`` (defaults when None), then apply ``overrides``."""
    data: dict = {}
    if path is not None:
        path = os.fspath(path)
        data = read_yaml(path, f"config {path}") or {}
    cfg = from_dict(cls, data, source=f"config {path}" if path else "config")
    return apply_overrides(cfg, overrides) if overrides else cfg


def save_config(cfg: Any, path: str | os.PathLike) -> None:
    """Write the resolved config as YAML (atomically)."""
    write_text(path, yaml.safe_dump(to_dict(cfg), sort_keys=False), what="config")


def describe(cls: type, prefix: str = "") -> list[str]:
    """One line per key of schema ``cls``: ``key: type rule``, e.g. ``train.lr: number > 0``
    (sections recursed; cross-field rules are the classes' ``cross_check``)."""
    lines = []
    for name, tp, rules in _fields(cls):
        inner, optional = _split_optional(tp)
        if _is_dataclass_type(inner):
            lines += describe(inner, prefix + name + ".")
            continue
        origin = typing.get_origin(inner)
        is_list = origin in (list, tuple, Sequence) or inner in (list, tuple)
        elem = typing.get_args(inner)[0] if is_list and typing.get_args(inner) else inner
        kind = {bool: "bool", int: "int", float: "number", str: "str"}.get(elem, getattr(elem, "__name__", str(elem)))
        text = f"list[{kind}]" if is_list else kind
        rule = []
        if rules is not None:
            if rules.choices is not None:
                rule.append("one of " + "|".join(map(str, rules.choices)))
            b = _bounds(rules)
            if b:
                rule.append(b)
            if is_list and rule:
                rule = ["each " + " ".join(rule)]
            if rules.min_len:
                rule.append("non-empty" if rules.min_len == 1 else f"length >= {rules.min_len}")
        if optional:
            rule.append("or null")
        lines.append(f"{prefix}{name}: {text}" + (" " + ", ".join(rule) if rule else ""))
    return lines
