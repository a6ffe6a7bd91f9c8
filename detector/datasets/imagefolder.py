"""ImageFolder-style classification data: ``root/<class>/<image>``, or per split
``root/<split>/<class>/<image>``.

Classes are the sorted names of the class folders (of the training split; other splits are
labelled with that list). Images are found by extension (see :data:`detector.images.IMAGE_EXTENSIONS`),
also in subfolders of a class folder, and read on access with :func:`detector.images.load_image`.
"""

from __future__ import annotations

import os
from typing import Callable, Sequence

from backbone.errors import UserError

from ..images import _walk_images
from .crops import ClassificationSet


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
        files = _walk_images(os.path.join(folder, d), recursive=True)
        if not files:
            raise UserError(f"image folder {os.path.join(folder, d)}: no image files in class folder {d!r}")
        items += files
        labels += [index[d]] * len(files)
    rel = [os.path.relpath(p, folder) for p in items]
    return ClassificationSet(names, items, labels, rel, transform, source=folder)


__all__ = ["image_folder", "split_folder", "has_split", "SPLIT_NAMES"]
