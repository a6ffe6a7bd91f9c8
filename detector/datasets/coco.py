"""COCO instances JSON (``annotations/instances_<split>.json``, images in ``<root>/<split>/``).

Category ids in ascending order become labels 1..C (``Dataset.class_ids`` keeps the ids); with a
configured class list, the categories are matched by name. COCO boxes ``[x, y, w, h]`` are
continuous 0-based pixels already: ``x1, y1, x2, y2 = x, y, x + w, y + h``. ``iscrowd``
becomes ``difficult`` (a region that neither rewards nor penalises; the coco protocol maps it
back). Images without annotations are kept, with no boxes.
"""

from __future__ import annotations

import json
import os

import numpy as np

from backbone.errors import UserError

from .common import BoxCleaner, ClassList
from .records import Dataset, ImageRecord


def load_json(path: str, what: str = "JSON file"):
    """``json.load`` with errors naming the file and line."""
    if not os.path.isfile(path):
        raise UserError(f"{what} {path}: no such file")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise UserError(f"{path} line {e.lineno}: malformed JSON ({e.msg})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: cannot read ({e})") from None


def coco_from_dict(data, path: str, classes: ClassList | None, image_dir: str = "", split: str = "") -> Dataset:
    """A :class:`Dataset` from a parsed COCO instances dict (``path`` is named in errors)."""
    if not isinstance(data, dict) or "images" not in data or "categories" not in data:
        raise UserError(f"{path}: not a COCO instances file (no 'images' / 'categories')")
    try:
        cats = sorted(data["categories"], key=lambda c: int(c["id"]))
        cat_ids = [int(c["id"]) for c in cats]
        cat_names = [str(c.get("name", c["id"])) for c in cats]
    except (KeyError, TypeError, ValueError):
        raise UserError(f"{path}: a category lacks an integer 'id'") from None
    if classes is None:
        names, ids = cat_names, cat_ids
    else:
        by_name = dict(zip(cat_names, cat_ids))
        missing = [n for n in classes.names if n not in by_name]
        if missing:
            raise UserError(f"{path}: class {missing[0]!r} of the config is not a category here")
        names, ids = list(classes.names), [by_name[n] for n in classes.names]
    label_of = {cid: i + 1 for i, cid in enumerate(ids)}
    per_image: dict[int, list] = {}
    for k, a in enumerate(data.get("annotations", [])):
        try:
            iid, cid, bbox = int(a["image_id"]), int(a["category_id"]), [float(v) for v in a["bbox"]]
        except (KeyError, TypeError, ValueError):
            raise UserError(f"{path}: annotation #{k} lacks image_id / category_id / a numeric bbox") from None
        if len(bbox) != 4 or not np.all(np.isfinite(bbox)):
            raise UserError(f"{path}: annotation #{k} (id {a.get('id')}): bbox {a['bbox']} is not 4 finite numbers")
        if cid not in label_of:
            if classes is None:
                raise UserError(f"{path}: annotation #{k} (id {a.get('id')}): unknown category id {cid}")
            if cid not in cat_ids:
                raise UserError(f"{path}: annotation #{k} (id {a.get('id')}): unknown category id {cid}")
            raise UserError(f"{path}: annotation #{k}: category {cat_names[cat_ids.index(cid)]!r} is not in the configured classes")
        area = a.get("area")
        try:
            area = float(bbox[2] * bbox[3]) if area is None else float(area)
        except (TypeError, ValueError):
            raise UserError(f"{path}: annotation #{k} (id {a.get('id')}): area {area!r} is not a number") from None
        per_image.setdefault(iid, []).append((bbox, label_of[cid], bool(a.get("iscrowd", 0)), area))
    cleaner = BoxCleaner(f"{path}", one_based=False)
    records = []
    seen = set()
    for im in data["images"]:
        try:
            iid = int(im["id"])
        except (KeyError, TypeError, ValueError):
            raise UserError(f"{path}: an image lacks an integer 'id'") from None
        seen.add(iid)
        objs = per_image.get(iid, [])
        xywh = np.array([o[0] for o in objs], np.float64).reshape(-1, 4)
        file_boxes = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
        w, h = int(im.get("width", 0) or 0), int(im.get("height", 0) or 0)
        img_path = os.path.abspath(os.path.join(image_dir, str(im.get("file_name", "")))) if image_dir else str(im.get("file_name", ""))
        if (w <= 0 or h <= 0) and image_dir:
            from .common import image_size

            w, h = image_size(img_path)
        boxes, keep = cleaner(file_boxes, w, h, f"image id {iid}")
        records.append(ImageRecord(image_id=str(iid), path=img_path, width=w, height=h, boxes=boxes,
                                   labels=np.array([o[1] for o in objs], np.int64)[keep],
                                   difficult=np.array([o[2] for o in objs], bool)[keep],
                                   areas=np.array([o[3] for o in objs], np.float64)[keep]))
    unknown = set(per_image) - seen
    if unknown:
        raise UserError(f"{path}: annotations refer to image id {min(unknown)}, which is not in 'images'")
    cleaner.report()
    return Dataset(classes=names, records=records, root=image_dir, split=split, class_ids=ids)


def read_coco(root: str, split: str, classes: ClassList | None = None,
              annotations: str = "annotations/instances_{split}.json", images: str = "{split}") -> Dataset:
    """Read split ``split`` of a COCO-layout dataset (file patterns from the config)."""
    root = os.path.abspath(os.path.expanduser(root))
    if not os.path.isdir(root):
        raise UserError(f"dataset root {root}: no such folder")
    path = os.path.join(root, annotations.format(split=split))
    data = load_json(path, "COCO annotations")
    ds = coco_from_dict(data, path, classes, os.path.join(root, images.format(split=split)), split)
    ds.root = root
    return ds
