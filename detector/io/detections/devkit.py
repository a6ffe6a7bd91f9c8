"""ILSVRC devkit submission lines ``image_index class_id confidence xmin ymin xmax ymax``
(1-based inclusive; ``image_index`` is the split file's index column, or the ``.mat``'s ids)."""

from __future__ import annotations

import numpy as np

from backbone.errors import UserError

from ..datasets.records import Dataset
from .common import (
    _atomic_write,
    _box_str,
    _check_det_boxes,
    _group,
    _Images,
    _label_of_id,
    _Unknown,
    short,
)


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
