"""ILSVRC DET layout: ``Data/DET/<split>/<id>.JPEG``, ``Annotations/DET/<split>/<id>.xml``
(VOC schema with WNIDs as object names), ``ImageSets/DET/<split>.txt`` (lines ``<id> <index>``),
the class list ``map_det.txt`` (``WNID DET_ID name``) and the validation blacklist
(lines ``image_index WNID``; a DET class id in place of the WNID is accepted too).

Labels follow ``map_det.txt`` order (DET_ID ascending); ``Dataset.classes`` are the WNIDs,
``Dataset.display_names`` the human names, ``Dataset.class_ids`` the DET ids. Images listed in
the split file without an annotation file (the negative training images) get no boxes.
"""

from __future__ import annotations

import os

from backbone.errors import UserError

from .boxes import BoxCleaner
from .classes import ClassList, read_class_file
from .splits import MissingSplit, drop_repeats
from .index import size_index
from .records import Dataset
from .voc import VocAnnotation, annotation_to_record, find_image, voc_parser

MAP_DET_PLACES = ("map_det.txt", os.path.join("devkit", "data", "map_det.txt"))


def _lines(path: str, what: str) -> list[str]:
    """The lines of a text file; unreadable or not UTF-8: one :class:`UserError`."""
    try:
        with open(path, encoding="utf-8-sig") as f:   # a BOM is skipped
            return f.read().split("\n")   # universal newlines: \r\n and \r are \n here
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{what} {path}: cannot read ({e})") from None


def read_split_with_index(path: str) -> list[tuple[str, int]]:
    """``(id, image_index)`` per line of an ILSVRC split file (index = line number when absent); an
    id listed again is dropped with one warning (:func:`~.common.drop_repeats`)."""
    if not os.path.isfile(path):
        raise MissingSplit(f"split file {path}: no such file")
    out = []
    for n, ln in enumerate(_lines(path, "split file"), 1):
        parts = ln.split()
        if not parts:
            continue
        idx = len(out) + 1
        if len(parts) > 1:
            try:
                idx = int(parts[1])
            except ValueError:
                raise UserError(f"split file {path} line {n}: second column {parts[1]!r} is not an image index") from None
        out.append((n, parts[0], idx))
    return [out[k][1:] for k in drop_repeats([(n, i) for n, i, _ in out], f"split file {path}")]


def read_blacklist(path: str, classes: ClassList) -> dict[int, set[int]]:
    """Blacklist file -> {image_index: {labels}}; lines ``image_index WNID`` (or DET id)."""
    if not os.path.isfile(path):
        raise UserError(f"blacklist {path}: no such file")
    by_name = {n: i + 1 for i, n in enumerate(classes.names)}
    by_id = {c: i + 1 for i, c in enumerate(classes.ids)} if classes.ids else {}
    out: dict[int, set[int]] = {}
    for n, ln in enumerate(_lines(path, "blacklist"), 1):
        parts = ln.split()
        if not parts:
            continue
        if len(parts) < 2:
            raise UserError(f"blacklist {path} line {n}: expected `image_index WNID`, got {ln.strip()!r}")
        try:
            img = int(parts[0])
        except ValueError:
            raise UserError(f"blacklist {path} line {n}: {parts[0]!r} is not an image index") from None
        cls = parts[1]
        if cls in by_name:
            label = by_name[cls]
        elif cls.isascii() and cls.isdigit() and len(cls) <= 18 and int(cls) in by_id:
            label = by_id[int(cls)]
        else:
            raise UserError(f"blacklist {path} line {n}: unknown class {cls!r}")
        out.setdefault(img, set()).add(label)
    return out


def find_map_det(root: str) -> str | None:
    for p in MAP_DET_PLACES:
        q = os.path.join(root, p)
        if os.path.isfile(q):
            return q
    return None


def read_ilsvrc(root: str, split: str, classes: ClassList | None = None, blacklist: str | None = None) -> Dataset:
    """Read split ``split`` of the ILSVRC DET dataset at ``root``.

    ``classes`` None: ``map_det.txt`` at the root or in ``devkit/data/``; none there is an error
    (the DET ids are what devkit files use). ``blacklist``: the blacklist file or None.
    """
    root = os.path.abspath(os.path.expanduser(root))
    if not os.path.isdir(root):
        raise UserError(f"dataset root {root}: no such folder")
    if classes is None:
        p = find_map_det(root)
        if p is None:
            raise UserError(f"dataset root {root}: no map_det.txt (give data.classes_file: path/to/map_det.txt)")
        classes = read_class_file(p)
    index = {n: i + 1 for i, n in enumerate(classes.names)}
    black = read_blacklist(blacklist, classes) if blacklist else {}
    entries = read_split_with_index(os.path.join(root, "ImageSets", "DET", split + ".txt"))
    ann_dir = os.path.join(root, "Annotations", "DET", split)
    img_dir = os.path.join(root, "Data", "DET", split)
    cleaner = BoxCleaner(f"dataset {root} split {split}", one_based=True, header=size_index(img_dir))
    records = []
    with voc_parser(ann_dir) as parse:  # parsed once, from the records index on later runs
        for image_id, idx in entries:
            xml = os.path.join(ann_dir, image_id + ".xml")
            path = find_image(img_dir, image_id)
            if os.path.isfile(xml):
                ann = parse(xml)
            else:
                if path is None:
                    raise UserError(f"{os.path.join(root, 'ImageSets', 'DET', split + '.txt')}: image id {image_id!r} has neither an annotation nor an image")
                ann = VocAnnotation(xml, None, 0, 0, [])
            if path is None:
                raise UserError(f"{xml}: no image for id {image_id!r} in {img_dir}")
            rec = annotation_to_record(ann, image_id, path, index, cleaner)
            rec.devkit_index = idx
            rec.blacklist = frozenset(black.get(idx, ()))
            records.append(rec)
    cleaner.report()
    return Dataset(classes=list(classes.names), records=records, root=root, split=split,
                   class_ids=list(classes.ids) if classes.ids else None,
                   display_names=list(classes.display) if classes.display else None)
