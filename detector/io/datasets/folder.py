"""A plain folder of VOC XML files and images, without split files.

The first time a split is asked for, the folder's annotations (``*.xml`` anywhere below the
root, image id = the path without ``.xml``) are shuffled with a fixed seed and cut 70/15/15 into
``train``/``val``/``test`` (``trainval`` = train + val). The split files are then WRITTEN, so
the split never changes even if files are added or the code changes:

- ``<root>/splits/<name>.txt`` when the root is writable (a user-facing file, kept with the
  data, easy to edit; these are not caches, which never go inside a dataset folder),
- else ``<cache>/splits/<hash of the root path>/<name>.txt`` (cache folder:
  :func:`backbone.io.cache_dir`).

Existing split files are used as they are. Annotations not listed in any split file (added
later) are counted in a warning. Images are found beside their XML (same stem, or the XML's
``<filename>``).
"""

from __future__ import annotations

import glob
import hashlib
import os
import warnings

import numpy as np

from backbone.errors import UserError
from backbone.io import cache_dir, write_text

from .boxes import BoxCleaner
from .classes import ClassList
from .splits import read_split_file
from .warning import DatasetWarning
from .index import size_index
from .records import Dataset
from .voc import annotation_to_record, classes_found, find_image, parse_voc_annotation

SEED = 0
FRACTIONS = {"train": 0.70, "val": 0.15, "test": 0.15}


def _split_dir(root: str) -> str:
    here = os.path.join(root, "splits")
    if os.path.isdir(here) or os.access(root, os.W_OK):
        return here
    key = hashlib.sha1(root.encode()).hexdigest()[:16]
    return os.path.join(cache_dir(), "splits", key)


def _annotation_ids(root: str) -> list[str]:
    paths = glob.glob(os.path.join(glob.escape(root), "**", "*.xml"), recursive=True)
    return sorted(os.path.relpath(p, root)[:-4].replace(os.sep, "/") for p in paths)


def make_splits(ids: list[str], seed: int = SEED) -> dict[str, list[str]]:
    """Shuffle sorted ``ids`` with ``seed`` and cut train/val/test by :data:`FRACTIONS`."""
    ids = sorted(ids)
    perm = np.random.default_rng(seed).permutation(len(ids))
    n_train = int(round(FRACTIONS["train"] * len(ids)))
    n_val = int(round(FRACTIONS["val"] * len(ids)))
    shuffled = [ids[i] for i in perm]
    out = {"train": sorted(shuffled[:n_train]), "val": sorted(shuffled[n_train:n_train + n_val]),
           "test": sorted(shuffled[n_train + n_val:])}
    out["trainval"] = sorted(out["train"] + out["val"])
    return out


def ensure_splits(root: str, ids: list[str] | None = None) -> str:
    """The folder holding this dataset's split files, writing them on first use (from ``ids``,
    default: the folder layout's annotation ids)."""
    d = _split_dir(root)
    if os.path.isfile(os.path.join(d, "train.txt")):
        return d
    ids = _annotation_ids(root) if ids is None else ids
    if not ids:
        raise UserError(f"dataset root {root}: no *.xml annotation files found")
    splits = make_splits(ids)
    for name in sorted(splits, key=lambda n: n == "train"):  # train.txt last: its presence means "written"
        members = splits[name]
        write_text(os.path.join(d, name + ".txt"), "".join(i + "\n" for i in members), what="split file")
    return d


def fixed_split(root: str, split: str, all_ids: list[str]) -> tuple[list[str], str]:
    """The ids of ``split`` from the split files written once for ``root`` (fixed-seed 70/15/15 of
    ``all_ids``), and the split file's path; ids in no split file are counted in a warning."""
    d = ensure_splits(root, all_ids)
    path = os.path.join(d, split + ".txt")
    ids = read_split_file(path)
    listed = set(ids)
    for name in glob.glob(os.path.join(glob.escape(d), "*.txt")):
        if os.path.abspath(name) != os.path.abspath(path):   # read once: one warning per file
            listed.update(read_split_file(name))
    new = [i for i in all_ids if i not in listed]
    if new:
        warnings.warn(f"dataset {root}: {len(new)} annotation file(s) are in no split file of {d} "
                      f"(e.g. {new[0]}); delete the split files to re-split", DatasetWarning, stacklevel=3)
    return ids, path


def read_folder(root: str, split: str, classes: ClassList | None = None) -> Dataset:
    """Read split ``split`` of a plain folder of VOC XML files and images."""
    root = os.path.abspath(os.path.expanduser(root))
    if not os.path.isdir(root):
        raise UserError(f"dataset root {root}: no such folder")
    all_ids = _annotation_ids(root)
    ids, split_path = fixed_split(root, split, all_ids)
    anns = {}
    for image_id in ids:
        p = os.path.join(root, image_id + ".xml")
        if not os.path.isfile(p):
            raise UserError(f"split file {split_path}: image id {image_id!r} has no annotation {p}")
        anns[image_id] = parse_voc_annotation(p)
    if classes is None:
        every = list(anns.values()) + [parse_voc_annotation(os.path.join(root, i + ".xml"))
                                       for i in all_ids if i not in anns]
        classes = classes_found(every)
    index = {n: i + 1 for i, n in enumerate(classes.names)}
    cleaner = BoxCleaner(f"dataset {root} split {split}", one_based=True, header=size_index(root))
    records = []
    for image_id in ids:
        ann = anns[image_id]
        folder = os.path.dirname(os.path.join(root, image_id))
        path = find_image(folder, os.path.basename(image_id), ann.filename)
        if path is None:
            raise UserError(f"{ann.path}: no image beside it for id {image_id!r}")
        records.append(annotation_to_record(ann, image_id, path, index, cleaner))
    cleaner.report()
    return Dataset(classes=list(classes.names), records=records, root=root, split=split)
