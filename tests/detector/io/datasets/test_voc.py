"""detector.io.datasets.voc: the VOC layout, pixel conversion, box sanitizing, class lists, bad input."""

import shutil
import warnings

import numpy as np
import pytest

from backbone.errors import UserError
from detector.config import DataConfig
from detector.io.datasets import DatasetWarning, load_dataset


@pytest.fixture
def voc_mini(test_data, tmp_path):
    """A writable copy of tests/data/voc-mini (3 BCCD images)."""
    dst = tmp_path / "voc"
    shutil.copytree(test_data / "voc-mini", dst)
    return dst


def _load(root, split="train", **kw):
    return load_dataset(DataConfig(format="voc", root=str(root), **kw), split)


def test_voc_reader_converts_pixels_and_reports_degenerate_boxes(test_data):
    with pytest.warns(DatasetWarning) as rec:
        ds = _load(test_data / "voc-mini")
    assert len(rec) == 1
    msg = str(rec[0].message)
    assert "1 box(es) dropped" in msg and "BloodImage_00338.xml" in msg and "0 clipped" in msg
    assert ds.classes == ["RBC", "WBC"]          # sorted names found in all annotations
    assert [r.image_id for r in ds.records] == ["BloodImage_00000", "BloodImage_00338"]
    r = ds[0]
    assert r.path == str((test_data / "voc-mini" / "JPEGImages" / "BloodImage_00000.jpg").resolve())
    assert (r.width, r.height) == (640, 480)
    # first object: WBC xmin 260 ymin 177 xmax 491 ymax 376 (1-based inclusive)
    np.testing.assert_array_equal(r.boxes[0], [259, 176, 491, 376])
    assert r.labels[0] == 2 and r.labels[1] == 1
    assert r.boxes.dtype == np.float32 and r.labels.dtype == np.int64
    assert len(r.boxes) == 20 and not r.difficult.any()
    assert len(ds[1].boxes) == 13                 # 14 objects, the single-point one dropped


def test_voc_split_without_defects_warns_nothing(test_data):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = _load(test_data / "voc-mini", "test")
    assert len(ds) == 1 and ds.classes == ["RBC", "WBC"]


def test_configured_classes_and_class_file(test_data, tmp_path):
    ds = _load(test_data / "voc-mini", "test", classes=["WBC", "RBC", "Platelets"])
    assert ds.classes == ["WBC", "RBC", "Platelets"]
    assert set(ds[0].labels.tolist()) <= {1, 2}
    f = tmp_path / "classes.txt"
    f.write_text("Platelets\nRBC\nWBC\n")
    ds2 = _load(test_data / "voc-mini", "test", classes_file=str(f))
    assert ds2.classes == ["Platelets", "RBC", "WBC"]


def test_unknown_class_name_names_file_and_line(test_data):
    with pytest.raises(UserError, match=r"BloodImage_00001\.xml line \d+: unknown class 'RBC'"):
        _load(test_data / "voc-mini", "test", classes=["WBC"])


def test_missing_split_file(test_data):
    with pytest.raises(UserError, match=r"split file .*nosuch\.txt: no such file"):
        _load(test_data / "voc-mini", "nosuch")


def test_malformed_xml_names_file_and_line(voc_mini):
    p = voc_mini / "Annotations" / "BloodImage_00001.xml"
    lines = p.read_text().splitlines()
    lines[5] = lines[5].replace("</", "<")           # break a closing tag on line 6
    p.write_text("\n".join(lines))
    with pytest.raises(UserError, match=r"BloodImage_00001\.xml line \d+: malformed XML"):
        _load(voc_mini, "test")


def test_non_numeric_coordinate_names_line(voc_mini):
    p = voc_mini / "Annotations" / "BloodImage_00001.xml"
    text = p.read_text()
    i = text.index("<xmin>")
    line = text[:i].count("\n") + 1
    p.write_text(text[:i] + "<xmin>abc" + text[text.index("</xmin>", i):])
    with pytest.raises(UserError, match=rf"BloodImage_00001\.xml line {line}: <xmin> is not a number"):
        _load(voc_mini, "test")


def test_clipping_and_size_from_image_header(voc_mini):
    p = voc_mini / "Annotations" / "BloodImage_00001.xml"
    text = p.read_text()
    # drop the <size> block: width/height come from the JPEG header
    s, e = text.index("<size>"), text.index("</size>") + len("</size>")
    text = text[:s] + text[e:]
    # first box runs off the right edge, second lies wholly outside the image
    i = text.index("<xmax>")
    text = text[:i] + "<xmax>700" + text[text.index("</xmax>", i):]
    j = text.index("<xmin>", text.index("</bndbox>"))
    k = text.index("</bndbox>", j)
    text = text[:j] + "<xmin>900</xmin><ymin>10</ymin><xmax>950</xmax><ymax>20</ymax>" + text[k:]
    p.write_text(text)
    with pytest.warns(DatasetWarning, match=r"1 box\(es\) dropped .* 1 clipped"):
        ds = _load(voc_mini, "test")
    r = ds[0]
    assert (r.width, r.height) == (640, 480)
    assert r.boxes[0, 2] == 640 and len(r.boxes) == 18


def test_missing_annotation_or_image(voc_mini):
    (voc_mini / "ImageSets" / "Main" / "test.txt").write_text("BloodImage_00001\nBloodImage_09999\n")
    with pytest.raises(UserError, match="'BloodImage_09999' has no annotation"):
        _load(voc_mini, "test")
    (voc_mini / "ImageSets" / "Main" / "test.txt").write_text("BloodImage_00001\n")
    (voc_mini / "JPEGImages" / "BloodImage_00001.jpg").unlink()
    with pytest.raises(UserError, match="no image for id 'BloodImage_00001'"):
        _load(voc_mini, "test")


@pytest.mark.shared
def test_bccd_full(bccd_root):
    with pytest.warns(DatasetWarning, match=r"2 box\(es\) dropped"):
        sets = {s: _load(bccd_root, s) for s in ("trainval",)}
    ds = sets["trainval"]
    assert ds.classes == ["Platelets", "RBC", "WBC"]
    assert len(ds) == 292
    boxes = 0
    for s, n in (("train", 205), ("val", 87), ("test", 72)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DatasetWarning)
            d = _load(bccd_root, s)
        assert len(d) == n and d.classes == ["Platelets", "RBC", "WBC"]
        boxes += sum(len(r.boxes) for r in d.records)
    assert boxes == 4888 - 2   # the data README's count minus the two single-point boxes
