"""What every dataset reader shares: class lists, the one-warning box sanitizer, paths.

Box defects are never fixed silently: each reader feeds its boxes through a
:class:`BoxCleaner`, which drops degenerate boxes (``xmax <= xmin`` or ``ymax <= ymin`` in the
file's own numbers, before any conversion), clips boxes that leave the image, and at the end
emits ONE :class:`DatasetWarning` per dataset with the counts and a few examples (Python's
``warnings`` module: shown once on stderr by the CLIs, catchable in tests and in code with
``warnings.catch_warnings``).
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, UnidentifiedImageError

from backbone.errors import InputWarning, Tally, UserError


#: the largest image side believed in an annotation (PNG stops at 2^31 - 1; a larger number is
#: a damaged file)
MAX_SIDE = 2 ** 31 - 1


class DatasetWarning(InputWarning):
    """Boxes were dropped or clipped while reading a dataset (the message has the counts)."""


# ---------------------------------------------------------------------------------------------
# class lists

_MAP_DET_LINE = re.compile(r"^(n[0-9]{8})\s+([0-9]+)\s+(.+?)\s*$")


@dataclass
class ClassList:
    """Class names in label order (label i is ``names[i - 1]``) and optional display names.

    For ILSVRC the names are WNIDs (what the annotations and devkit use) and ``display`` the
    human names from ``map_det.txt``; ``ids`` are the devkit class ids (1-based) of each name.
    """

    names: list[str]
    display: list[str] | None = None
    ids: list[int] | None = None


def read_class_file(path: str) -> ClassList:
    """Read a class file: one name per line, or the ILSVRC ``map_det.txt`` (``WNID id name``).

    ``map_det.txt`` is recognised when every non-empty line has that shape; its classes are
    ordered by the id column. Blank lines and lines starting with ``#`` are skipped.
    """
    if os.path.exists(path) and not os.path.isfile(path):
        raise UserError(f"class file {path}: not a regular file (a folder, FIFO, socket or device is never read)")
    try:
        with open(path, encoding="utf-8-sig") as f:   # a BOM (Notepad's UTF-8) is not part of a name
            lines = [(i + 1, ln.strip()) for i, ln in enumerate(f)]
    except OSError as e:
        raise UserError(f"class file {path}: cannot read ({e.strerror or e})") from None
    except UnicodeDecodeError:
        raise UserError(f"class file {path}: not a UTF-8 text file") from None
    lines = [(n, ln) for n, ln in lines if ln and not ln.startswith("#")]
    if not lines:
        raise UserError(f"class file {path}: no class names in it")
    matches = [_MAP_DET_LINE.match(ln) for _, ln in lines]
    if all(matches):
        for (n, _), m in zip(lines, matches):
            if len(m.group(2)) > 18:
                raise UserError(f"class file {path} line {n}: class id {m.group(2)[:20]}... is too large")
        rows = sorted((int(m.group(2)), m.group(1), m.group(3)) for m in matches)
        ids = [r[0] for r in rows]
        if len(set(ids)) != len(ids):
            raise UserError(f"class file {path}: a class id appears twice")
        names = [r[1] for r in rows]
        if len(set(names)) != len(names):
            raise UserError(f"class file {path}: a WNID appears twice")
        return ClassList(names, [r[2] for r in rows], ids)
    names = [ln for _, ln in lines]
    seen: dict[str, int] = {}
    for n, ln in lines:
        if ln in seen:
            raise UserError(f"class file {path} line {n}: class {ln!r} already on line {seen[ln]}")
        seen[ln] = n
    return ClassList(names)


def warn_blank_names(what: str, named: list[tuple[str, str]]) -> None:
    """ONE warning for the class names of ``named`` (``(where, name)``) that are blank: the
    peers read them, and every table and file would show an invisible class."""
    tally = Tally(what, "class name(s) blank (shown so in every table and file)", DatasetWarning)
    for where, name in named:
        if not name.strip():
            tally.add(f"{where} is named {name!r}")
    tally.report(stacklevel=3)


def configured_classes(data, root: str) -> ClassList | None:
    """The class list the config gives (``data.classes`` or ``data.classes_file``), else None."""
    if data.classes:
        names = [str(c) for c in data.classes]
        if len(set(names)) != len(names):
            raise UserError(f"data.classes: a class name appears twice ({names})")
        return ClassList(names)
    if data.classes_file:
        return read_class_file(resolve_path(data.classes_file, root))
    return None


def resolve_path(path: str, root: str) -> str:
    """``path`` as given when it exists (or is absolute), else relative to the dataset root."""
    path = os.path.expanduser(path)
    if os.path.isabs(path) or os.path.exists(path) or not root:
        return os.path.abspath(path)
    return os.path.abspath(os.path.join(root, path))


def read_split_file(path: str) -> list[str]:
    """Image ids of a split file: the first word of each non-empty line (VOC/ILSVRC layouts); a
    BOM is skipped, an id listed again is dropped (:func:`drop_repeats`: one warning)."""
    if not os.path.exists(path):
        raise MissingSplit(f"split file {path}: no such file")
    if not os.path.isfile(path):
        raise UserError(f"split file {path}: not a regular file (a folder, FIFO, socket or device is never read)")
    try:
        with open(path, encoding="utf-8-sig") as f:
            rows = [(n, ln.split()[0]) for n, ln in enumerate(f, 1) if ln.strip()]
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"split file {path}: cannot read ({e})") from None
    return [rows[k][1] for k in drop_repeats(rows, f"split file {path}")]


def drop_repeats(rows: list[tuple[int, str]], what: str, noun: str = "image") -> list[int]:
    """Positions in ``rows`` (``(line number, key)``) of each key's first line. A key listed again
    would be read (trained, scored) twice: its later lines are dropped with ONE warning naming
    ``what`` and the count (``--strict``: the error)."""
    first: dict[str, int] = {}
    keep = []
    tally = Tally(what, f"line(s) repeat an {noun} listed before and are dropped", DatasetWarning)
    for k, (n, key) in enumerate(rows):
        if key in first:
            tally.add(f"line {n} {key!r} is line {first[key]} again")
            continue
        first[key] = n
        keep.append(k)
    tally.report(stacklevel=3)
    return keep


# ---------------------------------------------------------------------------------------------
# box sanitizing with one warning per dataset


@dataclass
class BoxCleaner:
    """Convert file boxes to our convention, drop degenerate ones, clip, count.

    ``one_based=True`` (VOC, ILSVRC): the file has 1-based inclusive pixels and x1 = xmin - 1,
    y1 = ymin - 1, x2 = xmax, y2 = ymax. ``one_based=False`` (COCO): the numbers are already
    continuous 0-based corners.
    """

    source: str
    one_based: bool = True
    dropped: int = 0
    clipped: int = 0
    examples: list[str] = field(default_factory=list)
    #: ``path -> (stored width, stored height, orientation)`` for :attr:`sizes` (None: the image header)
    header: object = None
    sizes: SizeChecker = field(init=False)

    def __post_init__(self):
        self.sizes = SizeChecker(self.source, self.header)

    def __call__(self, file_boxes: np.ndarray, width: float, height: float, where: str,
                 orientation: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """``file_boxes`` (N, 4) xmin, ymin, xmax, ymax as in the file -> (boxes (K, 4), keep (N,) bool).
        ``width`` x ``height``: the image as shown; ``orientation`` (:class:`SizeChecker`): the
        file's boxes are of the stored pixels, rotated here as the pixels are."""
        b = np.asarray(file_boxes, dtype=np.float64).reshape(-1, 4)
        keep = (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])
        for i in np.flatnonzero(~keep):
            self._note(f"{where}: degenerate box {_fmt(b[i])} dropped")
        self.dropped += int((~keep).sum())
        huge = keep & (np.abs(b) > MAX_SIDE).any(axis=1)   # beyond any image (and float32's range)
        for i in np.flatnonzero(huge):
            self._note(f"{where}: box {_fmt(b[i])} outside any image dropped")
        self.dropped += int(huge.sum())
        keep &= ~huge
        out = b.copy()
        if self.one_based:
            out[:, :2] -= 1.0
        if orientation != 1:
            out = orient_boxes(out, *shown_size(width, height, orientation), orientation)
        if width > 0 and height > 0:
            lim = np.array([width, height, width, height], dtype=np.float64)
            clipped = np.clip(out, 0.0, lim)
            moved = keep & np.any(clipped != out, axis=1)
            # a box wholly outside the image clips to nothing: dropped, not kept as a sliver
            empty = keep & ((clipped[:, 2] <= clipped[:, 0]) | (clipped[:, 3] <= clipped[:, 1]))
            for i in np.flatnonzero(empty):
                self._note(f"{where}: box {_fmt(b[i])} outside the {width:g}x{height:g} image dropped")
            for i in np.flatnonzero(moved & ~empty):
                self._note(f"{where}: box {_fmt(b[i])} clipped to the {width:g}x{height:g} image")
            self.dropped += int(empty.sum())
            self.clipped += int((moved & ~empty).sum())
            keep &= ~empty
            out = clipped
        return out[keep].astype(np.float32), keep

    def _note(self, text: str) -> None:
        if len(self.examples) < 3:
            self.examples.append(text)

    def report(self) -> None:
        """Emit the one warning for this dataset (nothing when every box was clean), and the
        size checker's; the size index given as ``header`` is written back."""
        self.sizes.report()
        if callable(getattr(self.header, "save", None)):
            self.header.save()
        if not (self.dropped or self.clipped):
            return
        msg = (f"{self.source}: {self.dropped} box(es) dropped (degenerate or outside the image), "
               f"{self.clipped} clipped to the image; e.g. " + "; ".join(self.examples))
        warnings.warn(msg, DatasetWarning, stacklevel=3)


def _fmt(b) -> str:
    return "[" + " ".join(f"{v:g}" for v in b) + "]"


#: EXIF orientations whose display swaps width and height (transpose, 90, transverse, 270)
SWAPS_SIDES = frozenset((5, 6, 7, 8))


def image_header(path: str) -> tuple[int, int, int]:
    """(stored width, stored height, EXIF orientation 1..8) from the image header only (PIL
    opens lazily, nothing is decoded: an image too large to decode still has its size read;
    loading it is refused later, by :func:`detector.io.images.load_image`, with one line).
    The orientation is the one :func:`PIL.ImageOps.exif_transpose` applies (EXIF, else XMP);
    a PNG's is read from an ``eXIf`` chunk before the pixels (one after them is not seen
    without decoding)."""
    if os.path.exists(path) and not os.path.isfile(path):
        raise UserError(f"image {path}: not a regular file (a folder, FIFO, socket or device is never read)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # DecompressionBombWarning, EXIF chatter of odd files
            with Image.open(path) as im:
                try:  # Image.getexif: the PNG plugin's own decodes the pixels to find a late eXIf
                    o = Image.Image.getexif(im).get(0x0112, 1)
                except Exception:  # a damaged EXIF block: load_image's exif_transpose ignores it too  # noqa: BLE001
                    o = 1
                o = o if isinstance(o, int) and 1 <= o <= 8 else 1
                return int(im.width), int(im.height), o
    except FileNotFoundError:
        raise UserError(f"image {path}: no such file") from None
    except Image.DecompressionBombError as e:  # Pillow refuses even the header above 2 x MAX_IMAGE_PIXELS
        raise UserError(f"image {path}: too large to read safely ({e})") from None
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError, EOFError) as e:
        raise UserError(f"image {path}: cannot read ({e})") from None


def shown_size(width: int, height: int, orientation: int) -> tuple[int, int]:
    """The (width, height) an image stored ``width`` x ``height`` has once its EXIF orientation is applied."""
    return (height, width) if orientation in SWAPS_SIDES else (width, height)


def image_size(path: str) -> tuple[int, int]:
    """(width, height) of the image as :func:`detector.io.images.load_image` returns it (EXIF
    orientation applied), read from the header only (:func:`image_header`)."""
    return shown_size(*image_header(path))


def orient_boxes(boxes: np.ndarray, width: float, height: float, orientation: int) -> np.ndarray:
    """Boxes (N, 4) x1 y1 x2 y2 (continuous pixels) of an image STORED ``width`` x ``height``
    -> the same boxes on the image with its EXIF ``orientation`` applied, as
    :func:`PIL.ImageOps.exif_transpose` moves the pixels (2 mirror, 3 180 degrees, 4 flip,
    5 transpose, 6 90 degrees clockwise, 7 transverse, 8 90 degrees counter-clockwise)."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    x1, y1, x2, y2 = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
    w, h = float(width), float(height)
    corners = {
        1: (x1, y1, x2, y2),
        2: (w - x2, y1, w - x1, y2),
        3: (w - x2, h - y2, w - x1, h - y1),
        4: (x1, h - y2, x2, h - y1),
        5: (y1, x1, y2, x2),
        6: (h - y2, x1, h - y1, x2),
        7: (h - y2, w - x2, h - y1, w - x1),
        8: (y1, w - x2, y2, w - x1),
    }[orientation if orientation in range(1, 9) else 1]
    return np.stack(corners, axis=1) if len(b) else b.copy()


class ImageSizeWarning(DatasetWarning):
    """An annotated image size disagrees with the image (the image's own size is used)."""


class SizeChecker:
    """The real size of an annotated image, with ONE counted warning per dataset each for the
    annotated sizes that disagree with the image and for the annotations of an EXIF-rotated
    photo's stored pixels.

    The real size is the one :func:`detector.io.images.load_image` returns (EXIF orientation
    applied; ``header(path)`` gives the stored size and orientation: :func:`image_header` or
    the size index, :func:`detector.io.datasets.index.image_sizes`). ``checker(w, h, path,
    where)`` -> ``(width, height, orientation)``: the image's size always (an annotation
    without a size, 0 x 0, is quietly completed); ``orientation`` is the one to rotate the
    boxes by, 1 (none) except when the annotated size is the stored size of a photo whose
    orientation swaps its sides (a tool that showed the stored pixels): the boxes are then
    rotated with the image. Orientations that keep the size (mirror, 180 degrees, flip) cannot
    be told from the size, and the boxes are taken as drawn on the displayed image, as
    ultralytics (OpenCV applies the orientation) takes them. Boxes are never scaled: VOC and
    COCO boxes are pixels, whatever ``<size>`` says."""

    def __init__(self, source: str, header=None):
        self.header = header or image_header
        self.disagree = Tally(source, "annotated image size(s) that disagree with the image (the image's own "
                                      "size used, the boxes kept in pixels)", ImageSizeWarning)
        self.rotated = Tally(source, "annotation(s) of the stored pixels of an EXIF-rotated photo (boxes rotated "
                                     "with the image)", ImageSizeWarning)

    def __call__(self, width: int, height: int, path: str | None, where: str,
                 what: str = "annotated size") -> tuple[int, int, int]:
        annotated = width > 0 and height > 0
        if not path or (annotated and not os.path.isfile(path)):
            return width, height, 1   # no image to ask (COCO annotations without their images): as annotated
        try:
            sw, sh, o = self.header(path)
        except UserError:
            if not annotated:
                raise
            return width, height, 1   # a damaged header: reading the pixels will say (the image left out)
        w, h = shown_size(sw, sh, o)
        if width <= 0 or height <= 0 or (width, height) == (w, h):
            return w, h, 1
        if o in SWAPS_SIDES and (width, height) == (sw, sh):
            self.rotated.add(f"{where}: {what} {width}x{height} is the stored size of {os.path.basename(path)}, "
                             f"shown {w}x{h} (EXIF orientation {o})")
            return w, h, o
        self.disagree.add(f"{where}: {what} {width}x{height}, {os.path.basename(path)} is {w}x{h}")
        return w, h, 1

    def report(self) -> None:
        self.disagree.report(stacklevel=3)
        self.rotated.report(stacklevel=3)


# ---------------------------------------------------------------------------------------------
# splits named by folders, and walking a dataset folder

#: folder (or file-name) words that name a split: ``valid`` (Roboflow) and ``val2017`` (COCO) mean val
SPLIT_ALIASES = {"train": "train", "training": "train", "train2017": "train", "train2014": "train",
                 "val": "val", "valid": "val", "validation": "val", "val2017": "val", "val2014": "val",
                 "test": "test", "testing": "test", "test2017": "test", "test2014": "test"}


class MissingSplit(UserError):
    """The dataset has its own splits and ``split`` is not one of them."""


def split_of(rel_path: str) -> str | None:
    """The split a path below the dataset root names through a folder (``train/images/x.jpg``,
    ``images/val/x.jpg``, ``valid/x.xml``), else None."""
    for part in rel_path.replace(os.sep, "/").split("/")[:-1]:
        if part.lower() in SPLIT_ALIASES:
            return SPLIT_ALIASES[part.lower()]
    return None


def walk_files(root: str, exts: tuple[str, ...]) -> list[str]:
    """Files below ``root`` whose name ends with one of ``exts`` (case-insensitive), sorted;
    hidden folders and the written ``splits/`` folder are skipped, symlinked folders not followed."""
    out = []
    low = tuple(e.lower() for e in exts)
    for d, dirs, files in os.walk(root):
        dirs[:] = sorted(x for x in dirs if not x.startswith(".") and not (d == root and x == "splits"))
        out.extend(os.path.join(d, f) for f in files if f.lower().endswith(low) and not f.startswith("."))
    return sorted(out)


def own_splits(root: str, paths: list[str]) -> dict[str, list[str]] | None:
    """``{split: [paths]}`` when EVERY path names a split through a folder, else None
    (``trainval`` = train + val)."""
    if not paths:
        return None
    by: dict[str, list[str]] = {}
    for p in paths:
        s = split_of(os.path.relpath(p, root))
        if s is None:
            return None
        by.setdefault(s, []).append(p)
    by["trainval"] = sorted(by.get("train", []) + by.get("val", []))
    return by


def check_unique_stems(paths: list[str], what: str) -> None:
    """Image ids are file stems: two files of one split with the same stem are an error naming both."""
    seen: dict[str, str] = {}
    for p in paths:
        stem = os.path.splitext(os.path.basename(p))[0]
        if stem in seen:
            raise UserError(f"{what}: {seen[stem]} and {p} have the same name {stem!r} in one split "
                            "(image ids are file names; rename one)")
        seen[stem] = p
