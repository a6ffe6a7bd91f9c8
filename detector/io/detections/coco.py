"""COCO results JSON ``[{"image_id", "category_id", "bbox": [x, y, w, h], "score"}]``: read
(with the ``*.ids.json`` mapping joined back) and written (the ground truth's ids when it is a
COCO one, else images numbered from 1 and category id = label, the mapping beside it)."""

from __future__ import annotations

import itertools
import json
import os

import numpy as np

from backbone.errors import UserError, strict_enabled
from backbone.io import write_json

from ..datasets.coco import load_json
from ..datasets.records import Dataset
from ..sniff import number
from .common import (
    _atomic_write,
    _box_str,
    _check_det_boxes,
    _group,
    _Images,
    _label_of_id,
    _Unknown,
    short,
    whole,
)

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
