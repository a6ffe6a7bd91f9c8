"""Annotated image sizes that disagree with the image (issue 20): the image's own size (EXIF
orientation applied, what load_image returns) wins, with ONE counted warning per dataset; an
annotation of an EXIF-rotated photo's stored pixels has its boxes rotated with the image; the
sizes are kept in the size index (images not opened again on the next run)."""

import os
import re
import shutil
import warnings

import numpy as np
import pytest
from PIL import Image

from backbone.errors import InputWarning
from detector.io.datasets.coco import coco_from_dict
from detector.io.datasets.common import ImageSizeWarning, image_header, image_size, orient_boxes
from detector.io.datasets.index import ImageSizeIndex, size_index_path
from detector.io.datasets.voc import read_voc
from detector.io.datasets.voc_xml import read_voc_xml
from detector.io.datasets.yolo import read_yolo
from detector.io.images import load_image

ID = "BloodImage_00000"   # 640 x 480, 20 boxes


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GOOGLENET_DET_CACHE", str(tmp_path / "cache"))


def _voc(tmp_path, test_data, size=None, image=None):
    """voc-mini's BloodImage_00000 alone in a VOC layout; ``size``: its <size> replaced,
    ``image``: a PIL image saved in place of the photo (with its ``exif``)."""
    root = tmp_path / "voc"
    (root / "Annotations").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    (root / "ImageSets" / "Main").mkdir(parents=True)
    (root / "ImageSets" / "Main" / "train.txt").write_text(ID + "\n")
    xml = (test_data / "voc-mini" / "Annotations" / f"{ID}.xml").read_text()
    if size is not None:
        xml = re.sub(r"<width>\d+</width>", f"<width>{size[0]}</width>", xml, count=1)
        xml = re.sub(r"<height>\d+</height>", f"<height>{size[1]}</height>", xml, count=1)
    (root / "Annotations" / f"{ID}.xml").write_text(xml)
    if image is None:
        shutil.copy(test_data / "voc-mini" / "JPEGImages" / f"{ID}.jpg", root / "JPEGImages" / f"{ID}.jpg")
    else:
        image[0].save(root / "JPEGImages" / f"{ID}.jpg", exif=image[1], quality=95)
    return root


def _read(root):
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        ds = read_voc(str(root), "train")
    return ds, seen


def _size_warnings(seen):
    return [str(w.message) for w in seen if issubclass(w.category, ImageSizeWarning)]


def test_the_photo_as_it_is(tmp_path, test_data):
    ds, seen = _read(_voc(tmp_path, test_data))
    r = ds.records[0]
    assert (r.width, r.height, len(r.boxes)) == (640, 480, 20) and not _size_warnings(seen)


def test_smaller_size_the_image_wins_no_box_dropped(tmp_path, test_data):
    """<size> 320x240 on a 640x480 JPEG: was most of its boxes dropped as outside a 320x240 image."""
    ds, seen = _read(_voc(tmp_path, test_data, (320, 240)))
    r = ds.records[0]
    assert (r.width, r.height, len(r.boxes)) == (640, 480, 20)
    msgs = _size_warnings(seen)
    assert len(msgs) == 1, msgs
    assert msgs[0].endswith(f"1 annotated image size(s) that disagree with the image (the image's own size used, the "
                            f"boxes kept in pixels); e.g. {ID}.xml: <size> 320x240, {ID}.jpg is 640x480")
    assert not any("dropped" in str(w.message) and "outside" in str(w.message) for w in seen)


def test_larger_size_the_image_wins(tmp_path, test_data):
    """<size> 1280x960: was kept silently (MultiBox normalised the boxes by it)."""
    ds, seen = _read(_voc(tmp_path, test_data, (1280, 960)))
    r = ds.records[0]
    assert (r.width, r.height, len(r.boxes)) == (640, 480, 20)
    assert len(_size_warnings(seen)) == 1 and "<size> 1280x960" in _size_warnings(seen)[0]


def _exif(orientation):
    ex = Image.Exif()
    ex[0x0112] = orientation
    return ex


def test_stored_size_of_a_rotated_photo_rotates_the_boxes(tmp_path, test_data):
    """<size> 640x480 = the stored size of a photo with EXIF orientation 6 (shown 480x640): the
    boxes are of the stored pixels, and turn with them (was: 4 boxes dropped outside 640x480)."""
    photo = Image.open(test_data / "voc-mini" / "JPEGImages" / f"{ID}.jpg")
    plain, _ = _read(_voc(tmp_path / "plain", test_data))
    ds, seen = _read(_voc(tmp_path, test_data, image=(photo, _exif(6))))
    r = ds.records[0]
    assert (r.width, r.height) == (480, 640) == load_image(r.path).shape[1::-1]
    expect = np.clip(orient_boxes(plain.records[0].boxes, 640, 480, 6), 0, [480, 640, 480, 640])
    assert len(r.boxes) == 20 and np.allclose(r.boxes, expect)
    msgs = _size_warnings(seen)
    assert len(msgs) == 1 and "1 annotation(s) of the stored pixels of an EXIF-rotated photo (boxes rotated" in msgs[0]
    assert "(EXIF orientation 6)" in msgs[0]


def test_shown_size_of_a_rotated_photo_is_taken_as_is(tmp_path, test_data):
    """<size> 480x640 = the size shown: the boxes are of the shown image (no warning)."""
    photo = Image.open(test_data / "voc-mini" / "JPEGImages" / f"{ID}.jpg")
    ds, seen = _read(_voc(tmp_path, test_data, size=(480, 640), image=(photo, _exif(6))))
    assert (ds.records[0].width, ds.records[0].height) == (480, 640) and not _size_warnings(seen)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_image_size_and_orient_boxes_agree_with_load_image(tmp_path, orientation):
    """For every EXIF orientation: image_size (header only) is load_image's size, and
    orient_boxes moves a box as exif_transpose moves the pixels."""
    a = np.zeros((30, 50, 3), np.uint8)      # stored 50 x 30, a white box x 5..17, y 3..11
    a[3:11, 5:17] = 255
    p = tmp_path / "o.png"
    Image.fromarray(a).save(p, exif=_exif(orientation))
    out = load_image(p)
    assert image_size(str(p)) == (out.shape[1], out.shape[0])
    assert image_header(str(p)) == (50, 30, orientation)
    ys, xs = np.nonzero(out[:, :, 0] > 127)
    shown = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
    assert orient_boxes(np.array([[5, 3, 17, 11]]), 50, 30, orientation).tolist() == [shown]


def test_jpeg_orientation_read_without_decoding(tmp_path, test_data):
    photo = Image.open(test_data / "voc-mini" / "JPEGImages" / f"{ID}.jpg")
    p = tmp_path / "r.jpg"
    photo.save(p, exif=_exif(8))
    assert image_size(str(p)) == (480, 640) == load_image(p).shape[1::-1]


def test_loose_voc_xml_stored_size_of_a_rotated_photo(tmp_path, test_data):
    """The LabelImg layout (annotations/ + images/) gets the same rule."""
    root = tmp_path / "li"
    shutil.copytree(test_data / "layouts" / "flat_xml", root)
    img = root / "images" / "BloodImage_00001.jpg"
    w, h = Image.open(img).size
    Image.open(img).save(img, exif=_exif(8), quality=95)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        ds = read_voc_xml(str(root), "train")
    r = next(r for r in ds.records if r.image_id == "BloodImage_00001")
    assert (r.width, r.height) == (h, w)
    assert len(_size_warnings(seen)) == 1 and "EXIF orientation 8" in _size_warnings(seen)[0]


def test_coco_width_height_disagreeing_with_the_image(tmp_path, test_data):
    shutil.copy(test_data / "voc-mini" / "JPEGImages" / f"{ID}.jpg", tmp_path / "a.jpg")
    doc = {"images": [{"id": 1, "file_name": "a.jpg", "width": 320, "height": 240}],
           "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [400, 300, 100, 100]}],
           "categories": [{"id": 1, "name": "cell"}]}
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        ds = coco_from_dict(doc, "gt.json", None, image_dir=str(tmp_path))
    r = ds.records[0]
    assert (r.width, r.height) == (640, 480) and r.boxes.tolist() == [[400, 300, 500, 400]]
    assert len(_size_warnings(seen)) == 1 and "width x height 320x240, a.jpg is 640x480" in _size_warnings(seen)[0]
    # annotations alone (no image folder): as annotated, nothing to compare with
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        ds = coco_from_dict(doc, "gt.json", None)
    assert (ds.records[0].width, ds.records[0].height) == (320, 240)
    assert not _size_warnings(seen) and len(seen) == 1   # its box is outside 320x240: that warning only


def test_strict_refuses_a_disagreeing_size(tmp_path, test_data):
    root = _voc(tmp_path, test_data, (320, 240))
    with warnings.catch_warnings():
        warnings.simplefilter("error", InputWarning)
        with pytest.raises(ImageSizeWarning, match=r"<size> 320x240, BloodImage_00000\.jpg is 640x480"):
            read_voc(str(root), "train")


def test_sizes_kept_in_the_size_index(tmp_path, test_data, monkeypatch):
    """The second read opens no image header; a changed image is read again."""
    root = _voc(tmp_path, test_data)
    read_voc(str(root), "train")
    index = size_index_path(str(root))
    assert os.path.isfile(index)
    calls = []
    real = ImageSizeIndex.get

    def counting(self, path):
        before = self.read_count
        out = real(self, path)
        calls.append(self.read_count - before)
        return out

    monkeypatch.setattr(ImageSizeIndex, "get", counting)
    monkeypatch.setattr(ImageSizeIndex, "__call__", counting)
    read_voc(str(root), "train")
    assert calls == [0]                                           # from the index
    img = root / "JPEGImages" / f"{ID}.jpg"
    Image.open(img).resize((320, 240)).save(img)
    calls.clear()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        ds = read_voc(str(root), "train")
    assert calls == [1] and (ds.records[0].width, ds.records[0].height) == (320, 240)
    assert len(_size_warnings(seen)) == 1                         # <size> 640x480 now disagrees


def test_a_damaged_size_index_is_rebuilt_with_one_warning(tmp_path, test_data):
    root = _voc(tmp_path, test_data)
    read_voc(str(root), "train")
    index = size_index_path(str(root))
    with open(index, "wb") as f:
        f.write(b"garbage")
    ds, seen = _read(root)
    assert ds.records[0].width == 640
    msgs = [str(w.message) for w in seen if "image size index" in str(w.message)]
    assert len(msgs) == 1 and "unusable" in msgs[0] and "rebuilt from the image headers" in msgs[0]
    ds, seen = _read(root)
    assert not [w for w in seen if "image size index" in str(w.message)]


def test_yolo_boxes_are_of_the_shown_image(tmp_path, test_data):
    """YOLO labels are normalised to the image ultralytics sees (EXIF applied: exif_size)."""
    root = tmp_path / "yolo"
    shutil.copytree(test_data / "layouts" / "yolo", root)
    img = root / "images" / "train" / "BloodImage_00003.jpg"
    w, h = Image.open(img).size
    plain = next(r for r in read_yolo(str(test_data / "layouts" / "yolo"), "train").records if r.path.endswith(img.name))
    Image.open(img).save(img, exif=_exif(6), quality=95)
    r = next(r for r in read_yolo(str(root), "train").records if r.path.endswith(img.name))
    assert (r.width, r.height) == (h, w) == load_image(r.path).shape[1::-1]
    assert np.allclose(r.boxes, plain.boxes * np.array([h / w, w / h, h / w, w / h], np.float32), atol=1e-3)
