"""detector.io.images: every image kind comes out (H, W, 3) uint8 RGB; bad files raise UserError."""

import os

import numpy as np
import pytest
from PIL import Image

from backbone.errors import InputWarning, UserError
from detector.io.images import (
    BACKGROUND,
    ImageReads,
    TruncatedImageWarning,
    UnreadableImageWarning,
    list_images,
    load_image,
)


def _rgb_pattern(h=6, w=8):
    a = np.zeros((h, w, 3), np.uint8)
    a[..., 0] = np.arange(w, dtype=np.uint8)[None, :] * 30
    a[..., 1] = np.arange(h, dtype=np.uint8)[:, None] * 40
    a[..., 2] = 200
    return a


def test_rgb_png_roundtrip(tmp_path):
    a = _rgb_pattern()
    p = tmp_path / "a.png"
    Image.fromarray(a).save(p)
    out = load_image(p)
    assert out.dtype == np.uint8 and out.shape == (6, 8, 3)
    np.testing.assert_array_equal(out, a)


def test_grayscale_is_replicated(tmp_path):
    g = (np.arange(48, dtype=np.uint8).reshape(6, 8) * 5)
    p = tmp_path / "g.png"
    Image.fromarray(g, mode="L").save(p)
    out = load_image(p)
    assert out.shape == (6, 8, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], g)


def test_bilevel(tmp_path):
    p = tmp_path / "b.png"
    Image.new("1", (5, 4), 1).save(p)
    out = load_image(p)
    assert out.shape == (4, 5, 3) and (out == 255).all()


def test_16bit_grayscale_scaled_to_8bit(tmp_path):
    g = np.array([[0, 257 * 100, 65535], [257, 257 * 200, 32896]], np.uint16)
    p = tmp_path / "g16.png"
    Image.fromarray(g).save(p)
    assert Image.open(p).mode.startswith("I")  # really stored as 16-bit
    out = load_image(p)
    assert out.dtype == np.uint8 and out.shape == (2, 3, 3)
    np.testing.assert_array_equal(out[..., 0], [[0, 100, 255], [1, 200, 128]])


def test_16bit_tiff(tmp_path):
    g = np.full((3, 4), 65535, np.uint16)
    g[0, 0] = 0
    p = tmp_path / "g16.tif"
    Image.fromarray(g).save(p)
    out = load_image(p)
    assert out[0, 0, 0] == 0 and out[1, 1, 1] == 255


def test_float_image(tmp_path):
    f = np.array([[0.0, 0.5, 1.0]], np.float32)
    p = tmp_path / "f.tif"
    Image.fromarray(f, mode="F").save(p)
    out = load_image(p)
    np.testing.assert_array_equal(out[0, :, 0], [0, 128, 255])


def test_rgba_composited_on_white(tmp_path):
    a = np.zeros((2, 2, 4), np.uint8)
    a[..., 0] = 255            # red everywhere underneath
    a[0, 0, 3] = 255           # opaque red
    a[0, 1, 3] = 0             # fully transparent: background shows
    a[1, :, 3] = 128           # half
    p = tmp_path / "rgba.png"
    Image.fromarray(a, mode="RGBA").save(p)
    out = load_image(p)
    assert out.shape == (2, 2, 3)
    np.testing.assert_array_equal(out[0, 0], [255, 0, 0])
    np.testing.assert_array_equal(out[0, 1], BACKGROUND)
    assert out[1, 0, 0] == 255 and 120 <= out[1, 0, 1] <= 135


def test_la_grayscale_alpha(tmp_path):
    a = np.zeros((1, 2, 2), np.uint8)
    a[0, 0] = (10, 255)
    a[0, 1] = (10, 0)
    p = tmp_path / "la.png"
    Image.fromarray(a, mode="LA").save(p)
    out = load_image(p)
    np.testing.assert_array_equal(out[0, 0], [10, 10, 10])
    np.testing.assert_array_equal(out[0, 1], BACKGROUND)


def test_palette_with_transparency(tmp_path):
    img = Image.new("P", (2, 1))
    img.putpalette([0, 0, 255] + [255, 0, 0] + [0] * (254 * 3))
    img.putpixel((0, 0), 0)
    img.putpixel((1, 0), 1)
    p = tmp_path / "pal.gif"
    img.save(p, transparency=1)
    out = load_image(p)
    np.testing.assert_array_equal(out[0, 0], [0, 0, 255])
    np.testing.assert_array_equal(out[0, 1], BACKGROUND)


def test_palette_plain(tmp_path):
    img = Image.new("P", (3, 2))
    img.putpalette([10, 20, 30] * 256)
    p = tmp_path / "pal.png"
    img.save(p)
    out = load_image(p)
    assert (out == [10, 20, 30]).all()


def test_cmyk_jpeg(tmp_path):
    p = tmp_path / "cmyk.jpg"
    # pure cyan in CMYK -> (0, 255, 255) in RGB
    Image.new("CMYK", (8, 8), (255, 0, 0, 0)).save(p, quality=95)
    assert Image.open(p).mode == "CMYK"
    out = load_image(p)
    assert out.shape == (8, 8, 3)
    assert out[..., 0].max() < 20 and out[..., 1].min() > 235 and out[..., 2].min() > 235


def test_exif_orientation_applied(tmp_path):
    a = np.zeros((4, 6, 3), np.uint8)  # stored 4 high x 6 wide, marked top-left
    a[0, 0] = (255, 0, 0)
    img = Image.fromarray(a)
    exif = img.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    p = tmp_path / "rot.jpg"
    img.save(p, exif=exif.tobytes(), quality=100, subsampling=0)
    out = load_image(p)
    assert out.shape == (6, 4, 3)  # displayed portrait
    # after a 90 degree clockwise rotation the stored top-left corner is at the top-right
    assert out[0, 3, 0] > 200 and out[0, 0, 0] < 50


def test_exif_orientation_png_mirror(tmp_path):
    a = np.zeros((2, 3, 3), np.uint8)
    a[0, 0] = 255
    img = Image.fromarray(a)
    exif = img.getexif()
    exif[0x0112] = 2  # mirrored horizontally
    p = tmp_path / "m.png"
    img.save(p, exif=exif.tobytes())
    out = load_image(p)
    assert out.shape == (2, 3, 3)
    assert (out[0, 2] == 255).all() and (out[0, 0] == 0).all()


def test_missing_file():
    with pytest.raises(UserError, match="nope.jpg: no such file"):
        load_image("/definitely/nope.jpg")


def test_folder_is_not_an_image(tmp_path):
    with pytest.raises(UserError, match="is a folder"):
        load_image(tmp_path)


def test_not_an_image(tmp_path):
    p = tmp_path / "notes.jpg"
    p.write_text("hello, I am text\n")
    with pytest.raises(UserError, match=r"notes\.jpg: not an image"):
        load_image(p)


def test_empty_file(tmp_path):
    p = tmp_path / "empty.png"
    p.write_bytes(b"")
    with pytest.raises(UserError, match="empty.png"):
        load_image(p)


def _cut_jpeg(tmp_path, frac=1 / 3, progressive=False):
    rng = np.random.default_rng(0)
    p = tmp_path / "full.jpg"
    img = np.zeros((64, 80, 3), np.uint8)
    img[:, :, 0] = np.arange(80, dtype=np.uint8)[None, :] * 3
    img[:, :, 1] = rng.integers(0, 255, (64, 80), dtype=np.uint8)
    Image.fromarray(img).save(p, quality=90, progressive=progressive)
    data = p.read_bytes()
    q = tmp_path / "cut.jpg"
    q.write_bytes(data[: int(len(data) * frac)])
    return q


@pytest.mark.parametrize("progressive", [False, True])
def test_truncated_jpeg_decoded_as_opencv(tmp_path, progressive):
    """A truncated JPEG: what cv2.imread gives (the rows present, the rest grey), one warning, the file untouched."""
    import cv2

    q = _cut_jpeg(tmp_path, progressive=progressive)
    before = q.read_bytes()
    with pytest.warns(TruncatedImageWarning, match=r"cut\.jpg: truncated JPEG decoded as OpenCV") as rec:
        out = load_image(q)
    assert len(rec) == 1
    ref = cv2.imread(str(q))[:, :, ::-1]
    assert out.shape == ref.shape and np.array_equal(out, ref)
    if not progressive:  # a progressive file has the first scans of every row
        assert (out[-1] == 128).all()  # libjpeg's grey for the missing part
    assert q.read_bytes() == before
    from PIL import ImageFile
    assert not ImageFile.LOAD_TRUNCATED_IMAGES  # nothing global set


def test_truncated_jpeg_strict_refused(tmp_path):
    import warnings

    q = _cut_jpeg(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", InputWarning)
        with pytest.raises(TruncatedImageWarning, match=r"cut\.jpg"):
            load_image(q)


def test_truncated_png_and_header_only_jpeg_refused(tmp_path):
    """OpenCV refuses a truncated PNG and a JPEG cut inside its header: so does load_image (one line)."""
    p = tmp_path / "full.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(p)
    q = tmp_path / "cut.png"
    q.write_bytes(p.read_bytes()[:2000])
    with pytest.raises(UserError, match=r"cut\.png: cannot read"):
        load_image(q)
    h = _cut_jpeg(tmp_path, frac=0.02)
    with pytest.raises(UserError, match=r"cut\.jpg: cannot read"):
        load_image(h)


def test_image_reads_one_counted_warning(tmp_path):
    """Many damaged files: one warning for the truncated (count + first names), one for the undecodable."""
    import warnings

    q = _cut_jpeg(tmp_path)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    reads = ImageReads("dataset d", "left out of training")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        assert reads.load(str(q)) is not None
        assert reads.load(str(q)) is not None   # read again (next epoch): counted once
        assert reads.load(str(bad)) is None
        assert not seen
        reads.report()
    msgs = [str(w.message) for w in seen]
    assert len(msgs) == 2, msgs
    assert msgs[0].startswith("dataset d: 1 truncated JPEG(s) decoded as OpenCV") and "cut.jpg" in msgs[0]
    assert msgs[1].startswith("dataset d: 1 image(s) that cannot be decoded left out of training") and "bad.jpg" in msgs[1]
    assert seen[0].category is TruncatedImageWarning and seen[1].category is UnreadableImageWarning


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root can read anything")
def test_unreadable_file(tmp_path):
    p = tmp_path / "secret.png"
    Image.new("RGB", (2, 2)).save(p)
    p.chmod(0)
    try:
        with pytest.raises(UserError, match="secret.png"):
            load_image(p)
    finally:
        p.chmod(0o644)


def test_list_images_files_and_folders(tmp_path):
    d = tmp_path / "imgs"
    (d / "sub").mkdir(parents=True)
    for name in ["b.JPG", "a.png", "sub/c.jpeg", ".hidden.jpg", "readme.txt"]:
        (d / name).write_bytes(b"x")
    single = tmp_path / "z.bmp"
    single.write_bytes(b"x")
    out = list_images([str(single), str(d), str(d / "a.png")])
    rel = [os.path.relpath(p, tmp_path) for p in out]
    assert rel == ["z.bmp", "imgs/a.png", "imgs/b.JPG", "imgs/sub/c.jpeg"]
    flat = list_images([d], recursive=False)
    assert [os.path.basename(p) for p in flat] == ["a.png", "b.JPG"]


def test_list_images_empty_folder(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(UserError, match="no image files"):
        list_images([str(tmp_path)])


def test_list_images_missing_and_none(tmp_path):
    with pytest.raises(UserError, match="no such file or folder"):
        list_images([str(tmp_path / "gone")])
    with pytest.raises(UserError, match="no image files or folders given"):
        list_images([])


def test_16bit_rgb_png(tmp_path):
    import cv2

    bgr = np.zeros((2, 2, 3), np.uint16)
    bgr[0, 0] = (65535, 0, 257 * 128)  # OpenCV writes BGR: blue full, red half
    p = tmp_path / "rgb16.png"
    cv2.imwrite(str(p), bgr)
    out = load_image(p)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out[0, 0], [128, 0, 255])


def test_links_to_itself_and_fifos_are_visited_once_and_never_opened(tmp_path):
    import os
    import shutil

    from detector.io.images import list_images, walk_images

    d = tmp_path / "d"
    d.mkdir()
    src = os.path.join(os.path.dirname(__file__), "..", "..", "data", "proposals", "BloodImage_00000.jpg")
    shutil.copy(src, d / "a.jpg")
    os.symlink(".", d / "self1")
    os.symlink(".", d / "self2")
    os.symlink("a.jpg", d / "b.jpg")   # a second name of one image
    os.mkfifo(d / "x.jpg")             # would block a reader forever
    assert walk_images(str(d)) == [str(d / "a.jpg")]
    assert list_images([str(d)]) == [str(d / "a.jpg")]
    with pytest.raises(UserError, match="not a regular file"):
        list_images([str(d / "x.jpg")])
