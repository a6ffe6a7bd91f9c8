"""Detection files: read and written here, and only here (``detect``, ``eval-map`` and split
detection all call this module).

Readers (:func:`read_detections`, the format recognised from content) -> per ground-truth image ``{"boxes", "scores", "labels"}``
arrays, aligned with the dataset's records, ready for :func:`eval.evaluate`:

- the project's detections JSON (DESIGN.md): ``[{"image": path, "detections": [{"box": [x1, y1,
  x2, y2], "score": s, "label": name}]}]``, boxes in our convention (0-based, x2 exclusive);
  ``image`` matches a record by path, else by image id, else by file stem;
- COCO results JSON ``[{"image_id", "category_id", "bbox": [x, y, w, h], "score"}]``;
- ILSVRC devkit submission lines ``image_index class_id confidence xmin ymin xmax ymax``
  (1-based inclusive; ``image_index`` is the split file's index column, or the ``.mat``'s ids);
- a folder of text files, one per image: lines ``class confidence left top right bottom``.

Text files hold inclusive pixels read as VOC's (x1 = left - 1, x2 = right); with
``box_format="xywh"`` the last numbers are ``left top width height`` and the right edge
``left + width`` is an inclusive pixel (as Object-Detection-Metrics reads them). An empty
detections file means no detections (AP 0), not an error; a UTF-8 BOM at the start of a text
file is skipped. Every other defect raises :class:`UserError` naming the file and line (or
entry): malformed XML/JSON, an image the ground truth lacks, NaN/inf numbers.

Read as the peers read them, with ONE counted warning per file (``--strict``, a warnings filter
on :class:`~backbone.errors.InputWarning`, makes it the one-line error):

- inverted boxes (``xmax < xmin`` or ``ymax < ymin``, a negative width or height): kept, as the
  ILSVRC and VOC devkits and pycocotools keep them; they overlap nothing, so they match nothing
  and are false positives at their confidence (COCO: ignored when exactly one side is negative,
  as the area ``w * h`` is then outside every area range). :class:`InvertedBoxWarning`;
- detections of classes the ground truth lacks: left out (as the VOC devkit, pycocotools and
  Cartucho/mAP do), :class:`UnknownClassWarning` naming the classes and counts.

Writers (:func:`write_detections`, one of :data:`FORMATS`): :func:`write_detections_json` (and
:func:`detections_to_items` from arrays), :func:`write_devkit_submission` (needs the devkit's
ids: :func:`check_format`), :func:`write_coco_results` (the ground truth's ids when it is a COCO
one, else images numbered from 1 and category id = label, the mapping in ``*.ids.json``, joined
back when read), :func:`write_text_detections` (a folder of Cartucho/mAP files, read back exactly).
"""

from __future__ import annotations

import itertools
import json
import math
import os
import reprlib
import warnings
from collections import Counter
from decimal import Decimal, InvalidOperation

import numpy as np

from backbone.errors import InputWarning, Tally, UserError, strict_enabled
from backbone.io import atomic_write, write_json

from .datasets.coco import load_json
from .datasets.records import Dataset
from .sniff import (
    BOX_FORMATS,
    file_box,
    number,
    read_lines,
    sniff,
    text_files,
)

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


def read_detections(path: str, gt: Dataset, box_format: str = "xyxy") -> list[dict]:
    """Detections from ``path`` (format recognised from content), one dict per ``gt`` record.
    Detections of classes ``gt`` lacks are left out, inverted boxes kept, each with one warning."""
    if box_format not in BOX_FORMATS:
        raise UserError(f"box format {box_format!r}: use xyxy or xywh")
    path = os.path.abspath(os.path.expanduser(path))
    kind = None
    if os.path.isdir(path):
        with os.scandir(path) as entries:   # closed (an unclosed iterator is a ResourceWarning)
            kind = None if any(entries) else "empty"   # an empty folder of per-image files: no detections, AP 0
    kind = kind or sniff(path)
    if kind == "empty":
        n = len(gt.records)
        return _group(n, np.zeros(0, np.int64), np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64))
    if kind == "json":
        data = load_json(path, "detections")
        if isinstance(data, list) and data and isinstance(data[0], dict) and "image_id" in data[0]:
            ids = ids_path(path)
            if os.path.isfile(ids):
                data = _join_ids(data, ids, gt)
            return read_coco_results(data, path, gt)
        return items_to_detections(validate_items(data, path), path, gt)
    if kind == "devkit":
        return read_devkit_submission(path, gt)
    if kind == "text-folder":
        return read_text_detections(path, gt, box_format)
    raise UserError(f"detections {path}: not a format eval-map reads (detections JSON, COCO results JSON, "
                    f"devkit submission lines, or a folder of text files)")


def validate_items(data, path: str) -> list[dict]:
    """Check the shape and types of the project's detections JSON; errors name the entry:
    ``image`` a path (or an image id), ``box`` a list of 4 numbers, ``score`` a number (not a
    numeric string, not ``true``), ``label`` a class name or number."""
    if not isinstance(data, list):
        raise UserError(f"{path}: expected a list of {{\"image\": ..., \"detections\": [...]}} objects")
    for k, item in enumerate(data):
        if not isinstance(item, dict) or "image" not in item or not isinstance(item.get("detections", []), list):
            raise UserError(f"{path}: entry #{k} is not {{\"image\": path, \"detections\": [...]}}")
        image = item["image"]
        if not (isinstance(image, str) or whole(image) is not None):
            raise UserError(f"{path}: entry #{k}: image {short(image)} is not a path (or an image id)")
        for j, d in enumerate(item.get("detections", [])):
            where = f"{path}: entry #{k} ({short(image)}) detection #{j}"
            if not isinstance(d, dict) or not {"box", "score", "label"} <= set(d):
                raise UserError(f"{where} lacks box/score/label")
            box = d["box"]
            if not isinstance(box, list) or len(box) != 4 or any(number(v) is None for v in box):
                raise UserError(f"{where}: box is not 4 numbers (got {short(box)})")
            if number(d["score"]) is None:
                raise UserError(f"{where}: score is not a number (got {short(d['score'])})")
            lab = d["label"]
            if not (isinstance(lab, str) or whole(lab) is not None):
                raise UserError(f"{where}: label is not a class name or number (got {short(lab)})")
    return data


def items_to_detections(items: list[dict], path: str, gt: Dataset) -> list[dict]:
    """The project's detections JSON objects (checked by :func:`validate_items`) -> per-record
    arrays (labels by name or 1..C). One entry per image: two naming the same image raise."""
    images = _Images(gt)
    unknown = _Unknown(path)
    index = {c: i + 1 for i, c in enumerate(gt.classes)}
    base = os.path.dirname(path)
    img, boxes, scores, labels, where = [], [], [], [], []
    entry_of: dict[int, int] = {}
    for k, item in enumerate(items):
        image = item["image"]
        i = images.find(image if isinstance(image, str) else str(whole(image)), base)
        if i is None:
            raise UserError(f"{path}: entry #{k}: image {short(image)} is not in the ground truth")
        if i in entry_of:
            first = items[entry_of[i]]["image"]
            raise UserError(f"{path}: entries #{entry_of[i]} ({short(first)}) and #{k} ({short(image)}) are the same "
                            f"image {gt.records[i].image_id!r}; give each image once, with all its detections")
        entry_of[i] = k
        for j, d in enumerate(item.get("detections", [])):
            lab = d["label"]
            if isinstance(lab, str) and lab in index:
                lab = index[lab]
            elif whole(lab) is not None and 1 <= whole(lab) <= len(gt.classes):
                lab = whole(lab)
            else:
                unknown.add(lab, f"{path}: entry #{k} ({short(image)}) detection #{j}")
                continue
            boxes.append([number(v) for v in d["box"]])
            scores.append(number(d["score"]))
            img.append(i)
            labels.append(lab)
            where.append((k, j))
    boxes_a = np.array(boxes, np.float64).reshape(-1, 4)
    scores_a = np.array(scores, np.float64)
    _check_det_boxes(boxes_a, scores_a, lambda q: f"{path}: entry #{where[q][0]} detection #{where[q][1]}", path,
                     lambda q: f"entry #{where[q][0]} detection #{where[q][1]}: {_box_str(boxes_a[q])}")
    unknown.warn()
    return _group(len(gt.records), np.array(img, np.int64), boxes_a, scores_a, np.array(labels, np.int64))


def _label_of_id(gt: Dataset) -> dict[int, int]:
    ids = gt.class_ids or list(range(1, len(gt.classes) + 1))
    return {int(c): i + 1 for i, c in enumerate(ids)}


_NUMBER_TYPES = {int, float}


def read_coco_results(data: list, path: str, gt: Dataset) -> list[dict]:
    """COCO results JSON (bbox ``[x, y, w, h]`` continuous) -> per-record arrays.

    Columns are gathered at once and checked as arrays; only when a check fails does the
    entry-by-entry reader below run, to name the first bad entry. Numbers must be JSON
    numbers (a numeric string or ``true`` is an error, a bbox ``"1234"`` is not 4 numbers)."""
    images = _Images(gt)
    lab_of = _label_of_id(gt)
    strict = strict_enabled()   # the checked reader below names the first unknown category
    try:
        bbs = [d["bbox"] for d in data]
        sc = [d["score"] for d in data]
        ci = [d["category_id"] for d in data]
        ok = (set(map(type, bbs)) <= {list} and set(map(type, itertools.chain.from_iterable(bbs))) <= _NUMBER_TYPES
              and set(map(type, sc)) <= _NUMBER_TYPES and set(map(type, ci)) <= {int})
        if ok:
            bb = np.array(bbs, np.float64)
            scores = np.array(sc, np.float64)
            cid = np.array(ci, np.int64)
            img = np.array([images.by_id.get(_id_key(d["image_id"]), -1) for d in data], np.int64)
            lut = np.full(max(lab_of) + 2, -1, np.int64)
            lut[list(lab_of)] = list(lab_of.values())
            ok = (bb.shape == (len(data), 4) and (img >= 0).all() and ((cid >= 0) & (cid < len(lut))).all())
            ok = bb.shape == (len(data), 4) and bool((img >= 0).all())
            labels = lut[np.clip(cid, 0, len(lut) - 1)] if ok else None
            ok = ok and (not strict or bool(((cid >= 0) & (cid < len(lut))).all() and (labels > 0).all()))
    except (KeyError, TypeError, ValueError, IndexError, OverflowError):
        ok = False
    if ok:
        boxes = np.concatenate([bb[:, :2], bb[:, :2] + bb[:, 2:]], axis=1)
        known = (cid >= 0) & (cid < len(lut)) & (labels > 0)
        kq = np.flatnonzero(known)   # the results left out (unknown categories) are not checked
        _check_det_boxes(boxes[kq], scores[kq], lambda q: f"{path}: result #{kq[q]}", path,
                         lambda q: f"result #{kq[q]}: bbox {_box_str(bb[kq[q]])}", "xywh")
        if not known.all():
            unknown = _Unknown(path)
            for c in cid[~known]:
                unknown.add(_category_name(data, int(c)), path, "category id")
            unknown.warn()
        return _group(len(gt.records), img[known], boxes[known], scores[known], labels[known])
    return _read_coco_results_checked(data, path, gt, images, lab_of)


def _id_key(iid) -> str | None:
    """A results file's ``image_id`` as the ground truth's record id (a string), None when it
    is neither an integer nor a string."""
    if isinstance(iid, str):
        return iid
    w = whole(iid)
    return None if w is None else str(w)


def _category_name(data, cid: int):
    """An unknown category id, or the class name the ids mapping gave it (see :func:`_join_ids`)."""
    names = getattr(data, "names", None)
    return names.get(cid, cid) if names else cid


def _read_coco_results_checked(data: list, path: str, gt: Dataset, images, lab_of) -> list[dict]:
    n = len(data)
    unknown = _Unknown(path)
    keep = np.ones(n, bool)
    img = np.empty(n, np.int64)
    boxes = np.empty((n, 4))
    scores = np.empty(n)
    labels = np.empty(n, np.int64)
    for k, d in enumerate(data):
        if not isinstance(d, dict) or not {"image_id", "category_id", "bbox", "score"} <= set(d):
            raise UserError(f"{path}: result #{k} lacks image_id / category_id / bbox / score")
        iid, cid, bb, sc = d["image_id"], whole(d["category_id"]), d["bbox"], number(d["score"])
        if sc is None:
            raise UserError(f"{path}: result #{k}: score is not a number (got {short(d['score'])})")
        if cid is None:
            raise UserError(f"{path}: result #{k}: category_id is not an integer (got {short(d['category_id'])})")
        if not isinstance(bb, list) or len(bb) != 4 or any(number(v) is None for v in bb):
            raise UserError(f"{path}: result #{k}: bbox is not 4 numbers (got {short(bb)})")
        key = _id_key(iid)
        i = None if key is None else images.by_id.get(key)
        if i is None:
            raise UserError(f"{path}: result #{k}: image_id {short(iid)} is not in the ground truth")
        if cid not in lab_of:
            unknown.add(_category_name(data, cid), f"{path}: result #{k}", "category id")
            keep[k] = False
            continue
        bb = [number(v) for v in bb]
        img[k], labels[k], scores[k] = i, lab_of[cid], sc
        boxes[k] = (bb[0], bb[1], bb[0] + bb[2], bb[1] + bb[3])
    img, boxes, scores, labels = img[keep], boxes[keep], scores[keep], labels[keep]
    kept = np.flatnonzero(keep)
    _check_det_boxes(boxes, scores, lambda q: f"{path}: result #{kept[q]}", path,
                     lambda q: f"result #{kept[q]}: bbox {_box_str(data[kept[q]]['bbox'])}", "xywh")
    unknown.warn()
    return _group(len(gt.records), img, boxes, scores, labels)


def read_devkit_submission(path: str, gt: Dataset) -> list[dict]:
    """Lines ``image_index class_id confidence xmin ymin xmax ymax`` (1-based inclusive; a UTF-8
    BOM first is skipped)."""
    try:
        with open(path, encoding="utf-8-sig") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: cannot read ({e})") from None
    lines = text.splitlines()
    tokens = [ln.split() for ln in lines]
    line_of = np.array([n for n, tok in enumerate(tokens, 1) if tok], np.int64)
    a = None
    if all(len(tok) in (0, 7) for tok in tokens):
        try:
            a = np.array(text.split(), dtype=np.float64).reshape(-1, 7)   # the fast path: one C call
        except ValueError:
            a = None
    if a is None or len(a) != len(line_of):  # name the first bad line
        rows = []
        for n, tok in enumerate(tokens, 1):
            if not tok:
                continue
            v = [_float(t) for t in tok] if len(tok) == 7 else None
            if v is None or any(x is None for x in v):
                raise UserError(f"{path} line {n}: expected `image_index class_id confidence xmin ymin xmax ymax`, "
                                f"got {short(lines[n - 1].strip())}")
            rows.append(v)
        a = np.array(rows, np.float64).reshape(-1, 7)
    ids = a[:, :2]
    bad = np.flatnonzero(~(np.isfinite(ids) & (np.abs(ids) < 2.0 ** 53)).all(axis=1))
    if not bad.size:
        bad = np.flatnonzero((ids != np.round(ids)).any(axis=1))
    if bad.size:
        n = int(line_of[bad[0]])
        raise UserError(f"{path} line {n}: image index and class id must be whole numbers, "
                        f"got {short(lines[n - 1].strip())}")
    images = _Images(gt)
    lab_of = _label_of_id(gt)
    idx = a[:, 0].astype(np.int64)
    img = np.array([images.by_index.get(int(v), -1) for v in idx], np.int64)
    bad = np.flatnonzero(img < 0)
    if bad.size:
        raise UserError(f"{path} line {line_of[bad[0]]}: image index {idx[bad[0]]} is not in the ground truth")
    cls = a[:, 1].astype(np.int64)
    labels = np.array([lab_of.get(int(c), -1) for c in cls], np.int64)
    bad = np.flatnonzero(labels < 0)
    unknown = _Unknown(path)
    for q in bad:
        unknown.add(int(cls[q]), f"{path} line {line_of[q]}", "class id")
    scores = a[:, 2]
    file_boxes = a[:, 3:7]
    boxes = file_boxes.copy()
    boxes[:, :2] -= 1.0
    known = labels > 0
    kq = np.flatnonzero(known)   # the lines left out (unknown classes) are not checked, as in the other readers
    _check_det_boxes(boxes[kq], scores[kq], lambda q: f"{path} line {line_of[kq[q]]}", path,
                     lambda q: f"line {line_of[kq[q]]}: {_box_str(file_boxes[kq[q]])}")
    unknown.warn()
    return _group(len(gt.records), img[known], boxes[known], scores[known], labels[known])


def _float(t: str) -> float | None:
    try:
        return float(t)
    except ValueError:
        return None


def read_text_detections(folder: str, gt: Dataset, box_format: str = "xyxy") -> list[dict]:
    """One text file per image, lines ``class confidence left top right bottom``. With xyxy,
    ``left - 1`` and ``top - 1`` are computed in decimal, so that the files
    :func:`write_text_detections` writes read back exactly."""
    images = _Images(gt)
    unknown = _Unknown(folder)
    index = {c: i + 1 for i, c in enumerate(gt.classes)}
    img, boxes, scores, labels, where, shown = [], [], [], [], [], []
    for image_id, p in text_files(folder).items():
        i = images.find(image_id)
        if i is None:
            raise UserError(f"{p}: image {image_id!r} is not in the ground truth")
        for n, tok in read_lines(p):
            if len(tok) < 6:
                raise UserError(f"{p} line {n}: expected `class confidence left top right bottom`, got {short(' '.join(tok))}")
            name = " ".join(tok[:-5])
            try:
                v = [float(t) for t in tok[-5:]]
            except ValueError:
                raise UserError(f"{p} line {n}: expected `class confidence left top right bottom`, got {short(' '.join(tok))}") from None
            if name not in index:
                unknown.add(name, f"{p} line {n}")
                continue
            x1, y1, x2, y2 = file_box(v[1:], box_format)
            if box_format == "xyxy":
                x1, y1 = _minus_one(tok[-4], x1), _minus_one(tok[-3], y1)
            else:
                x1, y1 = x1 - 1.0, y1 - 1.0
            img.append(i); labels.append(index[name]); scores.append(v[0])
            boxes.append((x1, y1, x2, y2)); where.append(f"{p} line {n}")
            shown.append((p, n, v[1:]))
    boxes_a = np.array(boxes, np.float64).reshape(-1, 4)
    scores_a = np.array(scores, np.float64)
    other = "xywh" if box_format == "xyxy" else "xyxy"
    _check_det_boxes(boxes_a, scores_a, lambda q: where[q], folder,
                     lambda q: f"{os.path.relpath(shown[q][0], folder)} line {shown[q][1]}: {_box_str(shown[q][2])}",
                     box_format, hint=f"or is the box format {other}? --box-format {other}")
    unknown.warn()
    return _group(len(gt.records), np.array(img, np.int64), boxes_a, scores_a, np.array(labels, np.int64))


def _minus_one(token: str, value: float) -> float:
    """``token - 1`` rounded once (decimal), so ``repr(x)`` written as ``x + 1`` reads back as ``x``."""
    if not math.isfinite(value):
        return value - 1.0
    try:
        return float(Decimal(token) - 1)
    except (InvalidOperation, ValueError):
        return value - 1.0


def detections_to_items(dataset: Dataset, dets: list[dict]) -> list[dict]:
    """Per-record arrays -> the project's detections JSON objects (``image`` = record path)."""
    items = []
    for r, d in zip(dataset.records, dets):
        boxes = np.asarray(d["boxes"], np.float64).reshape(-1, 4)
        items.append({"image": r.path or r.image_id, "detections": [
            {"box": [float(v) for v in b], "score": float(s), "label": dataset.classes[int(c) - 1]}
            for b, s, c in zip(boxes, np.asarray(d["scores"]).reshape(-1), np.asarray(d["labels"]).reshape(-1))]})
    return items


def _atomic_write(path: str, text: str) -> None:
    atomic_write(path, text, what="detections")


def write_detections_json(path: str, items: list[dict]) -> None:
    """Write the project's detections JSON (one object per image), atomically."""
    validate_items(items, path)
    _atomic_write(path, json.dumps(items, indent=1) + "\n")


def read_detections_json(path: str) -> list[dict]:
    """Read and shape-check the project's detections JSON (the raw objects)."""
    return validate_items(load_json(path, "detections"), path)


def write_devkit_submission(path: str, dataset: Dataset, dets: list[dict]) -> None:
    """ILSVRC devkit lines ``image_index class_id confidence xmin ymin xmax ymax`` (1-based inclusive)."""
    ids = dataset.class_ids or list(range(1, len(dataset.classes) + 1))
    out = []
    for i, (r, d) in enumerate(zip(dataset.records, dets)):
        idx = r.devkit_index if r.devkit_index is not None else i + 1
        for b, s, c in zip(np.asarray(d["boxes"]).reshape(-1, 4), np.asarray(d["scores"]).reshape(-1),
                           np.asarray(d["labels"]).reshape(-1)):
            out.append(f"{idx} {ids[int(c) - 1]} {float(s):.6g} {b[0] + 1:.6g} {b[1] + 1:.6g} {b[2]:.6g} {b[3]:.6g}\n")
    _atomic_write(path, "".join(out))


#: the formats :func:`write_detections` writes (``json`` = the project's detections JSON)
FORMATS = ("json", "coco", "txt", "devkit")


def ids_path(path: str) -> str:
    """The sibling ids mapping of a COCO results file: ``out.json`` -> ``out.ids.json``."""
    root, ext = os.path.splitext(path)
    return (root if ext.lower() == ".json" else path) + ".ids.json"


def _coco_ids(dataset: Dataset) -> tuple[list[int], list[int]] | None:
    """The image and category ids of a COCO ground truth (integer record ids and class ids), else None."""
    if not dataset.class_ids or any(r.devkit_index is not None for r in dataset.records):
        return None
    image_ids = [whole(int(r.image_id)) if r.image_id.isdigit() and str(int(r.image_id)) == r.image_id else None
                 for r in dataset.records]
    if any(i is None for i in image_ids) or len(set(image_ids)) != len(image_ids):
        return None
    return image_ids, [int(c) for c in dataset.class_ids]


def coco_results(dataset: Dataset, dets: list[dict]) -> tuple[list[dict], dict | None]:
    """COCO results (``bbox`` x y w h) and, when ``dataset`` is no COCO ground truth, the ids
    mapping (images numbered in input order from 1 -> file and image id; category id = label
    -> class name); else None (the ground truth's own ids are used)."""
    ids = _coco_ids(dataset)
    if ids is None:
        image_ids = list(range(1, len(dataset.records) + 1))
        cat_ids = list(range(1, len(dataset.classes) + 1))
        mapping = {"images": {str(k): {"file": r.path, "image_id": r.image_id} for k, r in zip(image_ids, dataset.records)},
                   "categories": {str(c): name for c, name in zip(cat_ids, dataset.classes)}}
    else:
        (image_ids, cat_ids), mapping = ids, None
    out = []
    for iid, d in zip(image_ids, dets):
        for b, s, c in zip(np.asarray(d["boxes"], np.float64).reshape(-1, 4), np.asarray(d["scores"]).reshape(-1),
                           np.asarray(d["labels"]).reshape(-1)):
            out.append({"image_id": iid, "category_id": int(cat_ids[int(c) - 1]),
                        "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])], "score": float(s)})
    return out, mapping


def write_coco_results(path: str, dataset: Dataset, dets: list[dict]) -> list[str]:
    """COCO results JSON with the ground truth's ids when ``dataset`` is a COCO one, else images
    numbered from 1, category ids = labels, and the mapping in :func:`ids_path` (``*.ids.json``),
    which :func:`read_detections` joins back. Returns the files written."""
    out, mapping = coco_results(dataset, dets)
    written = []
    if mapping is not None:  # the mapping first: a results file never lies without it
        written.append(write_json(ids_path(path), mapping, what="detections ids"))
    _atomic_write(path, json.dumps(out) + "\n")
    return [os.path.abspath(path)] + written


class _Results(list):
    """COCO results whose category ids were joined back from an ids mapping (``names``: id -> class)."""

    names: dict


def _join_ids(data: list, path: str, gt: Dataset) -> list:
    """Results of a non-COCO ground truth, numbered by :func:`write_coco_results`, with the
    ground truth's ids put back from the mapping at ``path``."""
    m = load_json(path, "detections ids")
    images_m = m.get("images") if isinstance(m, dict) else None
    cats_m = m.get("categories") if isinstance(m, dict) else None
    if not isinstance(images_m, dict) or not isinstance(cats_m, dict):
        raise UserError(f"{path}: expected {{\"images\": {{id: {{\"file\", \"image_id\"}}}}, \"categories\": {{id: name}}}}")
    images = _Images(gt)
    gt_ids = gt.class_ids or list(range(1, len(gt.classes) + 1))
    cat_of_name = {c: int(i) for c, i in zip(gt.classes, gt_ids)}
    img_of: dict[str, str] = {}
    for k, v in images_m.items():
        v = v if isinstance(v, dict) else {}
        i = None
        for name in (v.get("image_id"), v.get("file")):
            if isinstance(name, str) and i is None:
                i = images.find(name)
        img_of[k] = gt.records[i].image_id if i is not None else f"{v.get('file') or v.get('image_id') or k}"
    out = _Results()
    out.names = {}
    free = max(list(cat_of_name.values()) + [0]) + 1  # ids for classes the ground truth lacks
    cat_of: dict[str, int] = {}
    for k, name in cats_m.items():
        if name in cat_of_name:
            cat_of[k] = cat_of_name[name]
        else:
            cat_of[k], free = free, free + 1
            out.names[cat_of[k]] = name
    for d in data:
        if isinstance(d, dict):
            key = _id_key(d.get("image_id"))
            cid = whole(d.get("category_id"))
            d = dict(d, image_id=img_of.get(key, d.get("image_id")),
                     category_id=cat_of.get(str(cid), d.get("category_id")) if cid is not None else d.get("category_id"))
        out.append(d)
    return out


def text_names(dataset: Dataset) -> list[str]:
    """The file name (without ``.txt``) of each record in a text folder: the image's file stem when
    it names that image alone, else the record's id; both read back by :func:`read_text_detections`."""
    images = _Images(dataset)
    names = []
    for i, r in enumerate(dataset.records):
        stem = os.path.splitext(os.path.basename(r.path))[0] if r.path else ""
        parts = r.image_id.split("/")
        if stem and not stem.startswith(".") and images.find(stem) == i:
            names.append(stem)
        elif r.image_id and not os.path.isabs(r.image_id) and all(p and p not in (".", "..") and not p.startswith(".")
                                                                   for p in parts):
            names.append(r.image_id)
        else:
            raise UserError(f"image {r.path or r.image_id!r}: no file name in a text folder reads back as this image "
                            f"(its name is not unique among the images); use --format json or coco")
    return names


def text_lines(dataset: Dataset, det: dict) -> str:
    """One image's lines ``class score x1 y1 x2 y2``, 1-based inclusive pixels (VOC's; our
    0-based ``x1`` is ``x1 + 1``, added in decimal: :func:`read_text_detections` reads it back exactly)."""
    out = []
    for b, s, c in zip(np.asarray(det["boxes"], np.float64).reshape(-1, 4), np.asarray(det["scores"]).reshape(-1),
                       np.asarray(det["labels"]).reshape(-1)):
        x1, y1, x2, y2 = (float(v) for v in b)
        out.append(f"{dataset.classes[int(c) - 1]} {float(s)!r} {_plus_one(x1)} {_plus_one(y1)} {x2!r} {y2!r}\n")
    return "".join(out)


def _plus_one(v: float) -> str:
    return str(Decimal(repr(v)) + 1) if math.isfinite(v) else repr(v + 1.0)


def text_files_of(folder: str, dataset: Dataset) -> list[str]:
    """The paths :func:`write_text_detections` writes into ``folder``, one per record."""
    return [os.path.join(os.path.abspath(folder), *n.split("/")) + ".txt" for n in text_names(dataset)]


def write_text_detections(folder: str, dataset: Dataset, dets: list[dict]) -> list[str]:
    """A folder of text files, one per image (empty when it has no detections), lines of
    :func:`text_lines`: the layout Cartucho/mAP reads. Each file is written atomically; files
    already in the folder are left alone (the callers refuse folders holding others)."""
    paths = text_files_of(folder, dataset)
    for p, d in zip(paths, dets):
        _atomic_write(p, text_lines(dataset, d))
    return paths


def check_format(fmt: str, dataset: Dataset) -> None:
    """Whether ``dataset`` has what format ``fmt`` needs (devkit: class ids and devkit image indexes)."""
    if fmt not in FORMATS:
        raise UserError(f"format {fmt!r}: use one of {', '.join(FORMATS)}")
    if fmt == "devkit":
        lacks = [w for w, ok in (("class ids (an ILSVRC map_det.txt)", bool(dataset.class_ids)),
                                 ("devkit image indexes (an ILSVRC split file's second column)",
                                  bool(dataset.records) and all(r.devkit_index is not None for r in dataset.records)))
                 if not ok]
        if lacks:
            raise UserError(f"--format devkit needs the ILSVRC devkit's ids, and this data has no {' and no '.join(lacks)}; "
                            f"use --format coco, txt or json")
    if fmt == "txt":
        text_names(dataset)


def write_detections(path: str, fmt: str, dataset: Dataset, dets: list[dict]) -> list[str]:
    """Write ``dets`` (per-record arrays) in format ``fmt`` (:data:`FORMATS`); the files written."""
    check_format(fmt, dataset)
    if fmt == "json":
        write_detections_json(path, detections_to_items(dataset, dets))
        return [os.path.abspath(path)]
    if fmt == "coco":
        return write_coco_results(path, dataset, dets)
    if fmt == "txt":
        return write_text_detections(path, dataset, dets)
    write_devkit_submission(path, dataset, dets)
    return [os.path.abspath(path)]
