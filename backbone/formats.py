"""Saved formats are schemas too: a file this project writes (a checkpoint, a run record, a
training state) is declared as a dataclass of :func:`backbone.config.setting` fields, read with
:func:`read_format` and written with :func:`record`, under one integer versioning scheme.

A format declares::

    @dataclass
    class ThingFile(SavedFormat):
        VERSION: ClassVar[int] = 2                  # the version this program writes
        UPGRADES: ClassVar[dict] = {1: _v1_to_v2}   # version v's dict -> version v + 1's
        LEGACY: ClassVar[dict] = {"format": {"thing-v1": 1}}   # markers from before format_version

        format_version: int = setting(2, ge=1)
        name: str = setting()                       # required: no default
        weights: dict = setting(check=is_state_dict, expect="a state dict (names -> tensors)")

        def cross_check(self, prefix): ...          # rules over several fields (UserError)

Adding a version is one declared step: raise ``VERSION``, declare the new fields (with
defaults when older files lack them) and add ``UPGRADES[old]``, a function turning a dict of
the old layout into the new one (``FastConfig.upgrade`` does the same for a config section).

:func:`read_format` takes the version from ``format_version`` (or a ``LEGACY`` marker), refuses
a version that is not an integer >= 1 or is newer than ``VERSION``, runs the upgrades from the
file's version to ``VERSION`` (``format_version`` still says the file's version), then checks every field with :func:`backbone.config.from_dict`:
one :class:`UserError` line ``{source}: field 'key' must be ..., got ...``. Keys the schema does
not declare are kept as they are (a training state's payload, a later version's additions).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, ClassVar, TypeVar

import torch

from .config import _show, from_dict
from .errors import UserError

T = TypeVar("T", bound="SavedFormat")

VERSION_KEY = "format_version"


class SavedFormat:
    """Base of a saved format's schema (a dataclass): see the module docstring."""

    #: messages name fields as ``field 'key'`` (backbone.config)
    FIELD_LABELS: ClassVar[bool] = True
    #: the version this program writes (and the newest it reads)
    VERSION: ClassVar[int] = 1
    #: version v -> function(dict of version v) -> dict of version v + 1
    UPGRADES: ClassVar[dict[int, Callable[[dict], dict]]] = {}
    #: markers of files from before ``format_version``: key -> {marker value: version}
    LEGACY: ClassVar[dict[str, dict[Any, int]]] = {}

    @classmethod
    def version_of(cls, data: dict) -> Any:
        """The file's version: ``format_version``, else a :attr:`LEGACY` marker's (None: none)."""
        if VERSION_KEY in data:
            return data[VERSION_KEY]
        for key, versions in cls.LEGACY.items():
            marker = data.get(key)
            if isinstance(marker, (str, int)) and not isinstance(marker, bool) and marker in versions:
                return versions[marker]
        return None

    @classmethod
    def has_marker(cls, data: Any) -> bool:
        """Whether ``data`` is a dict carrying this format's version (or a legacy marker)."""
        return isinstance(data, dict) and cls.version_of(data) is not None


def read_format(cls: type[T], data: Any, *, source: str) -> tuple[T, dict]:
    """``(the checked schema object, the undeclared keys)`` of saved dict ``data`` of format
    ``cls`` (see the module docstring); problems are one :class:`UserError` ``{source}: ...``."""
    if not isinstance(data, dict):
        raise UserError(f"{source}: not a mapping of fields, got {_show(data)}")
    version = cls.version_of(data)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise UserError(f"{source}: field {VERSION_KEY!r} must be an integer >= 1, got {_show(version)}")
    if version > cls.VERSION:
        raise UserError(f"{source}: format version {version} is newer than this program's ({cls.VERSION}); "
                        "update googlenet-det")
    data = {k: v for k, v in data.items() if k not in cls.LEGACY}
    for v in range(version, cls.VERSION):
        data = cls.UPGRADES.get(v, dict)(dict(data))
    data[VERSION_KEY] = version  # the version the file was written in (its layout is today's)
    names = {f.name for f in dataclasses.fields(cls)}
    known = {k: v for k, v in data.items() if k in names}
    extra = {k: v for k, v in data.items() if k not in names}
    return from_dict(cls, known, source=source), extra


def record(obj: SavedFormat, extra: dict | None = None) -> dict:
    """The saved dict of schema object ``obj`` (fields in declaration order, values not
    copied), then the ``extra`` keys."""
    out = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    out.update(extra or {})
    return out


# -- checks the annotations cannot state (for ``setting(check=..., expect=...)``) --------------

def is_state_dict(v: Any) -> bool:
    """A dict of names to tensors."""
    return isinstance(v, dict) and all(isinstance(k, str) and isinstance(t, torch.Tensor) for k, t in v.items())


def is_dict(v: Any) -> bool:
    return isinstance(v, dict)


def is_str_keyed_dict(v: Any) -> bool:
    return isinstance(v, dict) and all(isinstance(k, str) for k in v)


STATE_DICT = "a state dict (names -> tensors)"
