"""What every detection-file reader shares: the ground-truth image lookup (:class:`_Images`),
the counted warnings (:class:`InvertedBoxWarning`, :class:`UnknownClassWarning` via
:class:`_Unknown`), the NaN/inverted-box check, short reprs of bad values, grouping flat
detections per image, and the atomic write of a detections file."""

from __future__ import annotations

import math
import os
import reprlib
import warnings
from collections import Counter

import numpy as np

from backbone.errors import InputWarning, Tally, UserError, strict_enabled
from backbone.io import atomic_write

from ..datasets.records import Dataset

_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother, _REPR.maxlong, _REPR.maxlist, _REPR.maxdict = 3, 60, 60, 40, 6, 4


def short(v) -> str:
    """``repr(v)`` cut short (deep nesting, 400-digit numbers and long strings stay one short line)."""
    return _REPR.repr(v)


def whole(v) -> int | None:
    """A JSON integer (or a float with an integral value), never a bool or a string; else None."""
    if type(v) is int:
        return v
    if type(v) is float and math.isfinite(v) and v.is_integer():
        return int(v)
    return None


class UnknownClassWarning(InputWarning):
    """Detections of classes the ground truth does not have were left out (eval-map prints it)."""


class InvertedBoxWarning(InputWarning):
    """Inverted detection boxes were read (and scored as the devkits score them: they match nothing)."""


class _Unknown:
    """Detections of classes the ground truth lacks: counted and left out, with one
    :class:`UnknownClassWarning` naming the classes and counts (as the VOC devkit, pycocotools
    and Cartucho/mAP leave them out); under ``--strict`` the first is the error, naming it."""

    def __init__(self, path: str):
        self.path, self.counts = path, Counter()

    def add(self, name, where: str, what: str = "class") -> None:
        if not self.counts and strict_enabled():
            warnings.warn(UnknownClassWarning(f"{where}: unknown {what} {short(name)} (--strict makes this an error)"),
                          stacklevel=3)
        self.counts[name if isinstance(name, str) else f"{what} {name}"] += 1

    def warn(self) -> None:
        if self.counts:
            n = sum(self.counts.values())
            names = ", ".join(f"{k} ({v})" for k, v in sorted(self.counts.items(), key=lambda kv: (-kv[1], str(kv[0]))))
            warnings.warn(UnknownClassWarning(
                f"{self.path}: {n} detection(s) of classes the ground truth does not have left out: {names} "
                f"(--strict makes this an error)"), stacklevel=3)


class _Images:
    """Find a ground-truth record from the ways detection files name images."""

    def __init__(self, gt: Dataset):
        self.by_id = {r.image_id: i for i, r in enumerate(gt.records)}
        for i, r in enumerate(gt.records):   # COCO ids merged into this image (one file_name, two ids)
            for a in r.aliases:
                self.by_id.setdefault(a, i)
        self.by_path = {os.path.abspath(r.path): i for i, r in enumerate(gt.records) if r.path}
        stems: dict[str, list[int]] = {}
        for i, r in enumerate(gt.records):
            for s in {os.path.splitext(os.path.basename(r.path))[0] if r.path else None,
                      r.image_id.rsplit("/", 1)[-1]}:
                if s:
                    stems.setdefault(s, []).append(i)
        self.by_stem = {s: v[0] for s, v in stems.items() if len(set(v)) == 1}
        self.by_index = {(r.devkit_index if r.devkit_index is not None else i + 1): i for i, r in enumerate(gt.records)}

    def find(self, name: str, base: str = "") -> int | None:
        if name in self.by_id:
            return self.by_id[name]
        try:
            for p in (name, os.path.join(base, name)):
                i = self.by_path.get(os.path.abspath(os.path.expanduser(p)))
                if i is not None:
                    return i
        except ValueError:  # a NUL byte or an unencodable name (expanduser of "~...") names no file
            pass
        return self.by_stem.get(os.path.splitext(os.path.basename(name))[0])


def _group(n_images: int, img: np.ndarray, boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray) -> list[dict]:
    """Flat detections -> one dict per image (input order kept within an image)."""
    o = np.argsort(img, kind="stable")
    bounds = np.searchsorted(img[o], np.arange(n_images + 1))
    out = []
    for i in range(n_images):
        s = o[bounds[i]:bounds[i + 1]]
        out.append({"boxes": boxes[s], "scores": scores[s], "labels": labels[s]})
    return out


def _check_det_boxes(boxes: np.ndarray, scores: np.ndarray, where, path: str, shown, sides: str = "xyxy",
                     hint: str = "") -> None:
    """NaN/inf numbers raise, naming ``where(i)`` (file and line/entry). Inverted boxes (``x2 <
    x1`` or ``y2 < y1``) are kept and counted in one :class:`InvertedBoxWarning` for ``path``,
    with the first as ``shown(i)`` (where, and the box as the file gives it); ``sides``: how
    the file writes a box (``xyxy`` corners or ``xywh`` sizes), for the message."""
    bad = np.flatnonzero(~np.isfinite(boxes).all(axis=1) | ~np.isfinite(scores))
    if bad.size:
        raise UserError(f"{where(bad[0])}: NaN or infinite number in box {boxes[bad[0]].tolist()} / score {scores[bad[0]]}")
    inv = np.flatnonzero((boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1]))
    if not inv.size:
        return
    what = "xmax < xmin or ymax < ymin" if sides == "xyxy" else "a negative width or height"
    tally = Tally(path, f"box(es) inverted ({what})", InvertedBoxWarning,
                  hint="kept and scored as the ILSVRC/VOC devkits and pycocotools score them: they overlap nothing"
                       + (f"; {hint}" if hint else ""))
    first = inv[:tally.max_examples]
    for k, q in enumerate(first):   # the last example carries the rest of the count
        tally.add(shown(q), 1 if k < len(first) - 1 else len(inv) - k)
    tally.report(stacklevel=3)


def _box_str(v) -> str:
    """A file's four box numbers, as read."""
    return "[" + ", ".join(repr(float(x)) for x in v) + "]"


def _label_of_id(gt: Dataset) -> dict[int, int]:
    ids = gt.class_ids or list(range(1, len(gt.classes) + 1))
    return {int(c): i + 1 for i, c in enumerate(ids)}


def _atomic_write(path: str, text: str) -> None:
    atomic_write(path, text, what="detections")
