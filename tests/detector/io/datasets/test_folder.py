"""detector.io.datasets.folder: a flat folder of VOC XMLs and images, its written fixed-seed
split (in the cache when the root is read-only), and bad input."""

import os
import shutil
import warnings

import pytest

from backbone.errors import UserError
from detector.config import DataConfig
from detector.io.datasets import DatasetWarning, folder, load_dataset


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
