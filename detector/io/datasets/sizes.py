"""Image sizes: the header's size and EXIF orientation (nothing decoded), the displayed size,
boxes rotated with the image, and the annotated sizes checked against the image (one warning)."""

from __future__ import annotations

import os
import warnings

import numpy as np
from PIL import Image, UnidentifiedImageError

from backbone.errors import Tally, UserError

from .warning import DatasetWarning

#: the largest image side believed in an annotation (PNG stops at 2^31 - 1; a larger number is
#: a damaged file)
MAX_SIDE = 2 ** 31 - 1


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
