"""YOLO / ultralytics layout (``data.format: yolo``).

Images under ``images/`` folders, one ``labels/`` text file per image at the mirrored path
(the last ``/images/`` of the image path replaced by ``/labels/``, the extension by ``.txt``,
as ultralytics' ``img2label_paths``): ``images/`` + ``labels/``, ``images/train`` +
``labels/train``, ``train/images`` + ``train/labels``, ... Each label line is ``class cx cy w h``
normalised to [0, 1] (a polygon line ``class x1 y1 x2 y2 ...`` becomes its bounding box, as
ultralytics does); an image without a label file (or with an empty one) is a background image.
Image sizes are read from the file headers (nothing decoded; EXIF orientation applied, as
ultralytics' ``exif_size``; kept in the size index). Boxes leaving [0, 1] are clipped
and counted in the one :class:`DatasetWarning`.

Class names: ``data.yaml`` ``names`` (a list, or an ``{id: name}`` map with ids 0..C-1), else
``classes.txt`` / ``obj.names`` in the root or a ``labels/`` folder, else ``data.classes``; a
configured list that disagrees with the file's is an error naming both. Class id k is label k + 1.

Splits: ``data.yaml``'s ``train`` / ``val`` / ``test`` (a folder of images, a ``.txt`` list of
image paths, or a list of those), resolved as ultralytics' ``check_det_dataset`` does: relative
to ``path``, and a relative ``path`` relative to the yaml's folder (ultralytics tries the
working directory, then its datasets folder; the yaml's folder is what a copied dataset means),
an entry starting ``../`` that does not exist also tried without it (Roboflow's exports); else
``train/`` ``valid/`` ``test/`` folders; else the fixed-seed 70/15/15 split written once.
"""

from __future__ import annotations

import math
import os

import numpy as np

from backbone.errors import Tally, UserError
from backbone.io import read_yaml

from .boxes import BoxCleaner
from .classes import ClassList, read_class_file, warn_blank_names
from .sizes import shown_size
from .splits import MissingSplit, drop_repeats, own_splits
from .walk import check_unique_stems, walk_files
from .warning import DatasetWarning
from .folder import fixed_split
from .index import size_index
from .records import Dataset, ImageRecord
from .voc import IMAGE_EXTENSIONS

YAML_NAMES = ("data.yaml", "dataset.yaml", "data.yml")
CLASS_FILES = ("classes.txt", "obj.names")
#: how far past [0, 1] a normalised coordinate is still rounding (6 decimals), not a defect
ROUNDING = 1e-5
_EXTS = tuple(sorted({e.lower() for e in IMAGE_EXTENSIONS} | {".webp"}))


def label_path(image: str) -> str:
    """The label file of ``image`` (ultralytics' img2label_paths)."""
    sa, sb = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    head = sb.join(image.rsplit(sa, 1)) if sa in image else image
    return os.path.splitext(head)[0] + ".txt"


def is_image(path: str) -> bool:
    return path.lower().endswith(_EXTS)


def find_yaml(root: str) -> str | None:
    """``root`` itself when it is a yaml file, else the first of :data:`YAML_NAMES` in it."""
    if os.path.isfile(root):
        return root if root.lower().endswith((".yaml", ".yml")) else None
    for n in YAML_NAMES:
        if os.path.isfile(os.path.join(root, n)):
            return os.path.join(root, n)
    return None


def load_data_yaml(path: str) -> dict:
    data = read_yaml(path, f"data.yaml {path}", peer=True) or {}
    if not isinstance(data, dict):
        raise UserError(f"{path}: not a YOLO dataset file (expected keys names, path, train, val, test)")
    return data


def yaml_names(data: dict, path: str) -> list[str] | None:
    names = data.get("names")
    if names is None:
        return None
    if isinstance(names, dict):
        keys = sorted(names, key=lambda k: (not isinstance(k, int), k if isinstance(k, int) else 0))
        if any(not isinstance(k, int) or isinstance(k, bool) for k in keys) or keys != list(range(len(keys))):
            raise UserError(f"{path}: names map keys must be the class ids 0..{len(keys) - 1}, got {list(names)[:6]}")
        names = [names[k] for k in keys]
    if not isinstance(names, list) or not names or any(isinstance(n, (dict, list)) or n is None for n in names):
        raise UserError(f"{path}: names must be a list of class names or an {{id: name}} map")
    names = [str(n) for n in names]
    warn_blank_names(path, [(f"names[{k}]", n) for k, n in enumerate(names)])
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise UserError(f"{path}: class {dup[0]!r} is named twice in names")
    if "nc" in data and data["nc"] != len(names):
        raise UserError(f"{path}: nc {data['nc']!r} and the {len(names)} names disagree")
    return names


def yaml_split_entries(data: dict, path: str) -> tuple[str, dict[str, list[str]]]:
    """The dataset folder and ``{split: [absolute entries]}`` as ultralytics resolves them."""
    here = os.path.dirname(os.path.abspath(path))
    base = data.get("path") or here
    base = os.path.expanduser(os.path.expandvars(str(base)))
    if not os.path.isabs(base):
        base = os.path.join(here, base)
    base = os.path.abspath(base)
    out: dict[str, list[str]] = {}
    for key in ("train", "val", "test"):
        v = data.get(key)
        if not v:
            continue
        items = v if isinstance(v, list) else [v]
        resolved = []
        for it in items:
            if not isinstance(it, str):
                raise UserError(f"{path}: {key} entry {it!r} is not a path")
            x = os.path.abspath(os.path.join(base, it))
            if not os.path.exists(x) and it.startswith("../"):
                x = os.path.abspath(os.path.join(base, it[3:]))
            if not os.path.exists(x):
                raise UserError(f"{path}: {key} {it!r} is {x}, which does not exist")
            resolved.append(x)
        out[key] = resolved
    return base, out


def _images_of(entry: str, path: str) -> list[str]:
    if os.path.isdir(entry):
        return [p for p in walk_files(entry, _EXTS)]
    lines = []
    try:
        with open(entry, encoding="utf-8-sig") as f:   # a BOM is skipped
            lines = [(n, ln.strip()) for n, ln in enumerate(f, 1) if ln.strip()]
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{entry} (named in {path}): cannot read ({e})") from None
    parent = os.path.dirname(entry)
    images = [(n, os.path.abspath(x if os.path.isabs(x) else os.path.join(parent, x))) for n, x in lines]
    return [images[k][1] for k in drop_repeats(images, f"image list {entry}")]


def all_images(root: str) -> list[str]:
    """Every image below ``root`` that sits under an ``images`` folder."""
    return [p for p in walk_files(root, _EXTS) if f"{os.sep}images{os.sep}" in os.sep + os.path.relpath(p, root)]


def class_names(root: str, yaml_path: str | None, classes: ClassList | None) -> tuple[list[str], str]:
    """The class names and where they come from (see the module doc)."""
    found, source = None, ""
    if yaml_path:
        found, source = yaml_names(load_data_yaml(yaml_path), yaml_path), yaml_path
    if found is None:
        for d in (root, os.path.join(root, "labels")):
            for n in CLASS_FILES:
                p = os.path.join(d, n)
                if os.path.isfile(p):
                    found, source = read_class_file(p).names, p
                    break
            if found:
                break
    if classes is not None:
        if found is not None and list(classes.names) != found:
            raise UserError(f"the configured classes {list(classes.names)} disagree with {source}'s {found} "
                            "(YOLO class ids are positions in that list; drop data.classes or fix one of them)")
        return list(classes.names), "data.classes"
    if found is None:
        raise UserError(f"dataset {root}: YOLO labels but no class names (add data.yaml with names, "
                        "classes.txt or obj.names, or --set 'data.classes=[...]')")
    return found, source


def _parse_labels(path: str, n_classes: int, source: str, width: int, height: int, repeats: Tally | None = None):
    """(file boxes xyxy in pixels (N, 4), class ids (N,)) of one label file. A line repeating an
    earlier one (same class, same numbers) is dropped and counted in ``repeats``, as ultralytics
    drops duplicate labels."""
    boxes, ids = [], []
    seen: dict[tuple, int] = {}
    try:
        with open(path, encoding="utf-8-sig") as f:   # a BOM is skipped
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: cannot read ({e})") from None
    for n, ln in enumerate(lines, 1):
        parts = ln.split()
        if not parts:
            continue
        if len(parts) < 5 or (len(parts) > 5 and len(parts) % 2 == 0):
            raise UserError(f"{path} line {n}: expected 'class cx cy w h' (or 'class x1 y1 x2 y2 ...'), got {ln.strip()[:60]!r}")
        try:
            cid = int(parts[0])
        except ValueError:
            raise UserError(f"{path} line {n}: class id {parts[0][:20]!r} is not a whole number") from None
        if not 0 <= cid < n_classes:
            raise UserError(f"{path} line {n}: class id {cid} out of range (0..{n_classes - 1}: {n_classes} "
                            f"classes in {source})")
        try:
            v = [float(x) for x in parts[1:]]
        except ValueError:
            raise UserError(f"{path} line {n}: coordinates {' '.join(parts[1:])[:60]!r} are not numbers") from None
        if not all(math.isfinite(x) for x in v):
            raise UserError(f"{path} line {n}: coordinates are not finite numbers")
        if (cid, *v) in seen:
            if repeats is not None:
                repeats.add(f"{os.path.basename(path)} line {n} is line {seen[(cid, *v)]} again")
            continue
        seen[(cid, *v)] = n
        if len(v) == 4:
            cx, cy, w, h = v
            b = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
        else:
            xs, ys = v[0::2], v[1::2]
            b = (min(xs), min(ys), max(xs), max(ys))
        # 6-decimal files put an edge box a rounding step past 0 or 1: not a clip worth a warning
        b = [0.0 if -ROUNDING <= x < 0 else 1.0 if 1 < x <= 1 + ROUNDING else x for x in b]
        boxes.append((b[0] * width, b[1] * height, b[2] * width, b[3] * height))
        ids.append(cid)
    return np.array(boxes, np.float64).reshape(-1, 4), np.array(ids, np.int64)


def _split_images(root: str, yaml_path: str | None, split: str) -> tuple[list[str], str]:
    """The images of ``split`` and the folder they were looked for in."""
    if yaml_path:
        data = load_data_yaml(yaml_path)
        base, entries = yaml_split_entries(data, yaml_path)
        if entries:
            key = {"trainval": None}.get(split, split)
            if split == "trainval":
                keys = [k for k in ("train", "val") if k in entries]
            else:
                keys = [key] if key in entries else []
            if not keys:
                raise MissingSplit(f"{yaml_path}: no {split!r} split (it names {', '.join(entries)})")
            images = []
            for k in keys:
                for e in entries[k]:
                    images.extend(_images_of(e, yaml_path))
            if not images:   # ultralytics: "No images found in ..."
                named = ", ".join(f"{k} {e}" for k in keys for e in entries[k])
                raise UserError(f"{yaml_path}: no images in its {split!r} split ({named})")
            return sorted(dict.fromkeys(images)), base
        root = base if os.path.isdir(base) else root
    images = all_images(root)
    if not images:
        raise UserError(f"dataset root {root}: no images under an images/ folder")
    by_split = own_splits(root, images)
    if by_split is not None:
        if split not in by_split:
            raise MissingSplit(f"dataset {root}: no {split!r} split (its own splits: "
                               f"{', '.join(s for s in by_split if s != 'trainval')})")
        return by_split[split], root
    check_unique_stems(images, f"dataset {root}")
    by_stem = {os.path.splitext(os.path.basename(p))[0]: p for p in images}
    ids, split_path = fixed_split(root, split, sorted(by_stem))
    missing = [i for i in ids if i not in by_stem]
    if missing:
        raise UserError(f"split file {split_path}: image id {missing[0]!r} has no image below {root}")
    return [by_stem[i] for i in ids], root


def read_yolo(root: str, split: str, classes: ClassList | None = None) -> Dataset:
    """Read split ``split`` of the YOLO dataset at ``root`` (a folder, or its data.yaml)."""
    root = os.path.abspath(os.path.expanduser(root))
    if not os.path.exists(root):
        raise UserError(f"dataset {root}: no such file or folder")
    yaml_path = find_yaml(root)
    if os.path.isfile(root) and yaml_path is None:
        raise UserError(f"dataset {root}: a file, but not a data.yaml")
    folder = os.path.dirname(root) if os.path.isfile(root) else root
    names, source = class_names(folder, yaml_path, classes)
    images, base = _split_images(folder, yaml_path, split)
    check_unique_stems(images, f"dataset {root} split {split}")
    cleaner = BoxCleaner(f"dataset {root} split {split}", one_based=False, header=size_index(folder))
    repeats = Tally(f"dataset {root} split {split}", "label line(s) repeat an earlier line of their file and are "
                    "dropped", DatasetWarning)
    records = []
    for p in images:
        w, h = shown_size(*cleaner.header(p))  # the size load_image returns (EXIF applied), as ultralytics' exif_size
        lp = label_path(p)
        if os.path.isfile(lp):
            file_boxes, ids = _parse_labels(lp, len(names), source, w, h, repeats)
        else:
            file_boxes, ids = np.zeros((0, 4)), np.zeros(0, np.int64)
        boxes, keep = cleaner(file_boxes, w, h, os.path.basename(lp))
        records.append(ImageRecord(image_id=os.path.splitext(os.path.basename(p))[0], path=p, width=w, height=h,
                                   boxes=boxes, labels=ids[keep] + 1, difficult=np.zeros(int(keep.sum()), bool)))
    cleaner.report()
    repeats.report()
    return Dataset(classes=names, records=records, root=base, split=split)
