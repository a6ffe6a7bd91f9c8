"""detector.classification.data: object crops of a detection dataset, image folders."""

import numpy as np
import pytest
from PIL import Image

from backbone.errors import UserError
from detector.classification.data import build_classification_set, crop_box, image_folder, object_crops
from detector.config import load_classifier_config
from detector.io.datasets.records import Dataset, ImageRecord
from tests.conftest import TEST_DATA

VOC_MINI = TEST_DATA / "voc-mini"


def test_crop_box_margin_and_clipping():
    img = np.arange(10 * 20 * 3, dtype=np.uint8).reshape(10, 20, 3)
    c = crop_box(img, [4, 2, 8, 6], margin=0.25)  # 4x4 box, 1 px each side
    np.testing.assert_array_equal(c, img[1:7, 3:9])
    c = crop_box(img, [0, 0, 20, 10], margin=0.5)
    assert c.shape == (10, 20, 3)


def test_object_crops_from_voc_mini():
    from detector.io.datasets import load_dataset

    cfg = load_classifier_config(None, ["data.format=voc", f"data.root={VOC_MINI}", "crops.margin=0.0"])
    ds = load_dataset(cfg.data, "train")
    crops = object_crops(ds, margin=0.0)
    n_boxes = sum(len(r.labels) for r in ds.records)
    assert len(crops) == n_boxes and crops.classes == ds.classes
    rec = ds.records[0]
    x1, y1, x2, y2 = rec.boxes[0]
    img, label = crops[0]
    assert img.shape[:2] == (int(np.ceil(y2)) - int(np.floor(y1)), int(np.ceil(x2)) - int(np.floor(x1)))
    assert label == rec.labels[0] - 1  # 0-based
    via_cfg = build_classification_set(cfg, "train")
    assert len(via_cfg) == len(crops)


def test_object_crops_read_on_access_equal_the_in_memory_ones():
    """A large split (ILSVRC) reads each crop when asked: the same pixels, labels and names as
    the in-memory crops, and the set holds file paths, not pixels."""
    from detector.classification.data import LazyCrop
    from detector.io.datasets import load_dataset

    cfg = load_classifier_config(None, ["data.format=voc", f"data.root={VOC_MINI}"])
    ds = load_dataset(cfg.data, "train")
    eager = object_crops(ds, margin=0.1, in_memory=True)
    lazy = object_crops(ds, margin=0.1, in_memory=False)
    assert all(isinstance(it, LazyCrop) for it in lazy.items)
    assert lazy.names == eager.names and np.array_equal(lazy.labels, eager.labels)
    for i in range(len(eager)):
        assert np.array_equal(lazy[i][0], eager[i][0])


def test_object_crops_skip_difficult_and_empty(tmp_path):
    p = tmp_path / "x.png"
    Image.new("RGB", (40, 30)).save(p)
    rec = ImageRecord("x", str(p), 40, 30, [[1, 1, 10, 10], [5, 5, 30, 25]], [1, 2], [True, False])
    crops = object_crops(Dataset(["a", "b"], [rec]), margin=0.0, skip_difficult=True)
    assert len(crops) == 1 and crops.labels.tolist() == [1]
    with pytest.raises(UserError, match="no ground-truth boxes"):
        object_crops(Dataset(["a"], [ImageRecord("y", str(p), 40, 30, np.zeros((0, 4)), [], [])]))


def test_image_folder(folder):
    ds = image_folder(str(folder), "train")
    assert ds.classes == ["blue", "green", "red"] and len(ds) == 12
    assert ds.class_counts().tolist() == [4, 4, 4]
    img, y = ds[0]
    assert img.shape == (20, 26, 3) and ds.classes[y] == "blue"
    test = image_folder(str(folder), "test", classes=["red", "green", "blue"])
    assert test.classes[test[0][1]] == "blue" and test[0][1] == 2


def test_image_folder_errors(tmp_path):
    with pytest.raises(UserError, match="no such folder"):
        image_folder(str(tmp_path / "nope"))
    (tmp_path / "flat.png").write_bytes(b"x")
    with pytest.raises(UserError, match="no class folders"):
        image_folder(str(tmp_path))
    (tmp_path / "cat").mkdir()
    (tmp_path / "cat" / "notes.txt").write_text("x")
    with pytest.raises(UserError, match="no image files in class folder 'cat'"):
        image_folder(str(tmp_path))
    (tmp_path / "cat" / "a.png").write_bytes(b"x")
    with pytest.raises(UserError, match="'cat' is not one of the classes"):
        image_folder(str(tmp_path), classes=["dog"])
