"""eval.analysis_plots: the gallery's image reading (the pixel limit before decoding, EXIF
orientation, greyscale, unreadable files); the figures themselves: tests/detector/io/test_figures.py."""

import os
import struct
import zlib

import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image

from eval import analysis_plots as P


def png_header(path, width, height) -> str:
    """A PNG of a few dozen bytes whose header claims ``width`` x ``height`` (1-bit grey) pixels
    and whose image data is empty: only its size can be read."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))
    return str(path)


def tiles(fig):
    """What plot_gallery drew: per tile its title and image array (None: left empty)."""
    assert isinstance(fig, Figure)
    return [(ax.get_title(), ax.images[0].get_array() if ax.images else None)
            for ax in fig.axes if ax.get_title() or ax.images]


def item(path, box=(2, 2, 12, 12), image=0):
    return {"path": path, "box": list(box), "image": image, "score": 0.9, "hoiem": "Loc", "tide": "Loc"}


def good_image(tmp_path, name="ok.png", size=(40, 30), mode="RGB"):
    p = str(tmp_path / name)
    Image.new(mode, size, 128).save(p)
    return p


@pytest.mark.parametrize("side", [11_000, 20_000])   # above our 120 MP; 20000^2 also above Pillow's 179 MP
def test_gallery_does_not_decode_an_image_above_the_pixel_limit(tmp_path, side):
    huge = png_header(tmp_path / "huge.png", side, side)
    assert os.path.getsize(huge) < 100
    out = P.plot_gallery([item(huge), item(good_image(tmp_path))], [], "cat", ["cat"])
    titles = [t for t, _ in tiles(out)]
    assert titles[0] == ("(image too large)" if side == 20_000 else f"(image too large: {side}x{side})")  # Pillow's / ours
    assert titles[1].startswith("FP 0.90")


def test_gallery_of_only_unreadable_images_is_none(tmp_path):
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"not an image")
    os.mkfifo(tmp_path / "fifo.png")                  # never opened: that would hang
    items = [item(png_header(tmp_path / "huge.png", 20_000, 20_000)), item(str(junk)),
             item(str(tmp_path / "fifo.png")), item(str(tmp_path / "missing.png")), item(str(tmp_path))]
    before = sorted(os.listdir(tmp_path))
    assert P.plot_gallery(items, [], "cat", ["cat"]) is None
    assert sorted(os.listdir(tmp_path)) == before                   # eval/ writes no file
    assert P._read(str(junk), {}) == "(unreadable image)"
    assert P._read(str(tmp_path / "fifo.png"), {}) == "(not an image file)"
    assert P._read(str(tmp_path / "missing.png"), {}) == "(no such image file)"


def test_gallery_reads_images_as_the_detector_does(tmp_path):
    # EXIF orientation 6 (rotate 90 degrees): 40 x 30 stored, 30 wide x 40 high shown, as
    # detector.io.images.load_image reads it (the boxes are in those coordinates)
    rotated = str(tmp_path / "rot.jpg")
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (40, 30), (200, 10, 10)).save(rotated, exif=exif)
    grey = good_image(tmp_path, "grey.png", (40, 30), "L")
    fig = P.plot_gallery([item(rotated, box=(0, 0, 30, 40)), item(grey, box=(0, 0, 40, 30))], [], "cat", ["cat"])
    (_, a), (_, b) = tiles(fig)
    assert a.shape == (40, 30, 3) and b.shape == (30, 40, 3)        # RGB: no colour map on a grey image
    assert a.dtype == np.uint8 and int(b[0, 0, 0]) == 128


def test_gallery_crops_around_inverted_boxes_and_boxes_outside(tmp_path):
    # an inverted false positive (x2 < x1, y2 < y1: eval-map scores it, as the devkits do) is
    # cropped around its extent; a box wholly outside the image leaves its tile empty
    ok = good_image(tmp_path, size=(40, 30))
    out = P.plot_gallery([item(ok, box=(30, 25, 10, 5)), item(ok, box=(500, 500, 600, 600))], [], "cat", ["cat"])
    (t0, a), (t1, b) = tiles(out)
    assert t0 == "FP 0.90 Loc/Loc inverted" and a.shape[:2] == (30, 40)
    assert t1 == "box outside the image" and b is None
