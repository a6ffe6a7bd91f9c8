"""Class lists: a class file (one name a line, or ILSVRC's ``map_det.txt``), the config's
``data.classes`` / ``data.classes_file``, blank names warned about."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from backbone.errors import Tally, UserError

from .walk import resolve_path
from .warning import DatasetWarning

_MAP_DET_LINE = re.compile(r"^(n[0-9]{8})\s+([0-9]+)\s+(.+?)\s*$")


@dataclass
class ClassList:
    """Class names in label order (label i is ``names[i - 1]``) and optional display names.

    For ILSVRC the names are WNIDs (what the annotations and devkit use) and ``display`` the
    human names from ``map_det.txt``; ``ids`` are the devkit class ids (1-based) of each name.
    """

    names: list[str]
    display: list[str] | None = None
    ids: list[int] | None = None


def read_class_file(path: str) -> ClassList:
    """Read a class file: one name per line, or the ILSVRC ``map_det.txt`` (``WNID id name``).

    ``map_det.txt`` is recognised when every non-empty line has that shape; its classes are
    ordered by the id column. Blank lines and lines starting with ``#`` are skipped.
    """
    if os.path.exists(path) and not os.path.isfile(path):
        raise UserError(f"class file {path}: not a regular file (a folder, FIFO, socket or device is never read)")
    try:
        with open(path, encoding="utf-8-sig") as f:   # a BOM (Notepad's UTF-8) is not part of a name
            lines = [(i + 1, ln.strip()) for i, ln in enumerate(f)]
    except OSError as e:
        raise UserError(f"class file {path}: cannot read ({e.strerror or e})") from None
    except UnicodeDecodeError:
        raise UserError(f"class file {path}: not a UTF-8 text file") from None
    lines = [(n, ln) for n, ln in lines if ln and not ln.startswith("#")]
    if not lines:
        raise UserError(f"class file {path}: no class names in it")
    matches = [_MAP_DET_LINE.match(ln) for _, ln in lines]
    if all(matches):
        for (n, _), m in zip(lines, matches):
            if len(m.group(2)) > 18:
                raise UserError(f"class file {path} line {n}: class id {m.group(2)[:20]}... is too large")
        rows = sorted((int(m.group(2)), m.group(1), m.group(3)) for m in matches)
        ids = [r[0] for r in rows]
        if len(set(ids)) != len(ids):
            raise UserError(f"class file {path}: a class id appears twice")
        names = [r[1] for r in rows]
        if len(set(names)) != len(names):
            raise UserError(f"class file {path}: a WNID appears twice")
        return ClassList(names, [r[2] for r in rows], ids)
    names = [ln for _, ln in lines]
    seen: dict[str, int] = {}
    for n, ln in lines:
        if ln in seen:
            raise UserError(f"class file {path} line {n}: class {ln!r} already on line {seen[ln]}")
        seen[ln] = n
    return ClassList(names)


def warn_blank_names(what: str, named: list[tuple[str, str]]) -> None:
    """ONE warning for the class names of ``named`` (``(where, name)``) that are blank: the
    peers read them, and every table and file would show an invisible class."""
    tally = Tally(what, "class name(s) blank (shown so in every table and file)", DatasetWarning)
    for where, name in named:
        if not name.strip():
            tally.add(f"{where} is named {name!r}")
    tally.report(stacklevel=3)


def configured_classes(data, root: str) -> ClassList | None:
    """The class list the config gives (``data.classes`` or ``data.classes_file``), else None."""
    if data.classes:
        names = [str(c) for c in data.classes]
        if len(set(names)) != len(names):
            raise UserError(f"data.classes: a class name appears twice ({names})")
        return ClassList(names)
    if data.classes_file:
        return read_class_file(resolve_path(data.classes_file, root))
    return None
