"""Loose VOC XML (``data.format: voc_xml``): the layout LabelImg, CVAT and Roboflow export.

VOC XML annotation files anywhere below the root, no ``ImageSets/``; typically ``images/`` and
``annotations/`` side by side, or ``train/`` ``valid/`` ``test/`` folders holding both. The
image of an XML file is its ``<filename>`` (then ``<path>``'s file name, then the XML's own
stem with an image extension), looked for beside the XML, then in the sibling folders
``images/``, ``JPEGImages/``, ``imgs/`` (and ``data.images`` when set) of the XML's folder and
of the root. Image ids are the XML file stems (unique within a split: a repeated stem is an
error naming both files).

Splits: the dataset's own when every XML file sits below a split folder (``train``, ``val`` /
``valid``, ``test``; ``trainval`` = train + val), else the fixed-seed 70/15/15 split written
once (:func:`detector.io.datasets.folder.fixed_split`).
"""

from __future__ import annotations

import os

from backbone.errors import UserError

from ._xml import parse_xml
from .boxes import BoxCleaner
from .classes import ClassList
from .splits import MissingSplit, own_splits
from .walk import check_unique_stems, walk_files
from .folder import fixed_split
from .index import size_index
from .records import Dataset
from .voc import (
    IMAGE_EXTENSIONS,
    VocAnnotation,
    annotation_to_record,
    classes_found,
    parse_voc_annotation,
)

#: image folders looked for beside an annotation folder
IMAGE_FOLDERS = ("images", "JPEGImages", "imgs")


def xml_files(root: str) -> list[str]:
    return walk_files(root, (".xml",))


def _path_basename(xml_path: str) -> str | None:
    text = (parse_xml(xml_path).findtext("path") or "").strip()
    return text.replace("\\", "/").rsplit("/", 1)[-1] or None if text else None


def find_loose_image(root: str, ann: VocAnnotation, extra: str | None = None) -> str | None:
    """The image file of a loose annotation (see the module doc for the search order)."""
    here = os.path.dirname(ann.path)
    stem = os.path.splitext(os.path.basename(ann.path))[0]
    folders = [here]
    names = list(IMAGE_FOLDERS) + ([extra] if extra else [])
    for base in dict.fromkeys((os.path.dirname(here), here, root)):
        for n in names:
            f = n if os.path.isabs(n) else os.path.join(base, n)
            if os.path.isdir(f) and f not in folders:
                folders.append(f)
    candidates = []
    if ann.filename:
        candidates.append(ann.filename.replace("\\", "/").rsplit("/", 1)[-1])
    for f in folders:
        for c in candidates:
            if os.path.isfile(os.path.join(f, c)):
                return os.path.join(f, c)
    other = _path_basename(ann.path)
    for f in folders:
        if other and os.path.isfile(os.path.join(f, other)):
            return os.path.join(f, other)
        for ext in IMAGE_EXTENSIONS:
            if os.path.isfile(os.path.join(f, stem + ext)):
                return os.path.join(f, stem + ext)
    return None


def read_voc_xml(root: str, split: str, classes: ClassList | None = None, images: str | None = None) -> Dataset:
    """Read split ``split`` of a loose VOC XML dataset at ``root``."""
    root = os.path.abspath(os.path.expanduser(root))
    if not os.path.isdir(root):
        raise UserError(f"dataset root {root}: no such folder")
    paths = xml_files(root)
    if not paths:
        raise UserError(f"dataset root {root}: no *.xml annotation files found")
    by_split = own_splits(root, paths)
    stem = {p: os.path.splitext(os.path.basename(p))[0] for p in paths}
    if by_split is not None:
        if split not in by_split:
            raise MissingSplit(f"dataset {root}: no {split!r} split (its own splits: "
                               f"{', '.join(s for s in by_split if s != 'trainval')})")
        chosen = by_split[split]
        check_unique_stems(chosen, f"dataset {root} split {split}")
    else:
        check_unique_stems(paths, f"dataset {root}")
        by_stem = {stem[p]: p for p in paths}
        ids, split_path = fixed_split(root, split, sorted(by_stem))
        missing = [i for i in ids if i not in by_stem]
        if missing:
            raise UserError(f"split file {split_path}: image id {missing[0]!r} has no annotation file below {root}")
        chosen = [by_stem[i] for i in ids]
    anns = {p: parse_voc_annotation(p) for p in chosen}
    if classes is None:
        every = list(anns.values()) + [parse_voc_annotation(p) for p in paths if p not in anns]
        classes = classes_found(every)
    index = {n: i + 1 for i, n in enumerate(classes.names)}
    cleaner = BoxCleaner(f"dataset {root} split {split}", one_based=True, header=size_index(root))
    records = []
    for p in chosen:
        ann = anns[p]
        image = find_loose_image(root, ann, images)
        if image is None:
            raise UserError(f"{p}: its image {ann.filename or stem[p]!r} is neither beside it nor in a sibling "
                            f"{', '.join(f + '/' for f in IMAGE_FOLDERS)} folder (set data.images to another folder)")
        records.append(annotation_to_record(ann, stem[p], image, index, cleaner))
    cleaner.report()
    return Dataset(classes=list(classes.names), records=records, root=root, split=split)
