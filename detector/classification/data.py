"""Classification samples: images with one class each, as a torch ``Dataset``.

Two sources make a :class:`ClassificationSet`:

- :func:`object_crops`: the ground-truth boxes of a detection dataset (any
  :class:`~detector.datasets.records.Dataset`), each cropped with a context margin, become
  the images and their classes the labels (R-CNN trains its classifier on such crops);
- :func:`image_folder`: ``root/<class>/<image>`` folders (or ``root/<split>/<class>/<image>``:
  classes are the sorted class folder names of the training split).

:func:`build_classification_set` picks one from a classifier config. Labels here are 0-based
class indices (``classes[label]``), what cross-entropy wants; detection labels 1..C are shifted.

The transforms are in :mod:`detector.classification.transforms`.
"""

from __future__ import annotations

import math
import os
import sys
from typing import Callable, NamedTuple, Sequence

import numpy as np
import torch
from tqdm import tqdm

from backbone.errors import UserError

from ..io.datasets import Dataset, load_dataset
from ..io.images import load_image, walk_images


class ClassificationSet(torch.utils.data.Dataset):
    """``(transform(image), label)`` pairs. Images are kept in memory (``np.ndarray`` HWC uint8,
    for object crops) or read on access (file paths, for image folders)."""

    def __init__(self, classes: Sequence[str], items: list, labels: Sequence[int], names: Sequence[str],
                 transform: Callable | None = None, source: str = ""):
        if not (len(items) == len(labels) == len(names)):
            raise ValueError("items, labels and names must have the same length")
        self.classes = list(classes)
        self.items = items
        self.labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        self.names = list(names)
        self.transform = transform
        self.source = source

    def __len__(self) -> int:
        return len(self.items)

    def image(self, i: int) -> np.ndarray:
        """Image ``i`` as ``(H, W, 3)`` uint8 RGB."""
        item = self.items[i]
        if isinstance(item, str):
            return load_image(item)
        if isinstance(item, LazyCrop):
            return crop_box(load_image(item.path), item.box, item.margin)
        return item

    def __getitem__(self, i: int):
        img = self.image(i)
        return (self.transform(img) if self.transform is not None else img), int(self.labels[i])

    def with_transform(self, transform: Callable | None) -> "ClassificationSet":
        """The same samples with another transform."""
        return ClassificationSet(self.classes, self.items, self.labels, self.names, transform, self.source)

    def class_counts(self) -> np.ndarray:
        return np.bincount(self.labels, minlength=len(self.classes))

    def remap(self, classes: Sequence[str]) -> "ClassificationSet":
        """Relabel to another class list (e.g. a checkpoint's); a class missing from it is an error."""
        classes = list(classes)
        index = {c: i for i, c in enumerate(classes)}
        present = sorted(set(self.labels.tolist()))
        unknown = [self.classes[k] for k in present if self.classes[k] not in index]
        if unknown:
            raise UserError(f"{self.source or 'data'}: classes {unknown} are not among the model's classes {classes}")
        lut = np.array([index.get(c, -1) for c in self.classes], dtype=np.int64)
        return ClassificationSet(classes, self.items, lut[self.labels], self.names, self.transform, self.source)


def crop_box(image: np.ndarray, box: Sequence[float], margin: float) -> np.ndarray:
    """The pixels of ``box`` (x1, y1, x2, y2; 0-based, x2 exclusive) plus ``margin`` x its width /
    height on each side, clipped to the image. Coordinates are rounded outwards."""
    h, w = image.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in box)
    mx, my = margin * (x2 - x1), margin * (y2 - y1)
    a = max(0, int(math.floor(x1 - mx)))
    b = max(0, int(math.floor(y1 - my)))
    c = min(w, int(math.ceil(x2 + mx)))
    d = min(h, int(math.ceil(y2 + my)))
    return np.ascontiguousarray(image[b:d, a:c])


class LazyCrop(NamedTuple):
    """A crop read on access: the image file, the box and the context margin."""

    path: str
    box: tuple[float, float, float, float]
    margin: float


#: splits of at most this many images keep their crops in memory (each image read once); larger
#: ones (ILSVRC DET train: 456k images, ~480k boxes, tens of GB of crops) read each crop on access
IN_MEMORY_IMAGES = 2000


def object_crops(dataset: Dataset, *, margin: float = 0.1, skip_difficult: bool = True, min_size: float = 2.0,
                 transform: Callable | None = None, progress: bool | None = None,
                 in_memory: bool | None = None) -> ClassificationSet:
    """Every ground-truth box of ``dataset`` (labels 1..C) as an image of class ``label - 1``.

    ``in_memory`` (default: when the split has at most :data:`IN_MEMORY_IMAGES` images): each
    image file is read once and the crops kept in memory; otherwise each crop is a
    :class:`LazyCrop`, its image read and cropped on access, so nothing holds the split. Boxes
    smaller than ``min_size`` pixels on a side (and difficult ones, with ``skip_difficult``)
    are left out."""
    if progress is None:
        progress = sys.stderr.isatty()
    if in_memory is None:
        in_memory = len(dataset.records) <= IN_MEMORY_IMAGES
    items, labels, names = [], [], []
    src = f"{dataset.root or 'dataset'} ({dataset.split})" if dataset.split else (dataset.root or "dataset")
    for rec in tqdm(dataset.records, desc="crops", unit="img", disable=not progress, leave=False):
        keep = [j for j in range(len(rec.labels))
                if not (skip_difficult and len(rec.difficult) > j and rec.difficult[j])
                and rec.boxes[j, 2] - rec.boxes[j, 0] >= min_size and rec.boxes[j, 3] - rec.boxes[j, 1] >= min_size]
        if not keep:
            continue
        if not in_memory:
            for j in keep:
                x1, y1, x2, y2 = (float(v) for v in rec.boxes[j])
                if min(x2, rec.width) <= max(x1, 0) or min(y2, rec.height) <= max(y1, 0):
                    continue  # box entirely outside the image
                items.append(LazyCrop(rec.path, (x1, y1, x2, y2), margin))
                labels.append(int(rec.labels[j]) - 1)
                names.append(f"{rec.image_id}#{j}")
            continue
        img = load_image(rec.path)
        for j in keep:
            crop = crop_box(img, rec.boxes[j], margin)
            if crop.shape[0] < 1 or crop.shape[1] < 1:
                continue  # box entirely outside the image
            items.append(crop)
            labels.append(int(rec.labels[j]) - 1)
            names.append(f"{rec.image_id}#{j}")
    if not items:
        raise UserError(f"{src}: no ground-truth boxes to crop (empty split, or all boxes difficult/too small)")
    return ClassificationSet(dataset.classes, items, labels, names, transform, source=src)


def build_classification_set(cfg, split: str, *, classes: Sequence[str] | None = None,
                             transform: Callable | None = None, progress: bool | None = None) -> ClassificationSet:
    """The classification samples of split ``split`` for a :class:`ClassifierConfig` ``cfg``:
    ``data.format == "imagefolder"`` reads class folders, any other format reads the detection
    dataset (``detector.datasets.load_dataset``) and crops its ground-truth boxes.
    ``classes``: the class list to label with (e.g. the training split's / a checkpoint's)."""
    if cfg.data.format == "imagefolder":
        return image_folder(cfg.data.root, split, classes=classes, transform=transform)
    ds = load_dataset(cfg.data, split)
    ds.split = ds.split or split
    out = object_crops(ds, margin=cfg.crops.margin, skip_difficult=cfg.crops.skip_difficult,
                       min_size=cfg.crops.min_size, transform=transform, progress=progress)
    return out.remap(classes) if classes is not None and list(classes) != out.classes else out


# ---------------------------------------------------------------------------------------------
# image folders: root/<class>/<image>, or per split root/<split>/<class>/<image>

#: folder names that are splits, not classes (``root/<split>/<class>/<image>``)
SPLIT_NAMES = ("train", "trainval", "val", "valid", "validation", "test", "dev")


def _subfolders(folder: str) -> list[str]:
    try:
        return sorted(d for d in os.listdir(folder) if not d.startswith(".") and os.path.isdir(os.path.join(folder, d)))
    except OSError as e:
        raise UserError(f"image folder {folder}: cannot list ({e.strerror or e})") from None


def split_folder(root: str, split: str | None) -> str:
    """``root/<split>`` when it exists, else ``root`` itself (a folder of class folders).

    When ``root/<split>`` is missing but every subfolder of ``root`` is named like a split
    (:data:`SPLIT_NAMES`, e.g. ``train`` + ``val``), ``root`` is a split layout without the
    wanted split: a :class:`UserError` naming the splits it has, rather than training on
    classes called ``train`` and ``val``."""
    root = os.path.abspath(os.path.expanduser(root))
    if not os.path.isdir(root):
        raise UserError(f"image folder {root}: no such folder")
    if split and os.path.isdir(os.path.join(root, split)):
        return os.path.join(root, split)
    if split:
        subdirs = _subfolders(root)
        if subdirs and all(d.lower() in SPLIT_NAMES for d in subdirs):
            raise UserError(f"image folder {root}: has no split folder {split!r}, only split folders "
                            f"{', '.join(subdirs)}; choose one with data.train_split / data.val_split / "
                            "data.test_split (--set) or --split")
    return root


def has_split(root: str, split: str) -> bool:
    return bool(split) and os.path.isdir(os.path.join(os.path.expanduser(root), split))


def image_folder(root: str, split: str | None = None, *, classes: Sequence[str] | None = None,
                 transform: Callable | None = None) -> ClassificationSet:
    """Read the class folders of ``root`` (or ``root/<split>`` when it exists; see :func:`split_folder`).

    ``classes``: label with this list (a class folder not in it is an error); default: the
    sorted class folder names. A class folder without images, or no class folders at all,
    raise :class:`UserError` naming the folder."""
    if not root:
        raise UserError("data.root is not set (give --data-root or set data.root in the config)")
    folder = split_folder(root, split)
    subdirs = _subfolders(folder)
    if not subdirs:
        raise UserError(f"image folder {folder}: no class folders in it (expected {folder}/<class>/<image>)")
    names = list(classes) if classes is not None else subdirs
    index = {c: i for i, c in enumerate(names)}
    items, labels = [], []
    for d in subdirs:
        if d not in index:
            raise UserError(f"image folder {folder}: class folder {d!r} is not one of the classes {names}")
        files = walk_images(os.path.join(folder, d), recursive=True)
        if not files:
            raise UserError(f"image folder {os.path.join(folder, d)}: no image files in class folder {d!r}")
        items += files
        labels += [index[d]] * len(files)
    rel = [os.path.relpath(p, folder) for p in items]
    return ClassificationSet(names, items, labels, rel, transform, source=folder)


__all__ = ["ClassificationSet", "crop_box", "object_crops", "build_classification_set", "image_folder",
           "split_folder", "has_split", "SPLIT_NAMES"]
