"""Reading images from disk: one function that turns any common image file into RGB uint8.

:func:`load_image` always returns an ``(H, W, 3)`` uint8 RGB array, whatever the file holds:

- grayscale (``L``, bilevel ``1``) is replicated to three channels;
- 16-bit and 32-bit integer images (``I;16``, ``I``; 16-bit PNG/TIFF) are scaled to 8 bits
  (value * 255 / 65535, rounded), float images (``F``) are taken as 0..1 when they fit there,
  else as 0..255, and clipped;
- an alpha channel (``RGBA``, ``LA``, palette images with a transparent colour) is composited
  on a white background, so transparent pixels do not show whatever colour the file stored
  under them (dropping alpha would);
- CMYK (and YCbCr, LAB, HSV) is converted to RGB by Pillow;
- the EXIF orientation tag is applied (``ImageOps.exif_transpose``), so a phone photo stored
  sideways comes out the way it is displayed.

A truncated JPEG (a download or copy cut short) is decoded as OpenCV's ``cv2.imread`` decodes
it (libjpeg's "Premature end of JPEG file"): the rows the file holds, the rest grey (128), with
a :class:`TruncatedImageWarning` naming the file (or, inside :class:`ImageReads`, one counted
warning for all of them). Other truncated formats (PNG, WebP, ...) OpenCV refuses, and so does
this: anything a user can get wrong (missing file, a folder, not an image, a corrupt file, an
image of more than :func:`max_pixels` pixels) raises :class:`backbone.errors.UserError`
naming the file. The file itself is never rewritten. The pixel limit is checked on the size in the file's header (``Image.open``
is lazy), before anything is decoded: a 400 KB PNG can declare 12000 x 12000 pixels, and
decoding it would need gigabytes. :func:`list_images` expands
files and folders into a sorted list of image files.
"""

from __future__ import annotations

import io
import os
import warnings
from typing import Callable, Iterable

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from backbone.errors import InputWarning, Tally, UserError

from ..transforms import to_tensor_image  # re-exported: it lives with the other transforms

#: file extensions (lower case) that :func:`list_images` picks up inside folders
IMAGE_EXTENSIONS = (
    ".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp",
    ".ppm", ".pgm", ".pbm", ".pnm",
)

#: colour the alpha channel is composited on
BACKGROUND = (255, 255, 255)

#: images with more pixels than this are refused before decoding (override:
#: ``$GOOGLENET_DET_MAX_PIXELS``, 0 = no limit of ours). 120 megapixels: above every single-shot
#: camera (61 MP full frame, 100-102 MP medium format), below the 144 MP of a 12000 x 12000
#: bomb and below Pillow's own refusal (2 x ``Image.MAX_IMAGE_PIXELS`` = 179 MP, which stays a
#: one-line error too). Decoding costs about 10-20 bytes a pixel at its peak (Pillow's 4-byte
#: RGBX, our 3-byte array, an alpha composite or EXIF rotation copy), so 1.2-2.4 GB here; the
#: detector then works on a copy at most ``detector.model.WORKING_MAX_SIDE`` px long.
MAX_PIXELS = 120_000_000
MAX_PIXELS_ENV = "GOOGLENET_DET_MAX_PIXELS"


def max_pixels() -> int:
    """The pixel limit of :func:`load_image`: ``$GOOGLENET_DET_MAX_PIXELS`` when set (0 = none of
    ours; Pillow still refuses above 2 x ``PIL.Image.MAX_IMAGE_PIXELS``), else :data:`MAX_PIXELS`."""
    raw = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not raw:
        return MAX_PIXELS
    try:
        v = int(raw.replace("_", ""))
    except ValueError:
        v = -1
    if v < 0:
        raise UserError(f"{MAX_PIXELS_ENV}={raw!r}: expected a whole number of pixels (0 = no limit)")
    return v


def check_pixels(path: str, width: int, height: int) -> None:
    """Refuse an image of ``width`` x ``height`` pixels above :func:`max_pixels` (one line)."""
    limit = max_pixels()
    if limit and width * height > limit:
        raise UserError(f"image {path}: {width}x{height} pixels ({width * height / 1e6:.1f} megapixels) is more "
                        f"than the limit of {limit / 1e6:g} megapixels (decoding it could exhaust memory; "
                        f"raise it with {MAX_PIXELS_ENV}=N)")


def _to_rgb(img: Image.Image) -> np.ndarray:
    """Any Pillow mode -> (H, W, 3) uint8 RGB (see the module docstring for the rules)."""
    mode = img.mode
    if mode == "P" or mode == "PA":
        # palette: keep a transparency entry, if any, as alpha
        img = img.convert("RGBA" if (mode == "PA" or "transparency" in img.info) else "RGB")
        mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        a = np.asarray(img).astype(np.float64)
        if mode == "I" and a.size and a.max() > 65535:  # genuine 32-bit data: use its own range
            a = a * (255.0 / a.max())
        else:
            a = a * (255.0 / 65535.0)
        g = np.clip(np.rint(a), 0, 255).astype(np.uint8)
        return np.repeat(g[:, :, None], 3, axis=2)
    if mode == "F":
        a = np.asarray(img).astype(np.float64)
        a = np.nan_to_num(a)
        if a.size and a.min() >= 0.0 and a.max() <= 1.0:
            a = a * 255.0
        g = np.clip(np.rint(a), 0, 255).astype(np.uint8)
        return np.repeat(g[:, :, None], 3, axis=2)
    if mode in ("RGBA", "LA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, BACKGROUND + (255,))
        img = Image.alpha_composite(bg, rgba).convert("RGB")
    elif mode != "RGB":
        img = img.convert("RGB")  # L, 1, CMYK, YCbCr, LAB, HSV, RGBX
    return np.ascontiguousarray(np.asarray(img, dtype=np.uint8))


class TruncatedImageWarning(InputWarning):
    """A truncated JPEG was decoded as OpenCV decodes it (the missing part grey)."""


class UnreadableImageWarning(InputWarning):
    """An image that cannot be decoded at all was left out (of training, scoring, proposals)."""


#: what a truncated JPEG becomes, in the warnings
TRUNCATED_NOUN = "truncated JPEG(s) decoded as OpenCV decodes them (the missing part grey)"


def _decode(img: Image.Image, path: str) -> np.ndarray:
    check_pixels(path, *img.size)
    img.load()
    img = ImageOps.exif_transpose(img) or img
    return _to_rgb(img)


def _decode_truncated_jpeg(path: str) -> np.ndarray:
    """A truncated JPEG as libjpeg (OpenCV's ``imread``, Pillow's ``LOAD_TRUNCATED_IMAGES``)
    decodes it: the bytes read in memory with an end-of-image marker after them, which is what
    Pillow feeds libjpeg at a premature end; scoped to this one file (no global flag set)."""
    with open(path, "rb") as f:
        data = f.read() + b"\xff\xd9"
    with Image.open(io.BytesIO(data)) as img:
        return _decode(img, path)


def load_image(path: str | os.PathLike, *, on_truncated: Callable[[str], None] | None = None) -> np.ndarray:
    """Read image file ``path`` -> ``(H, W, 3)`` uint8 RGB, EXIF orientation applied.

    Raises :class:`UserError` naming the file when it is missing, a folder, not an image, or
    corrupt (a truncated PNG, ...). A truncated JPEG is decoded as OpenCV decodes it;
    ``on_truncated(message)`` is told (a :class:`TruncatedImageWarning` when None).
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise UserError(f"image {path}: no such file")
    if os.path.isdir(path):
        raise UserError(f"image {path}: is a folder, not an image file")
    if not os.path.isfile(path):
        raise UserError(f"image {path}: not a regular file (a FIFO, socket or device is never read)")
    truncated = None
    try:
        with warnings.catch_warnings():
            # EXIF/ICC chatter from odd files; Pillow's DecompressionBombWarning too: the size
            # was checked against our own limit (check_pixels) before decoding
            warnings.simplefilter("ignore")
            with Image.open(path) as img:
                fmt = img.format
                try:
                    arr = _decode(img, path)
                except OSError as e:
                    if fmt != "JPEG" or "truncated" not in str(e):
                        raise
                    truncated = str(e)
            if truncated is not None:
                try:
                    arr = _decode_truncated_jpeg(path)
                except (OSError, ValueError, SyntaxError, EOFError):
                    raise OSError(truncated) from None
    except UnidentifiedImageError:
        raise UserError(f"image {path}: not an image file (unknown or unsupported format)") from None
    except Image.DecompressionBombError as e:  # Pillow's own limit, 2 x Image.MAX_IMAGE_PIXELS
        raise UserError(f"image {path}: too large to read safely ({e})") from None
    except MemoryError:
        raise UserError(f"image {path}: not enough memory to decode it (lower {MAX_PIXELS_ENV})") from None
    except PermissionError:
        raise UserError(f"image {path}: permission denied") from None
    except (OSError, ValueError, SyntaxError, EOFError) as e:
        raise UserError(f"image {path}: cannot read (corrupt or truncated: {e})") from None
    if arr.ndim != 3 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise UserError(f"image {path}: empty image ({arr.shape})")
    if truncated is not None:
        if on_truncated is not None:
            on_truncated(path)
        else:
            warnings.warn(f"image {path}: truncated JPEG decoded as OpenCV decodes it (the missing part grey; "
                          f"{truncated})", TruncatedImageWarning, stacklevel=2)
    return arr


class ImageReads:
    """The images of one run or dataset read with ONE counted warning for the truncated JPEGs
    (decoded) and ONE for the images that cannot be decoded (left out): ``reads.load(path)``
    returns the image, or None when it is left out; ``reads.report()`` at the end warns.

    Work done elsewhere (``DataLoader`` or pool worker processes) is told with
    :meth:`note` (``"truncated"`` or ``"unreadable"``, the file or message), so the worker
    decides nothing and ``--strict`` (the warning filter of the main process) refuses the
    first case with one line. One object can serve several passes over the same files (the
    proposals, then training): :meth:`report` tells what is new since the last report."""

    def __init__(self, what: str, left_out: str = "left out"):
        self.what, self.left_out = what, left_out
        self._seen: set[tuple[str, str]] = set()   # a file read again (next epoch, next pass) is counted once
        self._fresh()

    def _fresh(self) -> None:
        self.truncated = Tally(self.what, TRUNCATED_NOUN, TruncatedImageWarning)
        self.unreadable = Tally(self.what, f"image(s) that cannot be decoded {self.left_out}", UnreadableImageWarning)

    def load(self, path: str) -> np.ndarray | None:
        try:
            return load_image(path, on_truncated=lambda p: self.note("truncated", p))
        except UserError as e:
            self.note("unreadable", str(e))
            return None

    def note(self, kind: str, text: str) -> None:
        if (kind, text) not in self._seen:
            self._seen.add((kind, text))
            (self.truncated if kind == "truncated" else self.unreadable).add(text)

    def report(self, stacklevel: int = 2) -> None:
        """Warn about the files met since the last report (one pass, e.g. the proposals, then
        the training over the same files: each file is told once)."""
        self.truncated.report(stacklevel + 1)
        self.unreadable.report(stacklevel + 1)
        self._fresh()


def read_noted(path: str, notes: list[tuple[str, str]]) -> np.ndarray | None:
    """:func:`load_image` for worker processes: a truncated JPEG is decoded and
    ``("truncated", path)`` appended to ``notes``; an image that cannot be decoded gives None
    and ``("unreadable", message)`` (the main process hands ``notes`` to :meth:`ImageReads.note`)."""
    try:
        return load_image(path, on_truncated=lambda p: notes.append(("truncated", p)))
    except UserError as e:
        notes.append(("unreadable", str(e)))
        return None


def is_image_file(path: str) -> bool:
    """Whether ``path`` has an image extension (case-insensitive) and is not a hidden file."""
    name = os.path.basename(path)
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def walk_images(folder: str, recursive: bool = True) -> list[str]:
    """The image files below ``folder`` (by extension, hidden ones skipped), sorted.

    Links are followed, but every real file and folder is visited once (a folder linking to
    itself or to an ancestor is not entered again, two links to one image give it once), and
    only regular files count (a FIFO named ``x.jpg`` would block the reader forever)."""
    found: list[str] = []
    seen_dirs: set[str] = set()
    seen_files: set[str] = set()

    def keep(path: str) -> bool:
        real = os.path.realpath(path)
        if real in seen_files or not os.path.isfile(real):  # isfile: regular files only (stat follows links)
            return False
        seen_files.add(real)
        return True

    if recursive:
        for root, dirs, files in os.walk(folder, followlinks=True):
            real = os.path.realpath(root)
            if real in seen_dirs:
                dirs[:] = []
                continue
            seen_dirs.add(real)
            dirs[:] = sorted(d for d in dirs if not d.startswith(".") and os.path.realpath(os.path.join(root, d))
                             not in seen_dirs)
            found.extend(os.path.join(root, f) for f in sorted(files) if is_image_file(f) and keep(os.path.join(root, f)))
    else:
        found = [os.path.join(folder, f) for f in sorted(os.listdir(folder))
                 if is_image_file(f) and keep(os.path.join(folder, f))]
    return sorted(found)


def list_images(paths: Iterable[str | os.PathLike], recursive: bool = True, *,
                skip: Callable[[str], bool] | None = None, skip_what: str = "the files skipped") -> list[str]:
    """Expand files and folders into a list of image files (``skip``: files of folders to leave
    out, e.g. the pictures an earlier ``detect`` wrote there; ``skip_what`` names them).

    A file is kept as given (whatever its extension: :func:`load_image` will say if it is not
    an image); a folder contributes its image files (by extension, hidden files skipped,
    sorted, subfolders included when ``recursive``). Order: the arguments' order, duplicates
    removed. A missing path, a folder without images or no paths at all raise
    :class:`UserError`.
    """
    out: list[str] = []
    seen: set[str] = set()
    paths = [os.fspath(p) for p in paths]
    if not paths:
        raise UserError("no image files or folders given")
    for p in paths:
        if os.path.isdir(p):
            try:
                files = walk_images(p, recursive)
            except OSError as e:
                raise UserError(f"folder {p}: cannot list ({e.strerror or e})") from None
            if not files:
                exts = ", ".join(IMAGE_EXTENSIONS[:6])
                raise UserError(f"folder {p}: no image files in it (looked for {exts}, ...)")
            if skip is not None:
                files = [f for f in files if not skip(f)]
                if not files:
                    raise UserError(f"folder {p}: no image files in it besides {skip_what}")
        elif os.path.exists(p):
            if not os.path.isfile(p):
                raise UserError(f"{p}: not a regular file (a FIFO, socket or device is never read)")
            files = [p]
        else:
            raise UserError(f"{p}: no such file or folder")
        for f in files:
            key = os.path.normpath(f)
            if key not in seen:
                seen.add(key)
                out.append(f)
    return out


__all__ = ["IMAGE_EXTENSIONS", "BACKGROUND", "MAX_PIXELS", "MAX_PIXELS_ENV", "max_pixels", "check_pixels",
           "load_image", "ImageReads", "read_noted", "TruncatedImageWarning",
           "UnreadableImageWarning", "list_images", "is_image_file", "walk_images", "to_tensor_image"]
