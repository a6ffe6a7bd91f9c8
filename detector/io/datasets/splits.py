"""Splits: split files (the first word of each line; repeated lines dropped with one warning) and
splits named by folders (``train/``, ``valid/``, ``val2017/``...)."""

from __future__ import annotations

import os

from backbone.errors import Tally, UserError

from .warning import DatasetWarning

#: folder (or file-name) words that name a split: ``valid`` (Roboflow) and ``val2017`` (COCO) mean val
SPLIT_ALIASES = {"train": "train", "training": "train", "train2017": "train", "train2014": "train",
                 "val": "val", "valid": "val", "validation": "val", "val2017": "val", "val2014": "val",
                 "test": "test", "testing": "test", "test2017": "test", "test2014": "test"}


class MissingSplit(UserError):
    """The dataset has its own splits and ``split`` is not one of them."""


def split_of(rel_path: str) -> str | None:
    """The split a path below the dataset root names through a folder (``train/images/x.jpg``,
    ``images/val/x.jpg``, ``valid/x.xml``), else None."""
    for part in rel_path.replace(os.sep, "/").split("/")[:-1]:
        if part.lower() in SPLIT_ALIASES:
            return SPLIT_ALIASES[part.lower()]
    return None


def read_split_file(path: str) -> list[str]:
    """Image ids of a split file: the first word of each non-empty line (VOC/ILSVRC layouts); a
    BOM is skipped, an id listed again is dropped (:func:`drop_repeats`: one warning)."""
    if not os.path.exists(path):
        raise MissingSplit(f"split file {path}: no such file")
    if not os.path.isfile(path):
        raise UserError(f"split file {path}: not a regular file (a folder, FIFO, socket or device is never read)")
    try:
        with open(path, encoding="utf-8-sig") as f:
            rows = [(n, ln.split()[0]) for n, ln in enumerate(f, 1) if ln.strip()]
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"split file {path}: cannot read ({e})") from None
    return [rows[k][1] for k in drop_repeats(rows, f"split file {path}")]


def drop_repeats(rows: list[tuple[int, str]], what: str, noun: str = "image") -> list[int]:
    """Positions in ``rows`` (``(line number, key)``) of each key's first line. A key listed again
    would be read (trained, scored) twice: its later lines are dropped with ONE warning naming
    ``what`` and the count (``--strict``: the error)."""
    first: dict[str, int] = {}
    keep = []
    tally = Tally(what, f"line(s) repeat an {noun} listed before and are dropped", DatasetWarning)
    for k, (n, key) in enumerate(rows):
        if key in first:
            tally.add(f"line {n} {key!r} is line {first[key]} again")
            continue
        first[key] = n
        keep.append(k)
    tally.report(stacklevel=3)
    return keep


def own_splits(root: str, paths: list[str]) -> dict[str, list[str]] | None:
    """``{split: [paths]}`` when EVERY path names a split through a folder, else None
    (``trainval`` = train + val)."""
    if not paths:
        return None
    by: dict[str, list[str]] = {}
    for p in paths:
        s = split_of(os.path.relpath(p, root))
        if s is None:
            return None
        by.setdefault(s, []).append(p)
    by["trainval"] = sorted(by.get("train", []) + by.get("val", []))
    return by
