"""Dataset readers: every on-disk layout becomes one :class:`Dataset` of :class:`ImageRecord`.

``load_dataset(cfg.data, split)`` picks the reader from ``data.format``:

- ``auto`` (the default): the layout recognised from the folder's content
  (:func:`detector.io.datasets.layout.detect_layout`; :func:`resolve_data` names it).
- ``voc``: PASCAL VOC layout (``Annotations/``, ``JPEGImages/``, ``ImageSets/Main/<split>.txt``).
- ``ilsvrc``: ILSVRC DET layout (``Data/DET/``, ``Annotations/DET/``, ``ImageSets/DET/``,
  ``map_det.txt``, ``data.blacklist``).
- ``coco``: COCO instances JSON (``data.coco_annotations``, ``data.coco_images``).
- ``voc_xml``: loose VOC XML files anywhere below the root, images found through
  ``<filename>`` beside them or in sibling ``images/`` folders (:mod:`.voc_xml`).
- ``yolo``: ``images/`` + ``labels/`` mirrors, classes from ``data.yaml`` (:mod:`.yolo`).
- ``folder``: a plain folder of VOC XML files and images; a fixed-seed split is written once
  (see :mod:`detector.datasets.folder` for where).

Conventions (DESIGN.md): boxes float32 (N, 4) xyxy, 0-based continuous, x2 exclusive,
converted once at the reader; labels 1..C in class-list order. The class list is
``data.classes``, else ``data.classes_file``, else found in the data (VOC / folder: sorted object
names of all annotation files; COCO: category ids ascending; ILSVRC: ``map_det.txt``).
Degenerate boxes (``xmax <= xmin`` or ``ymax <= ymin`` in the file's numbers) are dropped and
boxes leaving the image clipped, reported in ONE :class:`DatasetWarning` per dataset (Python
``warnings``; silence with ``warnings.simplefilter("ignore", DatasetWarning)``). Bad input
raises :class:`backbone.errors.UserError` naming the file (and line).
"""

from __future__ import annotations

import os

import numpy as np

from backbone.errors import UserError

from ...config import FORMATS

from .coco import read_coco
from .boxes import BoxCleaner
from .classes import ClassList, configured_classes, read_class_file
from .splits import MissingSplit
from .walk import resolve_path
from .warning import DatasetWarning
from .folder import read_folder
from .ground_truth import read_ground_truth
from .ilsvrc import read_ilsvrc
from .records import Dataset, ImageRecord
from .voc import parse_voc_annotation, read_voc
from .layout import Layout, detect_layout, resolve_data
from .voc_xml import read_voc_xml
from .yolo import read_yolo


__all__ = ["Dataset", "ImageRecord", "DatasetWarning", "ClassList", "BoxCleaner", "load_dataset",
           "read_voc", "read_ilsvrc", "read_coco", "read_folder", "parse_voc_annotation",
           "read_class_file", "ground_truth", "read_ground_truth", "FORMATS", "read_voc_xml", "read_yolo",
           "Layout", "detect_layout", "resolve_data", "MissingSplit"]


def load_dataset(data, split: str) -> Dataset:
    """Read split ``split`` (a split name such as ``cfg.data.train_split``) of the dataset ``data``.

    ``data`` is a :class:`detector.schema.DataConfig`; ``data.root`` must be set.
    """
    fmt = data.format
    if fmt not in FORMATS:
        raise UserError(f"data.format {fmt!r}: unknown (use one of {', '.join(FORMATS)})")
    data, _ = resolve_data(data)
    root, fmt = data.root, data.format
    if fmt == "yolo":
        return read_yolo(root, split, configured_classes(data, os.path.dirname(root) if os.path.isfile(root) else root))
    if not os.path.isdir(root):
        raise UserError(f"dataset root {root}: no such folder")
    classes = configured_classes(data, root)
    if fmt == "voc":
        return read_voc(root, split, classes)
    if fmt == "ilsvrc":
        blacklist = None
        if data.blacklist:

            blacklist = resolve_path(data.blacklist, root)
        return read_ilsvrc(root, split, classes, blacklist)
    if fmt == "coco":
        return read_coco(root, split, classes, data.coco_annotations, data.coco_images)
    if fmt == "voc_xml":
        return read_voc_xml(root, split, classes, data.images)
    return read_folder(root, split, classes)


def ground_truth(dataset: Dataset) -> list[dict]:
    """The records as :func:`eval.evaluate` ground truth: boxes, labels, difficult, blacklist, and
    COCO's per-box ``areas`` when the file gave them (COCOeval's area ranges use them)."""
    out = []
    for r in dataset.records:
        g = {"boxes": r.boxes.astype(np.float64), "labels": r.labels, "difficult": r.difficult,
             "blacklist": set(r.blacklist)}
        if r.areas is not None:
            g["areas"] = r.areas
        out.append(g)
    return out
