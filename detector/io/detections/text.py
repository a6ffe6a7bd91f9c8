"""A folder of text files, one per image: lines ``class confidence left top right bottom``
(inclusive pixels read as VOC's: x1 = left - 1, x2 = right; with ``box_format="xywh"`` the last
numbers are ``left top width height``), the layout Cartucho/mAP reads; read and written."""

from __future__ import annotations

import math
import os
from decimal import Decimal, InvalidOperation

import numpy as np

from backbone.errors import UserError

from ..datasets.records import Dataset
from ..sniff import file_box, read_lines, text_files
from .common import (
    _atomic_write,
    _box_str,
    _check_det_boxes,
    _group,
    _Images,
    _Unknown,
    short,
)


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
