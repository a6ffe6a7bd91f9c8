"""ILSVRC DET, COCO and plain-folder layouts of load_dataset."""

import json
import os
import shutil
import warnings

import numpy as np
import pytest

from backbone.errors import UserError
from detector.datasets import DatasetWarning, folder, ground_truth, load_dataset
from detector.schema import DataConfig

from .helpers import ilsvrc_layout

MAP_DET = "n02672831 1 accordion\nn02691156 2 airplane\nn02219486 3 ant\n"
WNID = {"RBC": "n02691156", "WBC": "n02219486"}


@pytest.fixture
def ilsvrc_root(test_data, tmp_path):
    """voc-mini rebuilt in the ILSVRC DET layout (RBC -> airplane, WBC -> ant; image 3 has no XML)."""
    return ilsvrc_layout(test_data / "voc-mini", tmp_path / "ILSVRC",
                         ["BloodImage_00000", "BloodImage_00001", "BloodImage_00338"], 2, WNID, MAP_DET, first_index=10)


def test_ilsvrc_layout(ilsvrc_root):
    (ilsvrc_root / "black.txt").write_text("11 n02691156\n10 3\n")
    ds = load_dataset(DataConfig(format="ilsvrc", root=str(ilsvrc_root), blacklist="black.txt"), "val")
    assert ds.classes == ["n02672831", "n02691156", "n02219486"]
    assert ds.display_names == ["accordion", "airplane", "ant"] and ds.class_ids == [1, 2, 3]
    assert [r.devkit_index for r in ds.records] == [10, 11, 12]
    assert ds[0].blacklist == frozenset({3}) and ds[1].blacklist == frozenset({2}) and ds[2].blacklist == frozenset()
    assert ds[0].labels[0] == 3 and set(ds[0].labels[1:].tolist()) == {2}
    np.testing.assert_array_equal(ds[0].boxes[0], [259, 176, 491, 376])
    assert len(ds[2].boxes) == 0 and (ds[2].width, ds[2].height) == (640, 480)   # no XML: a negative image
    assert ds[0].path.endswith("Data/DET/val/BloodImage_00000.JPEG")
    assert ground_truth(ds)[1]["blacklist"] == {2}


def test_ilsvrc_errors(ilsvrc_root):
    (ilsvrc_root / "map_det.txt").unlink()
    with pytest.raises(UserError, match="no map_det.txt"):
        load_dataset(DataConfig(format="ilsvrc", root=str(ilsvrc_root)), "val")
    (ilsvrc_root / "m.txt").write_text("n02672831 1 accordion\n")
    with pytest.raises(UserError, match=r"BloodImage_00000\.xml line \d+: unknown class 'n02219486'"):
        load_dataset(DataConfig(format="ilsvrc", root=str(ilsvrc_root), classes_file="m.txt"), "val")
    (ilsvrc_root / "map_det.txt").write_text(MAP_DET)
    (ilsvrc_root / "black.txt").write_text("11 n99999999\n")
    with pytest.raises(UserError, match=r"black\.txt line 1: unknown class 'n99999999'"):
        load_dataset(DataConfig(format="ilsvrc", root=str(ilsvrc_root), blacklist="black.txt"), "val")
    with pytest.raises(UserError, match=r"split file .*train\.txt: no such file"):
        load_dataset(DataConfig(format="ilsvrc", root=str(ilsvrc_root)), "train")


def _coco(tmp_path, anns, cats=None):
    root = tmp_path / "coco"
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / "val").mkdir(exist_ok=True)
    data = {"images": [{"id": 7, "file_name": "a.jpg", "width": 100, "height": 50},
                       {"id": 9, "file_name": "b.jpg", "width": 100, "height": 50}],
            "categories": cats or [{"id": 18, "name": "dog"}, {"id": 3, "name": "car"}],
            "annotations": anns}
    (root / "annotations" / "instances_val.json").write_text(json.dumps(data))
    return root


def test_coco_layout(tmp_path):
    root = _coco(tmp_path, [
        {"id": 1, "image_id": 7, "category_id": 18, "bbox": [10, 5, 20, 10], "iscrowd": 0},
        {"id": 2, "image_id": 7, "category_id": 3, "bbox": [90, 40, 20, 20], "iscrowd": 1},   # clipped
        {"id": 3, "image_id": 9, "category_id": 3, "bbox": [1, 1, 0, 5], "iscrowd": 0},      # degenerate
    ])
    with pytest.warns(DatasetWarning, match=r"1 box\(es\) dropped .* 1 clipped"):
        ds = load_dataset(DataConfig(format="coco", root=str(root)), "val")
    assert ds.classes == ["car", "dog"] and ds.class_ids == [3, 18]   # category ids ascending
    assert [r.image_id for r in ds.records] == ["7", "9"]
    r = ds[0]
    np.testing.assert_array_equal(r.boxes, [[10, 5, 30, 15], [90, 40, 100, 50]])
    assert r.labels.tolist() == [2, 1] and r.difficult.tolist() == [False, True]
    assert r.path == str(root / "val" / "a.jpg") and len(ds[1].boxes) == 0
    with pytest.warns(DatasetWarning):
        ds2 = load_dataset(DataConfig(format="coco", root=str(root), classes=["dog", "car"]), "val")
    assert ds2.class_ids == [18, 3] and ds2[0].labels.tolist() == [1, 2]


def test_coco_errors(tmp_path):
    root = _coco(tmp_path, [{"id": 1, "image_id": 7, "category_id": 5, "bbox": [1, 1, 2, 2]}])
    with pytest.raises(UserError, match="unknown category id 5"):
        load_dataset(DataConfig(format="coco", root=str(root)), "val")
    root = _coco(tmp_path, [{"id": 1, "image_id": 8, "category_id": 3, "bbox": [1, 1, 2, 2]}])
    with pytest.raises(UserError, match="image id 8, which is not in 'images'"):
        load_dataset(DataConfig(format="coco", root=str(root)), "val")
    root = _coco(tmp_path, [{"id": 1, "image_id": 7, "category_id": 3, "bbox": [1, 1, float("nan"), 2]}])
    with pytest.raises(UserError, match="not 4 finite numbers"):
        load_dataset(DataConfig(format="coco", root=str(root)), "val")
    with pytest.raises(UserError, match="class 'cat' of the config is not a category"):
        load_dataset(DataConfig(format="coco", root=str(root), classes=["cat"]), "val")
    (root / "annotations" / "instances_val.json").write_text('{"images": [\n{"id": 1},\n]}')
    with pytest.raises(UserError, match=r"instances_val\.json line 3: malformed JSON"):
        load_dataset(DataConfig(format="coco", root=str(root)), "val")
    with pytest.raises(UserError, match="COCO annotations .*instances_test.json: no such file"):
        load_dataset(DataConfig(format="coco", root=str(root)), "test")


@pytest.fixture
def plain_folder(test_data, tmp_path):
    """20 annotated images in one flat folder (voc-mini's three, copied under new ids)."""
    root = tmp_path / "plain"
    root.mkdir()
    src = test_data / "voc-mini"
    for k in range(20):
        i = ["BloodImage_00000", "BloodImage_00001"][k % 2]
        shutil.copy(src / "Annotations" / f"{i}.xml", root / f"img{k:02d}.xml")
        shutil.copy(src / "JPEGImages" / f"{i}.jpg", root / f"img{k:02d}.jpg")
    return root


def test_folder_split_is_written_and_reproducible(plain_folder):
    cfg = DataConfig(format="folder", root=str(plain_folder))
    tr = load_dataset(cfg, "train")
    va = load_dataset(cfg, "val")
    te = load_dataset(cfg, "test")
    ids = [{r.image_id for r in d.records} for d in (tr, va, te)]
    assert [len(s) for s in ids] == [14, 3, 3]
    assert not (ids[0] & ids[1]) and not (ids[0] & ids[2]) and not (ids[1] & ids[2])
    assert len(load_dataset(cfg, "trainval")) == 17
    assert (plain_folder / "splits" / "train.txt").read_text().split() == sorted(ids[0])
    assert tr.classes == ["RBC", "WBC"] and tr[0].path.endswith(".jpg")
    # the same fixed-seed split from scratch, and the written files win over any recomputation
    assert folder.make_splits(sorted(ids[0] | ids[1] | ids[2]))["train"] == sorted(ids[0])
    # files added later are in no split: counted in a warning, the split unchanged
    shutil.copy(plain_folder / "img00.xml", plain_folder / "img99.xml")
    with pytest.warns(DatasetWarning, match=r"1 annotation file\(s\) are in no split file .*img99"):
        assert {r.image_id for r in load_dataset(cfg, "val").records} == ids[1]
    (plain_folder / "img99.xml").unlink()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert {r.image_id for r in load_dataset(cfg, "test").records} == ids[2]


def test_folder_split_goes_to_the_cache_when_the_root_is_read_only(plain_folder, tmp_path, monkeypatch):
    monkeypatch.setenv("GOOGLENET_DET_CACHE", str(tmp_path / "cache"))
    real = os.access
    monkeypatch.setattr(folder.os, "access", lambda p, m: False if str(p) == str(plain_folder) else real(p, m))
    ds = load_dataset(DataConfig(format="folder", root=str(plain_folder)), "train")
    assert len(ds) == 14 and not (plain_folder / "splits").exists()
    assert len(list((tmp_path / "cache" / "splits").glob("*/train.txt"))) == 1


def test_folder_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no \\*.xml annotation files"):
        load_dataset(DataConfig(format="folder", root=str(tmp_path / "empty")), "train")
