"""COCO instances JSON (``annotations/instances_<split>.json``, images in ``<root>/<split>/``).

When the configured file is missing (``data.coco_annotations`` left at its default), the
layout is found: every COCO JSON below the root, each file one split, the split named by the
file (``instances_val2017.json``) or its folder (``valid/_annotations.coco.json``; ``valid``,
``val2017`` mean val, ``train2017`` train); one file naming no split is cut by the fixed-seed
70/15/15 split written once. Its images are beside the JSON, under ``images/`` there, in the
root's ``<split word>/`` or ``images/`` folder (the first that holds the first image).

Category ids in ascending order become labels 1..C (``Dataset.class_ids`` keeps the ids); with a
configured class list, the categories are matched by name. COCO boxes ``[x, y, w, h]`` are
continuous 0-based pixels already: ``x1, y1, x2, y2 = x, y, x + w, y + h``. ``iscrowd``
becomes ``difficult`` (a region that neither rewards nor penalises; the coco protocol maps it
back). Images without annotations are kept, with no boxes.
"""

from __future__ import annotations

import json
import math
import os
import reprlib

import numpy as np

from backbone.errors import Tally, UserError

from ..sniff import number
from .boxes import BoxCleaner
from .classes import ClassList, warn_blank_names
from .sizes import MAX_SIDE
from .splits import SPLIT_ALIASES, MissingSplit, split_of
from .walk import walk_files
from .warning import DatasetWarning
from .folder import fixed_split
from .index import size_index
from .records import Dataset, ImageRecord


def load_json(path: str, what: str = "JSON file"):
    """``json.load`` with errors naming the file and line (nesting too deep for the parser and
    integers of more digits than Python converts are one line too)."""
    if not os.path.exists(path):
        raise UserError(f"{what} {path}: no such file")
    if not os.path.isfile(path):
        raise UserError(f"{what} {path}: not a regular file (a folder, FIFO, socket or device is never read)")
    try:
        with open(path, encoding="utf-8-sig") as f:   # a BOM is skipped
            return json.load(f)
    except json.JSONDecodeError as e:
        raise UserError(f"{path} line {e.lineno}: malformed JSON ({e.msg})") from None
    except RecursionError:
        raise UserError(f"{path}: malformed JSON (nested too deeply)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: cannot read ({e})") from None
    except ValueError as e:  # int("1" * 5000): "Exceeds the limit (4300 digits) for integer string conversion"
        raise UserError(f"{path}: malformed JSON ({str(e).split(':')[0]})") from None
    except MemoryError:
        raise UserError(f"{path}: too large to read") from None


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother, _REPR.maxlong, _REPR.maxlist, _REPR.maxdict = 3, 60, 60, 40, 6, 4


def _short(v) -> str:
    return _REPR.repr(v)


def _whole(v, strings: bool = False) -> int | None:
    """A JSON integer (or integral float; with ``strings`` also a string of digits), else None."""
    if type(v) is int:
        return v
    if type(v) is float and math.isfinite(v) and v.is_integer():
        return int(v)
    if strings and type(v) is str and v.strip().lstrip("-").isdigit():
        try:
            return int(v)
        except ValueError:  # more digits than int() converts
            return None
    return None


def _list(data: dict, key: str, path: str, required: bool = True) -> list:
    v = data.get(key, [] if not required else None)
    if not isinstance(v, list):
        raise UserError(f"{path}: {key!r} is not a list" + ("" if key in data else " (missing)"))
    return v


def coco_from_dict(data, path: str, classes: ClassList | None, image_dir: str = "", split: str = "") -> Dataset:
    """A :class:`Dataset` from a parsed COCO instances dict (``path`` is named in errors).

    Ids are integers (a string of digits is taken as one), boxes and areas JSON numbers; an
    image id or category id given twice, or a category name given twice, is an error naming
    both entries."""
    if not isinstance(data, dict) or "images" not in data or "categories" not in data:
        raise UserError(f"{path}: not a COCO instances file (no 'images' / 'categories')")
    categories, images, annotations = (_list(data, "categories", path), _list(data, "images", path),
                                       _list(data, "annotations", path, required=False))
    cat_ids, cat_names = _categories(categories, path)
    if classes is None:
        names, ids = cat_names, cat_ids
    else:
        by_name = dict(zip(cat_names, cat_ids))
        missing = [n for n in classes.names if n not in by_name]
        if missing:
            raise UserError(f"{path}: class {missing[0]!r} of the config is not a category here")
        names, ids = list(classes.names), [by_name[n] for n in classes.names]
    label_of = {cid: i + 1 for i, cid in enumerate(ids)}
    per_image = _annotations(annotations, path, label_of, classes, cat_ids, cat_names)
    cleaner = BoxCleaner(f"{path}", one_based=False, header=size_index(image_dir) if image_dir else None)
    merged_into = _same_file_ids(images)
    aliases: dict[int, list[int]] = {}
    for later, first in merged_into.items():
        aliases.setdefault(first, []).append(later)
    merged = Tally(path, "image id(s) name a file_name listed before under another id; each is merged into that "
                   "image (the union of their annotations; detections of either id score against it)", DatasetWarning)
    records = []
    seen: dict[int, int] = {}
    for k, im in enumerate(images):
        iid = _whole(im.get("id"), strings=True) if isinstance(im, dict) else None
        if iid is None:
            raise UserError(f"{path}: image #{k} lacks an integer 'id' ({_short(im)})")
        if iid in seen:
            raise UserError(f"{path}: images #{seen[iid]} and #{k} have the same id {_short(iid)} "
                            "(its boxes would be counted twice)")
        seen[iid] = k
        if iid in merged_into:
            merged.add(f"image #{k} (id {_short(iid)}) is file {im['file_name']!r} of image id "
                       f"{_short(merged_into[iid])}")
            continue
        size = []
        for key in ("width", "height"):
            v = im.get(key)
            n = 0 if v is None else _whole(v)
            if n is None or not 0 <= n <= MAX_SIDE:
                raise UserError(f"{path}: image #{k} (id {_short(iid)}): {key} {_short(v)} is not a whole number of "
                                f"pixels (0..{MAX_SIDE})")
            size.append(n)
        w, h = size
        file_name = im.get("file_name", "")
        if not isinstance(file_name, str):
            raise UserError(f"{path}: image #{k} (id {_short(iid)}): file_name {_short(file_name)} is not a string")
        objs = per_image.get(iid, []) + [o for a in aliases.get(iid, ()) for o in per_image.get(a, [])]
        xywh = np.array([o[0] for o in objs], np.float64).reshape(-1, 4)
        file_boxes = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
        img_path = os.path.abspath(os.path.join(image_dir, file_name)) if image_dir else file_name
        orientation = 1
        if image_dir:  # the image's own size wins over width/height (one counted warning)
            w, h, orientation = cleaner.sizes(w, h, img_path, f"image id {_short(iid)}", "width x height")
        boxes, keep = cleaner(file_boxes, w, h, f"image id {_short(iid)}", orientation)
        records.append(ImageRecord(image_id=str(iid), path=img_path, width=w, height=h, boxes=boxes,
                                   labels=np.array([o[1] for o in objs], np.int64)[keep],
                                   difficult=np.array([o[2] for o in objs], bool)[keep],
                                   areas=np.array([o[3] for o in objs], np.float64)[keep],
                                   aliases=tuple(str(a) for a in aliases.get(iid, ()))))
    unknown = set(per_image) - set(seen)
    if unknown:
        raise UserError(f"{path}: annotations refer to image id {_short(min(unknown))}, which is not in 'images'")
    cleaner.report()
    merged.report()
    return Dataset(classes=names, records=records, root=image_dir, split=split, class_ids=ids)


def _categories(categories: list, path: str) -> tuple[list[int], list[str]]:
    """The categories' ids and names, sorted by id (an id or a name given twice is an error)."""
    first_of: dict[int, int] = {}
    name_of: dict[str, int] = {}
    cats = []
    for k, c in enumerate(categories):
        cid = _whole(c.get("id"), strings=True) if isinstance(c, dict) else None
        if cid is None:
            raise UserError(f"{path}: category #{k} lacks an integer 'id' ({_short(c)})")
        if cid in first_of:
            raise UserError(f"{path}: categories #{first_of[cid]} and #{k} have the same id {_short(cid)}")
        first_of[cid] = k
        name = c.get("name", cid)
        if not isinstance(name, (str, int)) or isinstance(name, bool):
            raise UserError(f"{path}: category #{k} (id {_short(cid)}): name {_short(name)} is not a string")
        name = str(name)
        if name in name_of:
            raise UserError(f"{path}: categories #{name_of[name]} and #{k} have the same name {name!r}")
        name_of[name] = k
        cats.append((cid, name))
    warn_blank_names(path, [(f"category #{k} (id {_short(cid)})", n) for k, (cid, n) in enumerate(cats)])
    cats.sort()
    return [c[0] for c in cats], [c[1] for c in cats]


def _annotations(annotations: list, path: str, label_of: dict, classes, cat_ids: list, cat_names: list
                 ) -> dict[int, list]:
    """``{image id: [(xywh, label, crowd, area), ...]}`` of the checked annotations."""
    per_image: dict[int, list] = {}
    for k, a in enumerate(annotations):
        if not isinstance(a, dict):
            raise UserError(f"{path}: annotation #{k} is not an object ({_short(a)})")
        iid, cid = _whole(a.get("image_id"), strings=True), _whole(a.get("category_id"), strings=True)
        bbox = a.get("bbox")
        if iid is None or cid is None or "bbox" not in a:
            raise UserError(f"{path}: annotation #{k} lacks image_id / category_id / a numeric bbox")
        where = f"{path}: annotation #{k} (id {_short(a.get('id'))})"
        if not isinstance(bbox, list) or len(bbox) != 4 or any(number(v) is None for v in bbox):
            raise UserError(f"{where}: bbox is not 4 numbers (got {_short(bbox)})")
        bbox = [number(v) for v in bbox]
        if not np.all(np.isfinite(bbox)):
            raise UserError(f"{where}: bbox {_short(a['bbox'])} is not 4 finite numbers")
        if cid not in label_of:
            if classes is None or cid not in cat_ids:
                raise UserError(f"{where}: unknown category id {_short(cid)}")
            raise UserError(f"{path}: annotation #{k}: category {cat_names[cat_ids.index(cid)]!r} is not in the configured classes")
        area = a.get("area")
        if area is None:
            area = float(bbox[2] * bbox[3])
        elif number(area) is None or not math.isfinite(number(area)):
            raise UserError(f"{where}: area {_short(area)} is not a finite number")
        else:
            area = number(area)
        crowd = a.get("iscrowd", 0)
        if type(crowd) not in (int, float, bool) or crowd not in (0, 1):
            raise UserError(f"{where}: iscrowd {_short(crowd)} is not 0 or 1")
        per_image.setdefault(iid, []).append((bbox, label_of[cid], bool(crowd), area))
    return per_image


def _same_file_ids(images: list) -> dict[int, int]:
    """``{image id: the first image id with the same file_name}`` for the images that repeat a
    file under another id (read twice, the image would train twice, once as background, and be
    scored twice). Entries that are not well-formed are left to the reader's errors."""
    first: dict[str, int] = {}
    firsts: set[int] = set()
    out: dict[int, int] = {}
    for im in images:
        if not isinstance(im, dict):
            continue
        iid, name = _whole(im.get("id"), strings=True), im.get("file_name")
        if iid is None or not isinstance(name, str) or not name:
            continue
        if name not in first:
            first[name] = iid
            firsts.add(iid)
        elif iid not in firsts and iid not in out:   # (an id given twice is the reader's error)
            out[iid] = first[name]
    return out


DEFAULT_ANNOTATIONS = "annotations/instances_{split}.json"


def _split_word(path: str, root: str) -> tuple[str | None, str | None]:
    """(split, the word naming it) of a COCO file, from its name, else its folders."""
    stem = os.path.basename(path).rsplit(".", 1)[0]
    for w in stem.replace("-", "_").replace(".", "_").split("_"):
        if w.lower() in SPLIT_ALIASES:
            return SPLIT_ALIASES[w.lower()], w
    rel = os.path.relpath(path, root).replace(os.sep, "/").split("/")[:-1]
    for w in rel:
        if w.lower() in SPLIT_ALIASES:
            return SPLIT_ALIASES[w.lower()], w
    return split_of(os.path.relpath(path, root)), None


def coco_files(root: str) -> list[str]:
    """COCO instances files below ``root`` (JSON with an ``"images"`` key near its start)."""
    out = []
    for p in walk_files(root, (".json",)):
        try:
            with open(p, "rb") as f:
                head = f.read(1 << 16).decode("utf-8", "replace")
        except OSError:
            continue
        if '"images"' in head:
            out.append(p)
    return out


def _image_dir(root: str, path: str, word: str | None, data) -> str:
    here = os.path.dirname(path)
    cands = [here, os.path.join(here, "images")]
    if word:
        cands += [os.path.join(root, word), os.path.join(root, "images", word), os.path.join(os.path.dirname(here), word)]
    cands.append(os.path.join(root, "images"))
    images = data.get("images") if isinstance(data, dict) else None
    first = images[0].get("file_name") if isinstance(images, list) and images and isinstance(images[0], dict) else None
    if isinstance(first, str):
        for c in cands:
            if os.path.isfile(os.path.join(c, first)):
                return c
    return here


def find_coco(root: str, split: str, classes: ClassList | None, expected: str = "") -> Dataset:
    """Read split ``split`` of a COCO dataset whose files are found (see the module doc)."""
    files = coco_files(root)
    if not files:
        raise UserError(f"dataset root {root}: no COCO instances JSON found")
    named = {}
    for p in files:
        s, w = _split_word(p, root)
        if s is not None:
            if s in named:
                raise UserError(f"dataset {root}: {named[s][0]} and {p} are both the {s} split")
            named[s] = (p, w)
    if named:
        keys = ["train", "val"] if split == "trainval" else [split]
        if not all(k in named for k in keys):
            raise MissingSplit((f"COCO annotations {expected}: no such file; " if expected else "") +
                               f"dataset {root}: no {split!r} split (its COCO files: "
                               f"{', '.join(f'{k} {os.path.relpath(v[0], root)}' for k, v in named.items())})")
        parts = []
        for k in keys:
            p, w = named[k]
            data = load_json(p, "COCO annotations")
            parts.append(coco_from_dict(data, p, classes, _image_dir(root, p, w, data), split))
        ds = parts[0]
        for extra in parts[1:]:
            ds.records += extra.records
        ds.root = root
        return ds
    if len(files) > 1:
        raise UserError(f"dataset {root}: {len(files)} COCO files and none names a split "
                        f"({', '.join(os.path.relpath(p, root) for p in files[:3])}); set data.coco_annotations")
    data = load_json(files[0], "COCO annotations")
    ds = coco_from_dict(data, files[0], classes, _image_dir(root, files[0], None, data), split)
    stems = {os.path.splitext(os.path.basename(r.path))[0]: r for r in ds.records}
    ids, _ = fixed_split(root, split, sorted(stems))
    ds.records = [stems[i] for i in ids if i in stems]
    ds.root = root
    return ds


def read_coco(root: str, split: str, classes: ClassList | None = None,
              annotations: str = DEFAULT_ANNOTATIONS, images: str = "{split}") -> Dataset:
    """Read split ``split`` of a COCO-layout dataset (file patterns from the config; with the
    default pattern and no such file, the files are found)."""
    root = os.path.abspath(os.path.expanduser(root))
    if not os.path.isdir(root):
        raise UserError(f"dataset root {root}: no such folder")
    path = os.path.join(root, annotations.format(split=split))
    if annotations == DEFAULT_ANNOTATIONS and not os.path.exists(path):
        return find_coco(root, split, classes, path)
    data = load_json(path, "COCO annotations")
    ds = coco_from_dict(data, path, classes, os.path.join(root, images.format(split=split)), split)
    ds.root = root
    return ds
