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

Anything a user can get wrong (missing file, a folder, not an image, a truncated or corrupt
file) raises :class:`backbone.errors.UserError` naming the file. :func:`list_images` expands
files and folders into a sorted list of image files.
"""

from __future__ import annotations

import os
import warnings
from typing import Iterable

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from backbone.errors import UserError

#: file extensions (lower case) that :func:`list_images` picks up inside folders
IMAGE_EXTENSIONS = (
    ".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp",
    ".ppm", ".pgm", ".pbm", ".pnm",
)

#: colour the alpha channel is composited on
BACKGROUND = (255, 255, 255)


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


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Read image file ``path`` -> ``(H, W, 3)`` uint8 RGB, EXIF orientation applied.

    Raises :class:`UserError` naming the file when it is missing, a folder, not an image, or
    corrupt/truncated.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise UserError(f"image {path}: no such file")
    if os.path.isdir(path):
        raise UserError(f"image {path}: is a folder, not an image file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # EXIF/ICC chatter from odd files
            with Image.open(path) as img:
                img.load()
                img = ImageOps.exif_transpose(img) or img
                arr = _to_rgb(img)
    except UnidentifiedImageError:
        raise UserError(f"image {path}: not an image file (unknown or unsupported format)") from None
    except Image.DecompressionBombError as e:
        raise UserError(f"image {path}: too large to read safely ({e})") from None
    except PermissionError:
        raise UserError(f"image {path}: permission denied") from None
    except (OSError, ValueError, SyntaxError, EOFError) as e:
        raise UserError(f"image {path}: cannot read (corrupt or truncated: {e})") from None
    if arr.ndim != 3 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise UserError(f"image {path}: empty image ({arr.shape})")
    return arr


def is_image_file(path: str) -> bool:
    """Whether ``path`` has an image extension (case-insensitive) and is not a hidden file."""
    name = os.path.basename(path)
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _walk_images(folder: str, recursive: bool) -> list[str]:
    found: list[str] = []
    if recursive:
        for root, dirs, files in os.walk(folder, followlinks=True):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            found.extend(os.path.join(root, f) for f in files if is_image_file(f))
    else:
        found = [os.path.join(folder, f) for f in os.listdir(folder)
                 if is_image_file(f) and os.path.isfile(os.path.join(folder, f))]
    return sorted(found)


def list_images(paths: Iterable[str | os.PathLike], recursive: bool = True) -> list[str]:
    """Expand files and folders into a list of image files.

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
                files = _walk_images(p, recursive)
            except OSError as e:
                raise UserError(f"folder {p}: cannot list ({e.strerror or e})") from None
            if not files:
                exts = ", ".join(IMAGE_EXTENSIONS[:6])
                raise UserError(f"folder {p}: no image files in it (looked for {exts}, ...)")
        elif os.path.exists(p):
            files = [p]
        else:
            raise UserError(f"{p}: no such file or folder")
        for f in files:
            key = os.path.normpath(f)
            if key not in seen:
                seen.add(key)
                out.append(f)
    return out


__all__ = ["IMAGE_EXTENSIONS", "BACKGROUND", "load_image", "list_images", "is_image_file"]
