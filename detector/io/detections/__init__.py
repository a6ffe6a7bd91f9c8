"""Detection files: read and written here, and only here (``detect``, ``eval-map`` and split
detection all call this module).

Readers (:func:`read_detections`, the format recognised from content) -> per ground-truth image ``{"boxes", "scores", "labels"}``
arrays, aligned with the dataset's records, ready for :func:`eval.evaluate`:

- the project's detections JSON (DESIGN.md): ``[{"image": path, "detections": [{"box": [x1, y1,
  x2, y2], "score": s, "label": name}]}]``, boxes in our convention (0-based, x2 exclusive);
  ``image`` matches a record by path, else by image id, else by file stem;
- COCO results JSON ``[{"image_id", "category_id", "bbox": [x, y, w, h], "score"}]``;
- ILSVRC devkit submission lines ``image_index class_id confidence xmin ymin xmax ymax``
  (1-based inclusive; ``image_index`` is the split file's index column, or the ``.mat``'s ids);
- a folder of text files, one per image: lines ``class confidence left top right bottom``.

Text files hold inclusive pixels read as VOC's (x1 = left - 1, x2 = right); with
``box_format="xywh"`` the last numbers are ``left top width height`` and the right edge
``left + width`` is an inclusive pixel (as Object-Detection-Metrics reads them). An empty
detections file means no detections (AP 0), not an error; a UTF-8 BOM at the start of a text
file is skipped. Every other defect raises :class:`UserError` naming the file and line (or
entry): malformed XML/JSON, an image the ground truth lacks, NaN/inf numbers.

Read as the peers read them, with ONE counted warning per file (``--strict``, a warnings filter
on :class:`~backbone.errors.InputWarning`, makes it the one-line error):

- inverted boxes (``xmax < xmin`` or ``ymax < ymin``, a negative width or height): kept, as the
  ILSVRC and VOC devkits and pycocotools keep them; they overlap nothing, so they match nothing
  and are false positives at their confidence (COCO: ignored when exactly one side is negative,
  as the area ``w * h`` is then outside every area range). :class:`InvertedBoxWarning`;
- detections of classes the ground truth lacks: left out (as the VOC devkit, pycocotools and
  Cartucho/mAP do), :class:`UnknownClassWarning` naming the classes and counts.

Writers (:func:`write_detections`, one of :data:`FORMATS`): :func:`write_detections_json` (and
:func:`detections_to_items` from arrays), :func:`write_devkit_submission` (needs the devkit's
ids: :func:`check_format`), :func:`write_coco_results` (the ground truth's ids when it is a COCO
one, else images numbered from 1 and category id = label, the mapping in ``*.ids.json``, joined
back when read), :func:`write_text_detections` (a folder of Cartucho/mAP files, read back exactly).

One module per format: ``project.py`` (the project's JSON), ``coco.py`` (COCO results and the
ids mapping), ``devkit.py`` (devkit submission lines), ``text.py`` (text folders); ``common.py``
the image lookup, checks and warnings they share. Every public name is importable from here.
"""

from __future__ import annotations

import os

import numpy as np

from backbone.errors import UserError

from ..datasets.coco import load_json
from ..datasets.records import Dataset
from ..sniff import BOX_FORMATS, sniff
from .coco import (
    _join_ids,
    coco_results,
    ids_path,
    read_coco_results,
    write_coco_results,
)
from .common import InvertedBoxWarning, UnknownClassWarning, _group, short, whole
from .devkit import read_devkit_submission, write_devkit_submission
from .project import (
    detections_to_items,
    items_to_detections,
    read_detections_json,
    validate_items,
    write_detections_json,
)
from .text import (
    read_text_detections,
    text_files_of,
    text_lines,
    text_names,
    write_text_detections,
)

__all__ = [
    "FORMATS", "InvertedBoxWarning", "UnknownClassWarning", "check_format", "coco_results", "detections_to_items",
    "ids_path", "items_to_detections", "read_coco_results", "read_detections", "read_detections_json",
    "read_devkit_submission", "read_text_detections", "short", "text_files_of", "text_lines", "text_names",
    "validate_items", "whole", "write_coco_results", "write_detections", "write_detections_json",
    "write_devkit_submission", "write_text_detections",
]

FORMATS = ("json", "coco", "txt", "devkit")


def read_detections(path: str, gt: Dataset, box_format: str = "xyxy") -> list[dict]:
    """Detections from ``path`` (format recognised from content), one dict per ``gt`` record.
    Detections of classes ``gt`` lacks are left out, inverted boxes kept, each with one warning."""
    if box_format not in BOX_FORMATS:
        raise UserError(f"box format {box_format!r}: use xyxy or xywh")
    path = os.path.abspath(os.path.expanduser(path))
    kind = None
    if os.path.isdir(path):
        with os.scandir(path) as entries:   # closed (an unclosed iterator is a ResourceWarning)
            kind = None if any(entries) else "empty"   # an empty folder of per-image files: no detections, AP 0
    kind = kind or sniff(path)
    if kind == "empty":
        n = len(gt.records)
        return _group(n, np.zeros(0, np.int64), np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64))
    if kind == "json":
        data = load_json(path, "detections")
        if isinstance(data, list) and data and isinstance(data[0], dict) and "image_id" in data[0]:
            ids = ids_path(path)
            if os.path.isfile(ids):
                data = _join_ids(data, ids, gt)
            return read_coco_results(data, path, gt)
        return items_to_detections(validate_items(data, path), path, gt)
    if kind == "devkit":
        return read_devkit_submission(path, gt)
    if kind == "text-folder":
        return read_text_detections(path, gt, box_format)
    raise UserError(f"detections {path}: not a format eval-map reads (detections JSON, COCO results JSON, "
                    f"devkit submission lines, or a folder of text files)")


def check_format(fmt: str, dataset: Dataset) -> None:
    """Whether ``dataset`` has what format ``fmt`` needs (devkit: class ids and devkit image indexes)."""
    if fmt not in FORMATS:
        raise UserError(f"format {fmt!r}: use one of {', '.join(FORMATS)}")
    if fmt == "devkit":
        lacks = [w for w, ok in (("class ids (an ILSVRC map_det.txt)", bool(dataset.class_ids)),
                                 ("devkit image indexes (an ILSVRC split file's second column)",
                                  bool(dataset.records) and all(r.devkit_index is not None for r in dataset.records)))
                 if not ok]
        if lacks:
            raise UserError(f"--format devkit needs the ILSVRC devkit's ids, and this data has no {' and no '.join(lacks)}; "
                            f"use --format coco, txt or json")
    if fmt == "txt":
        text_names(dataset)


def write_detections(path: str, fmt: str, dataset: Dataset, dets: list[dict]) -> list[str]:
    """Write ``dets`` (per-record arrays) in format ``fmt`` (:data:`FORMATS`); the files written."""
    check_format(fmt, dataset)
    if fmt == "json":
        write_detections_json(path, detections_to_items(dataset, dets))
        return [os.path.abspath(path)]
    if fmt == "coco":
        return write_coco_results(path, dataset, dets)
    if fmt == "txt":
        return write_text_detections(path, dataset, dets)
    write_devkit_submission(path, dataset, dets)
    return [os.path.abspath(path)]
