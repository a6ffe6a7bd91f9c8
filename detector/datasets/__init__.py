"""Dataset readers: every on-disk layout becomes one :class:`Dataset` of :class:`ImageRecord`.

``load_dataset(cfg.data, split)`` picks the reader from ``data.format``:

- ``voc``: PASCAL VOC layout (``Annotations/``, ``JPEGImages/``, ``ImageSets/Main/<split>.txt``).

Conventions (DESIGN.md): boxes float32 (N, 4) xyxy, 0-based continuous, x2 exclusive,
converted once at the reader; labels 1..C in class-list order. The class list is
``data.classes``, else ``data.classes_file``, else found in the data (VOC: sorted object names
of all annotation files). Degenerate boxes are dropped and boxes leaving the image clipped,
reported in one :class:`DatasetWarning` per dataset. Bad input raises
:class:`backbone.errors.UserError` naming the file (and line).
"""

from __future__ import annotations

import os

from backbone.errors import UserError

from .common import BoxCleaner, ClassList, DatasetWarning, configured_classes, read_class_file
from .records import Dataset, ImageRecord
from .voc import parse_voc_annotation, read_voc

FORMATS = ("voc",)

__all__ = ["Dataset", "ImageRecord", "DatasetWarning", "ClassList", "BoxCleaner", "load_dataset",
           "read_voc", "parse_voc_annotation", "read_class_file", "FORMATS"]


def load_dataset(data, split: str) -> Dataset:
    """Read split ``split`` (a split name such as ``cfg.data.train_split``) of the dataset ``data``.

    ``data`` is a :class:`detector.schema.DataConfig`; ``data.root`` must be set.
    """
    if not data.root:
        raise UserError("data.root is not set (give --data-root or set data.root in the config)")
    root = os.path.abspath(os.path.expanduser(data.root))
    fmt = data.format
    if fmt not in FORMATS:
        raise UserError(f"data.format {fmt!r}: unknown (use one of {', '.join(FORMATS)})")
    classes = configured_classes(data, root)
    if fmt == "voc":
        return read_voc(root, split, classes)
    raise AssertionError(fmt)  # pragma: no cover
