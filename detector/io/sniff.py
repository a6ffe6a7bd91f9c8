"""What a ground-truth or detections path holds, recognised from content (not the name), and
the helpers of the one-file-per-image text formats both kinds of file share."""

from __future__ import annotations

import math
import os

from backbone.errors import UserError

BOX_FORMATS = ("xyxy", "xywh")


def _head(path: str, n: int = 4096) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(n)
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror or e})") from None


def files_below(folder: str, ext: str) -> list[str]:
    """The regular files named ``*<ext>`` below ``folder`` (links followed, every real folder
    visited once: a link loop ends; FIFOs, sockets and devices are never listed, as opening
    one would block), sorted. Hidden files and folders are skipped (as ``glob`` does)."""
    found: set[str] = set()
    seen_dirs: set[str] = set()
    seen_files: set[str] = set()
    for root, dirs, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(root)
        if real in seen_dirs:
            dirs[:] = []
            continue
        seen_dirs.add(real)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for f in files:
            if not f.endswith(ext) or f.startswith("."):  # hidden files skipped, as glob does
                continue
            p = os.path.join(root, f)
            r = os.path.realpath(p)
            if r not in seen_files and os.path.isfile(r):
                seen_files.add(r)
                found.add(p)
    return sorted(found)


def check_regular(path: str, what: str = "") -> None:
    """Refuse a path that exists but is not a regular file (reading a FIFO would block)."""
    if os.path.exists(path) and not os.path.isfile(path):
        kind = "a folder" if os.path.isdir(path) else "not a regular file (a FIFO, socket or device is never read)"
        raise UserError(f"{what + ' ' if what else ''}{path}: {kind}")


def sniff(path: str) -> str:
    """What a file or folder holds: ``xml-folder``, ``text-folder``, ``xml``, ``json``, ``mat``,
    ``split`` (a dataset split file), ``devkit`` (submission lines), ``empty``, ``text``."""
    if os.path.isdir(path):
        if files_below(path, ".xml"):
            return "xml-folder"
        if files_below(path, ".txt"):
            return "text-folder"
        raise UserError(f"{path}: a folder with neither *.xml nor *.txt files")
    if not os.path.exists(path):
        raise UserError(f"{path}: no such file or folder")
    check_regular(path)
    head = _head(path)
    head = head[3:] if head.startswith(b"\xef\xbb\xbf") else head   # a UTF-8 BOM: the readers skip it
    if head.startswith(b"MATLAB"):
        return "mat"
    s = head.removeprefix(b"\xef\xbb\xbf").lstrip()   # a UTF-8 BOM (Windows editors) is no content
    if not s:
        return "empty"
    if s[:1] in (b"[", b"{"):
        return "json"
    if s[:1] == b"<":
        return "xml"
    parent = os.path.basename(os.path.dirname(os.path.abspath(path)))
    if os.path.basename(os.path.dirname(os.path.dirname(os.path.abspath(path)))) == "ImageSets" and parent in ("Main", "DET"):
        return "split"
    first = s.split(b"\n", 1)[0].split()
    if len(first) == 7 and all(is_number(t) for t in first):
        return "devkit"
    return "text"


def is_number(t) -> bool:
    try:
        float(t)
        return True
    except (ValueError, TypeError):
        return False


def text_files(folder: str) -> dict[str, str]:
    """image id (the path below ``folder`` without ``.txt``) -> file, for every text file below."""
    files = files_below(folder, ".txt")
    return {os.path.relpath(p, folder)[:-4].replace(os.sep, "/"): p for p in files}


def read_lines(path: str):
    check_regular(path)
    try:
        with open(path, encoding="utf-8-sig") as f:   # a BOM first is skipped
            return [(n, ln.split()) for n, ln in enumerate(f, 1) if ln.strip()]
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: cannot read ({e})") from None


def numbers(tokens, path, n, what):
    try:
        v = [float(t) for t in tokens]
    except ValueError:
        raise UserError(f"{path} line {n}: expected {what}, got {' '.join(tokens)!r}") from None
    if not all(math.isfinite(x) for x in v):
        raise UserError(f"{path} line {n}: a number is NaN or infinite ({' '.join(tokens)})")
    return v


def file_box(v, box_format):
    """left, top, right|w, bottom|h (inclusive pixels) -> xmin, ymin, xmax, ymax as in a VOC file."""
    l, t, a, b = v
    return (l, t, l + a, t + b) if box_format == "xywh" else (l, t, a, b)


def number(v) -> float | None:
    """A JSON number (int or float, never a bool or a string) as a float; None when ``v`` is
    something else or an integer too large for a float. NaN and infinity pass (checked later,
    with the box they belong to)."""
    if type(v) is float:
        return v
    if type(v) is int:
        try:
            return float(v)
        except OverflowError:
            return None
    return None
