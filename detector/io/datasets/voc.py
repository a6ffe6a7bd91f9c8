"""PASCAL VOC annotations and the VOC folder layout.

Layout: ``<root>/Annotations/<id>.xml``, ``<root>/JPEGImages/<id>.jpg``,
``<root>/ImageSets/Main/<split>.txt`` (one image id per line). An annotation file::

    <annotation><filename>x.jpg</filename><size><width>640</width><height>480</height></size>
      <object><name>RBC</name><difficult>0</difficult>
        <bndbox><xmin>78</xmin><ymin>336</ymin><xmax>184</xmax><ymax>435</ymax></bndbox>
      </object> ...

Coordinates are 1-based inclusive pixels; the reader converts them once (x1 = xmin - 1,
y1 = ymin - 1, x2 = xmax, y2 = ymax). The ILSVRC DET annotations use the same XML schema.
"""

from __future__ import annotations

import glob
import math
import os
from dataclasses import dataclass, field

import numpy as np

from backbone.errors import UserError

from ._xml import parse_xml
from .boxes import BoxCleaner
from .classes import ClassList
from .sizes import MAX_SIDE
from .splits import read_split_file
from .index import annotation_parser, size_index
from .records import Dataset, ImageRecord

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".JPEG", ".JPG", ".PNG", ".bmp", ".tif", ".tiff")


@dataclass
class VocObject:
    name: str
    box: tuple[float, float, float, float]   # xmin, ymin, xmax, ymax exactly as in the file
    difficult: bool
    line: int                                 # line of <object> in the file


@dataclass
class VocAnnotation:
    path: str
    filename: str | None
    width: int                                # 0 when the file has no (or a zero) size
    height: int
    objects: list[VocObject] = field(default_factory=list)


def _number(elem, tag: str, path: str) -> float:
    child = elem.find(tag)
    if child is None or child.text is None or not child.text.strip():
        raise UserError(f"{path} line {elem.line}: <{elem.tag}> has no <{tag}>")
    try:
        v = float(child.text.strip())
    except ValueError:
        raise UserError(f"{path} line {child.line}: <{tag}> is not a number ({child.text.strip()!r})") from None
    if not math.isfinite(v):
        raise UserError(f"{path} line {child.line}: <{tag}> is not a finite number ({child.text.strip()!r})")
    return v


def parse_voc_annotation(path: str) -> VocAnnotation:
    """Read one VOC/ILSVRC XML annotation; errors name the file and line."""
    if os.path.exists(path) and not os.path.isfile(path):  # a FIFO named x.xml would block the reader
        raise UserError(f"{path}: not a regular file (a folder, FIFO, socket or device is never read)")
    root = parse_xml(path)
    if root.tag != "annotation":
        raise UserError(f"{path} line {root.line}: expected an <annotation> element, found <{root.tag}>")
    width = height = 0
    size = root.find("size")
    if size is not None and size.find("width") is not None and size.find("height") is not None:
        width = int(round(_number(size, "width", path)))
        height = int(round(_number(size, "height", path)))
        if not (abs(width) <= MAX_SIDE and abs(height) <= MAX_SIDE):
            raise UserError(f"{path} line {size.line}: <size> {width} x {height} is not a plausible image size")
    filename = (root.findtext("filename") or "").strip() or None
    objects = []
    for obj in root.iter("object"):
        name = (obj.findtext("name") or "").strip()
        if not name:
            raise UserError(f"{path} line {obj.line}: <object> has no <name>")
        bb = obj.find("bndbox")
        if bb is None:
            raise UserError(f"{path} line {obj.line}: <object> {name!r} has no <bndbox>")
        box = tuple(_number(bb, k, path) for k in ("xmin", "ymin", "xmax", "ymax"))
        diff = (obj.findtext("difficult") or "0").strip()
        objects.append(VocObject(name, box, diff not in ("0", "", "false", "False"), obj.line))
    return VocAnnotation(path, filename, width, height, objects)


def voc_parser(ann_dir: str):
    """``with voc_parser(ann_dir) as parse:`` :func:`parse_voc_annotation` through the records
    index of ``ann_dir`` (:mod:`detector.io.datasets.index`)."""
    return annotation_parser(ann_dir, parse_voc_annotation, VocAnnotation, VocObject)


def find_image(image_dir: str, image_id: str, filename: str | None = None) -> str | None:
    """The image file of ``image_id``: ``<id>.jpg`` (or another extension), else the XML's filename."""
    for ext in IMAGE_EXTENSIONS:
        p = os.path.join(image_dir, image_id + ext)
        if os.path.isfile(p):
            return p
    if filename:
        p = os.path.join(image_dir, filename)
        if os.path.isfile(p):
            return p
    hits = sorted(h for h in glob.glob(os.path.join(glob.escape(image_dir), glob.escape(image_id) + ".*"))
                  if os.path.splitext(h)[1].lower() not in (".xml", ".txt", ".json"))
    return hits[0] if hits else None


def classes_found(annotations: list[VocAnnotation]) -> ClassList:
    """The sorted object names found in ``annotations`` (the class list when none is configured)."""
    return ClassList(sorted({o.name for a in annotations for o in a.objects}))


def annotation_to_record(ann: VocAnnotation, image_id: str, image_path: str | None,
                         index: dict[str, int], cleaner: BoxCleaner) -> ImageRecord:
    """One :class:`ImageRecord` from a parsed annotation (unknown names raise :class:`UserError`)."""
    # the image's own size (EXIF orientation applied) wins over <size>, with one counted warning
    width, height, orientation = cleaner.sizes(ann.width, ann.height, image_path, os.path.basename(ann.path),
                                               "<size>")
    labels = []
    for o in ann.objects:
        if o.name not in index:
            shown = ", ".join(list(index)[:10]) + (" ..." if len(index) > 10 else "")
            raise UserError(f"{ann.path} line {o.line}: unknown class {o.name!r} (classes: {shown})")
        labels.append(index[o.name])
    file_boxes = np.array([o.box for o in ann.objects], dtype=np.float64).reshape(-1, 4)
    boxes, keep = cleaner(file_boxes, width, height, os.path.basename(ann.path), orientation)
    labels = np.array(labels, dtype=np.int64)[keep]
    difficult = np.array([o.difficult for o in ann.objects], dtype=bool)[keep]
    return ImageRecord(image_id=image_id, path=os.path.abspath(image_path) if image_path else "",
                       width=width, height=height, boxes=boxes, labels=labels, difficult=difficult)


def read_voc(root: str, split: str, classes: ClassList | None = None, *,
             annotations: str = "Annotations", images: str = "JPEGImages",
             split_dir: str = os.path.join("ImageSets", "Main")) -> Dataset:
    """Read split ``split`` of the VOC-layout dataset at ``root``.

    ``classes`` None: the sorted object names found in ALL the dataset's annotation files (so
    every split of one dataset gets the same labels). Emits one :class:`DatasetWarning` with the
    counts of dropped (degenerate / outside) and clipped boxes.
    """
    root = os.path.abspath(os.path.expanduser(root))
    if not os.path.isdir(root):
        raise UserError(f"dataset root {root}: no such folder")
    ann_dir = os.path.join(root, annotations)
    img_dir = os.path.join(root, images)
    if not os.path.isdir(ann_dir):
        raise UserError(f"dataset root {root}: no {annotations}/ folder (is it a PASCAL VOC layout?)")
    ids = read_split_file(os.path.join(root, split_dir, split + ".txt"))
    anns: dict[str, VocAnnotation] = {}
    with voc_parser(ann_dir) as parse:  # parsed once, from the records index on later runs
        for image_id in ids:
            p = os.path.join(ann_dir, image_id + ".xml")
            if not os.path.isfile(p):
                raise UserError(f"{os.path.join(root, split_dir, split + '.txt')}: image id {image_id!r} has no annotation {p}")
            anns[image_id] = parse(p)
        if classes is None:
            every = list(anns.values())
            for p in sorted(glob.glob(os.path.join(glob.escape(ann_dir), "*.xml"))):
                image_id = os.path.splitext(os.path.basename(p))[0]
                if image_id not in anns:
                    every.append(parse(p))
            classes = classes_found(every)
    index = {n: i + 1 for i, n in enumerate(classes.names)}
    cleaner = BoxCleaner(f"dataset {root} split {split}", one_based=True, header=size_index(root))
    records = []
    for image_id in ids:
        ann = anns[image_id]
        path = find_image(img_dir, image_id, ann.filename)
        if path is None:
            raise UserError(f"{ann.path}: no image for id {image_id!r} in {img_dir}")
        records.append(annotation_to_record(ann, image_id, path, index, cleaner))
    cleaner.report()
    return Dataset(classes=list(classes.names), records=records, root=root, split=split)
