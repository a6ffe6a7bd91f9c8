"""File I/O every layer shares: atomic writes, safe ``torch.load``, the cache folder.

- :func:`atomic_write`: write through a temp file in the target folder (flush + fsync), then
  rename over the target; the temp file is removed on any failure, so a crash or a full disk
  never leaves a half-written file where a good one was (nor a ``.tmp`` beside it). Text,
  bytes, or a callback that writes to the open binary file (``torch.save``, ``np.savez``,
  ``figure.savefig``). :func:`atomic_save` is the ``torch.save`` case, :func:`write_json`
  and :func:`write_text` the common text cases. This module and ``detector/io/`` are the only
  places that open files for writing or call ``torch.save`` (tests/test_layering.py).
- :func:`json_safe` / :func:`json_text`: the one JSON rule: strict (NaN refused), or with
  ``nan_as_null`` NaN and infinities written as null (numpy values as plain numbers).
- :func:`safe_torch_load`: ``torch.load(weights_only=True)`` after a zip CRC check (torch
  does not check CRCs, so damaged tensor bytes would load silently), with one-line errors.
- :func:`cache_dir`: ``$GOOGLENET_DET_CACHE``, else ``$XDG_CACHE_HOME/googlenet-det``, else
  ``~/.cache/googlenet-det``.

Everything a user can get wrong raises :class:`UserError` naming the path.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import re
import tempfile
import zipfile
from typing import Any, BinaryIO, Callable

import numpy as np
import torch
import yaml

from .errors import Tally, UserError

CACHE_ENV = "GOOGLENET_DET_CACHE"


def cache_dir() -> str:
    """The project's cache folder (proposals, annotation indexes, fallback split files)."""
    own = os.environ.get(CACHE_ENV)
    if own:
        return os.path.abspath(os.path.expanduser(own))
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(os.path.abspath(base), "googlenet-det")


def _os_error(path: str, e: OSError, what: str) -> UserError:
    return UserError(f"{what} {path}: cannot write ({e.strerror or e})")


def atomic_write(path: str | os.PathLike, data: "str | bytes | Callable[[BinaryIO], Any]", *,
                 what: str = "file") -> str:
    """Write ``data`` (text, bytes, or ``fn(binary file)``) to ``path`` atomically; returns the
    absolute path. Folders are created. Errors of the file system (read-only folder, full
    disk, a folder in the way) are one :class:`UserError` naming ``what`` and the path."""
    path = os.path.abspath(os.path.expanduser(os.fspath(path)))
    folder = os.path.dirname(path)
    if os.path.isdir(path):
        raise UserError(f"{what} {path}: is a folder, expected a file path")
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    except OSError as e:
        raise _os_error(path, e, what) from None
    try:
        with os.fdopen(fd, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private (0600); give it the usual mode
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.remove(tmp)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise _os_error(path, e, what) from None
        raise
    return path


def atomic_save(obj: Any, path: str | os.PathLike, *, what: str = "checkpoint") -> str:
    """``torch.save(obj)`` to ``path`` atomically (see :func:`atomic_write`): a full disk or a
    file-size limit is one :class:`UserError`, the previous file kept."""
    def save(f):
        try:
            torch.save(obj, f)
        except RuntimeError as e:
            # torch's zip writer reports a failed write as "unexpected pos ..."; the OSError
            # (ENOSPC, EFBIG) of the file is only its context
            cause = _os_error_in(e)
            if cause is None:
                raise
            raise cause from None
    return atomic_write(path, save, what=what)


def _os_error_in(e: BaseException) -> OSError | None:
    """The OSError in the cause/context chain of ``e`` (None when there is none)."""
    seen = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, OSError):
            return e
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return None


def write_text(path: str | os.PathLike, text: str, *, what: str = "file") -> str:
    return atomic_write(path, text, what=what)


def json_safe(obj: Any) -> Any:
    """``obj`` as plain JSON data: NaN and infinities become None (JSON's null: an AP of a class
    without ground truth, a loss that diverged), numpy scalars and arrays Python numbers and
    lists, tuples lists, dict keys that JSON cannot hold strings. The one NaN-to-null rule."""
    if isinstance(obj, dict):
        return {(k if isinstance(k, (str, int, float, bool)) or k is None else str(k)): json_safe(v)
                for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        if obj and all(type(v) is float or type(v) is int for v in obj):  # the long lists: no call per item
            return [v if type(v) is int or math.isfinite(v) else None for v in obj]
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    return obj


def json_text(obj: Any, *, indent: int | None = 1, nan_as_null: bool = False) -> str:
    """``obj`` as JSON text ending in a newline. Strict: a NaN or an infinity is refused
    (ValueError, a programming error) unless ``nan_as_null``, which writes it as null
    (:func:`json_safe`)."""
    return json.dumps(json_safe(obj) if nan_as_null else obj, indent=indent, allow_nan=False) + "\n"


def write_json(path: str | os.PathLike, obj: Any, *, what: str = "JSON file", indent: int | None = 1,
               nan_as_null: bool = False) -> str:
    """``obj`` as JSON (:func:`json_text`), written atomically."""
    return atomic_write(path, json_text(obj, indent=indent, nan_as_null=nan_as_null), what=what)


def check_writable(path: str | os.PathLike, *, what: str = "output", folder: bool = False) -> str:
    """Fail now, not after an hour of work, when ``path`` cannot be written: for a file, its
    folder must be creatable and writable and the path not a folder; for a ``folder``, it must
    not be a file. Returns the absolute path; creates nothing."""
    path = os.path.abspath(os.path.expanduser(os.fspath(path)))
    if folder and os.path.exists(path) and not os.path.isdir(path):
        raise UserError(f"{what} {path}: is a file, expected a folder")
    if not folder and os.path.isdir(path):
        raise UserError(f"{what} {path}: is a folder, expected a file path")
    probe = path if folder else os.path.dirname(path)
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if not os.path.isdir(probe):
        raise UserError(f"{what} {path}: {probe} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UserError(f"{what} {path}: folder {probe} is not writable")
    return path


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def one_line(e: BaseException) -> str:
    """The first non-empty line of an exception's message, without terminal colour codes."""
    text = _ANSI.sub("", str(e)).strip()
    if text:  # torch's zip reader appends several sentences of advice to its one fact
        return text.splitlines()[0].split(". This is an internal miniz error")[0].strip()[:300]
    return "truncated file" if isinstance(e, EOFError) else type(e).__name__


def check_zip_crcs(path: str, what: str = "file") -> None:
    """Raise :class:`UserError` when ``path`` is a zip archive with a damaged member (or
    damaged end records: ``is_zipfile`` itself raises BadZipFile on some zip64 ones)."""
    try:
        if not zipfile.is_zipfile(path):
            return
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip()
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, RuntimeError) as e:
        # e.g. a truncated member; an unknown compression method (NotImplementedError)
        raise UserError(f"{what} {path}: corrupt ({one_line(e)})") from None
    if bad is not None:
        raise UserError(f"{what} {path}: corrupt (bad CRC in {bad})")


def safe_torch_load(path: str | os.PathLike, what: str = "checkpoint") -> Any:
    """``torch.load(path, weights_only=True)`` onto the CPU, after a zip CRC check.

    Missing, empty, a folder, damaged, truncated, holding Python objects other than tensors
    and plain data (which are never loaded), or a tensor with NaN or infinite values (weights
    of a diverged training, which would detect nothing without a word): one
    :class:`UserError` line naming ``what``."""
    path = os.path.expanduser(os.fspath(path))
    if not os.path.exists(path):
        raise UserError(f"{what} {path}: no such file")
    if os.path.isdir(path):
        raise UserError(f"{what} {path}: is a folder, expected a .pt/.pth file")
    if not os.path.isfile(path):
        raise UserError(f"{what} {path}: not a regular file")
    if os.path.getsize(path) == 0:
        raise UserError(f"{what} {path}: empty file")
    check_zip_crcs(path, what)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # torch's weights_only message is multi-line advice; the cause is in __context__
        inner = one_line(e.__context__ or e)
        if "Unsupported global" in inner or "Unsupported global" in str(e):
            raise UserError(f"{what} {path}: holds Python objects other than tensors "
                            "(refused by weights_only loading)") from None
        raise UserError(f"{what} {path}: not a readable PyTorch file ({inner})") from None
    # the file is torch.load's only input, and its parsers (zip, legacy pickle: struct.error on a
    # short record, ...) raise whatever type they hit in damaged bytes
    except Exception as e:  # noqa: BLE001
        raise UserError(f"{what} {path}: not a readable PyTorch file ({one_line(e)})") from None
    bad = first_non_finite(obj)
    if bad is not None:
        raise UserError(f"{what} {path}: tensor {bad} holds NaN or infinite values (a diverged training?)")
    return obj


def first_non_finite(obj: Any) -> str | None:
    """The dotted name (``members[0].fc.weight``) of the first floating-point tensor holding a
    NaN or an infinity in ``obj`` (nested dicts, lists, tuples; walked without recursion, as
    a file may nest deeper than Python's stack), else None."""
    stack = [("", obj)]
    while stack:
        name, v = stack.pop()
        if isinstance(v, torch.Tensor):
            if (v.is_floating_point() or v.is_complex()) and v.numel() and not bool(torch.isfinite(v).all()):
                return name or "(the whole file)"
        elif isinstance(v, dict):
            stack += reversed([(f"{name}.{k}" if name else str(k), x) for k, x in v.items()])
        elif isinstance(v, (list, tuple)):
            stack += reversed([(f"{name}[{i}]", x) for i, x in enumerate(v)])
    return None


__all__ = ["CACHE_ENV", "cache_dir", "atomic_write", "atomic_save", "write_text", "write_json", "json_safe", "json_text",
           "check_writable",
           "one_line", "check_zip_crcs", "safe_torch_load", "first_non_finite"]


class YAMLShapeError(yaml.MarkedYAMLError):
    """YAML that PyYAML reads but that would be silently wrong here: a key given twice in one
    mapping (the last one would win) or a recursive alias (an endless structure)."""


class YAMLLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a duplicate key in a mapping (naming it and both lines;
    merge keys ``<<`` may still be overridden, as YAML intends) and a recursive alias
    (``&a [*a]``, which every check walking the data would recurse into forever)."""

    def __init__(self, stream, duplicates: list | None = None):
        super().__init__(stream)
        self._open_anchors: set[str] = set()
        self.duplicates = duplicates  # a list: duplicate keys are noted there (the last wins), not refused

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            if event.anchor in self._open_anchors:
                raise YAMLShapeError(None, None, f"recursive alias *{event.anchor} (inside its own anchor "
                                     f"&{event.anchor})", event.start_mark)
            return super().compose_node(parent, index)
        anchor = getattr(event, "anchor", None)
        if anchor is None or anchor in self._open_anchors:  # a duplicate anchor: yaml's own error
            return super().compose_node(parent, index)
        self._open_anchors.add(anchor)
        try:
            return super().compose_node(parent, index)
        finally:
            self._open_anchors.discard(anchor)

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            first: dict = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                line = key_node.start_mark.line + 1
                try:
                    seen = key in first
                except TypeError:
                    continue  # an unhashable key: SafeConstructor's own error
                if seen:
                    text = f"key {key!r} given twice, on line {first[key]} and line {line}"
                    if self.duplicates is None:
                        raise YAMLShapeError(None, None, f"{text}; the last one would win", key_node.start_mark)
                    self.duplicates.append(text)
                first[key] = line
        return super().construct_mapping(node, deep)


def parse_yaml(stream: Any, duplicates: list | None = None) -> Any:
    """``yaml.safe_load`` with :class:`YAMLLoader`'s checks (duplicate keys, recursive aliases);
    with a ``duplicates`` list, duplicate keys are noted there and the last one wins."""
    loader = YAMLLoader(stream, duplicates)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def read_yaml(path: str | os.PathLike, what: str, *, peer: bool = False) -> Any:
    """The data of YAML (or JSON) file ``path``; ``what`` names it in the one-line errors
    (``"config PATH"``, ``"data.yaml PATH"``): a missing or unreadable file, invalid YAML (with
    its line), not UTF-8. An empty file is None. A key given twice is an error in our own files
    (configs: the last one would win silently); in a ``peer`` file (a YOLO data.yaml, which
    ultralytics reads with ``yaml.safe_load``, the last key winning) it is read the same way,
    with one counted :class:`InputWarning` (``--strict``: the error)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise UserError(f"{what}: no such file" if not os.path.exists(path) else f"{what}: not a regular file")
    duplicates: list | None = [] if peer else None
    try:
        with open(path, encoding="utf-8-sig") as f:   # a BOM is skipped
            data = parse_yaml(f, duplicates)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        problem = str(getattr(e, "problem", None) or e).splitlines()[0]  # ReaderError has no problem: one line
        raise UserError(f"{what}:{line} is not valid YAML ({problem})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{what}: cannot read ({getattr(e, 'strerror', None) or e})") from None
    if duplicates:
        tally = Tally(what, "key(s) given twice in one mapping, the last one used (as ultralytics reads it)")
        for text in duplicates:
            tally.add(text)
        tally.report(stacklevel=2)
    return data
