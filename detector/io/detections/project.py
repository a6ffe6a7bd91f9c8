"""The project's detections JSON (DESIGN.md): ``[{"image": path, "detections": [{"box": [x1, y1,
x2, y2], "score": s, "label": name}]}]``, boxes in our convention (0-based, x2 exclusive);
``image`` matches a record by path, else by image id, else by file stem."""

from __future__ import annotations

import json
import os

import numpy as np

from backbone.errors import UserError

from ..datasets.coco import load_json
from ..datasets.records import Dataset
from ..sniff import number
from .common import (
    _atomic_write,
    _box_str,
    _check_det_boxes,
    _group,
    _Images,
    _Unknown,
    short,
    whole,
)


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


def detections_to_items(dataset: Dataset, dets: list[dict]) -> list[dict]:
    """Per-record arrays -> the project's detections JSON objects (``image`` = record path)."""
    items = []
    for r, d in zip(dataset.records, dets):
        boxes = np.asarray(d["boxes"], np.float64).reshape(-1, 4)
        items.append({"image": r.path or r.image_id, "detections": [
            {"box": [float(v) for v in b], "score": float(s), "label": dataset.classes[int(c) - 1]}
            for b, s, c in zip(boxes, np.asarray(d["scores"]).reshape(-1), np.asarray(d["labels"]).reshape(-1))]})
    return items


def write_detections_json(path: str, items: list[dict]) -> None:
    """Write the project's detections JSON (one object per image), atomically."""
    validate_items(items, path)
    _atomic_write(path, json.dumps(items, indent=1) + "\n")


def read_detections_json(path: str) -> list[dict]:
    """Read and shape-check the project's detections JSON (the raw objects)."""
    return validate_items(load_json(path, "detections"), path)
