"""``data.format: auto``: which layout a dataset folder has, recognised from its content.

Checked in this order; the first that matches wins where the layouts have an order:

1. ``voc``: ``ImageSets/Main/`` and ``Annotations/`` (PASCAL VOC); ``ilsvrc``: ``ImageSets/DET/``.
2. ``voc_xml``: VOC XML annotation files (``<annotation>``) anywhere below the root; also
   covers today's ``folder`` (XML beside its images), which stays an explicit choice.
3. ``yolo``: a ``data.yaml`` (or the root IS one), or ``.txt`` files in a ``labels/`` folder.
4. ``coco``: a JSON file with an ``"images"`` list near its start (COCO instances).

VOC wins over loose XML (its annotations are loose XML too). Loose XML, YOLO and COCO have no
order: a folder holding two of them (e.g. COCO JSON beside YOLO labels, as some exports ship)
is an error naming both and asking for ``--set data.format=``. A folder of images and no
annotations is an error saying so.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

from backbone.errors import UserError

from .coco import coco_files
from .walk import walk_files
from .yolo import _EXTS, find_yaml

#: bytes read from the start of a file to recognise it
PEEK = 1 << 16


@dataclass
class Layout:
    format: str        # a data.format name
    root: str          # absolute dataset root (a YOLO data.yaml when one was given)
    evidence: str      # what was recognised, for the one line the CLIs print

    def line(self) -> str:
        return f"data: {self.format} layout at {self.root} ({self.evidence})"


def _peek(path: str) -> str:
    try:
        with open(path, "rb") as f:
            return f.read(PEEK).decode("utf-8", "replace")
    except OSError:
        return ""


def _rel(paths: list[str], root: str, n: int = 1) -> str:
    return ", ".join(os.path.relpath(p, root) for p in paths[:n])


def detect_layout(root: str) -> Layout:
    """The layout of the dataset at ``root`` (a folder, or a YOLO ``data.yaml``)."""
    root = os.path.abspath(os.path.expanduser(root))
    if not os.path.exists(root):
        raise UserError(f"dataset {root}: no such file or folder")
    if os.path.isfile(root):
        if find_yaml(root):
            return Layout("yolo", root, os.path.basename(root))
        raise UserError(f"dataset {root}: a file; give the dataset folder (or its YOLO data.yaml)")
    if os.path.isdir(os.path.join(root, "ImageSets", "Main")) and os.path.isdir(os.path.join(root, "Annotations")):
        return Layout("voc", root, "ImageSets/Main, Annotations")
    if os.path.isdir(os.path.join(root, "ImageSets", "DET")):
        return Layout("ilsvrc", root, "ImageSets/DET")
    found: dict[str, str] = {}
    xml = [p for p in walk_files(root, (".xml",)) if "<annotation" in _peek(p)]
    if xml:
        found["voc_xml"] = f"{len(xml)} VOC XML file(s), e.g. {_rel(xml, root)}"
    yml = find_yaml(root)
    labels = [p for p in walk_files(root, (".txt",))
              if os.path.basename(os.path.dirname(p)) == "labels" or f"{os.sep}labels{os.sep}" in p[len(root):]]
    labels = [p for p in labels if os.path.basename(p) not in ("classes.txt",)]
    if yml:
        found["yolo"] = os.path.basename(yml)
    elif labels:
        found["yolo"] = f"{len(labels)} label file(s) in labels/, e.g. {_rel(labels, root)}"
    coco = coco_files(root)
    if coco:
        found["coco"] = f"COCO JSON {_rel(coco, root, 3)}"
    if len(found) > 1:
        a, b = list(found)[:2]
        raise UserError(f"dataset {root}: holds both a {a} layout ({found[a]}) and a {b} layout ({found[b]}); "
                        f"choose one with --set data.format={a} or --set data.format={b}")
    if found:
        fmt, why = next(iter(found.items()))
        return Layout(fmt, root, why)
    images = walk_files(root, _EXTS)
    if images:
        raise UserError(f"dataset {root}: {len(images)} image(s) but no annotations (no VOC XML, no YOLO "
                        "labels/ or data.yaml, no COCO JSON, no ImageSets/)")
    raise UserError(f"dataset {root}: no images or annotations found")


def resolve_data(data) -> tuple[object, Layout | None]:
    """``data`` (a DataConfig) with ``data.root`` absolute and ``auto`` replaced by the layout
    found, and that :class:`Layout` (None when the format was given)."""
    if not data.root:
        raise UserError("data.root is not set (give --data DIR, --data-root or set data.root in the config)")
    root = os.path.abspath(os.path.expanduser(data.root))
    if data.format != "auto":
        return replace(data, root=root), None
    layout = detect_layout(root)
    return replace(data, root=layout.root, format=layout.format), layout
