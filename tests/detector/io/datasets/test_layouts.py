"""data.format auto: layouts recognised from content, the loose-XML and YOLO readers, splits,
the summary, and bad input (fixtures: tests/data/layouts, five BCCD images, MIT; made with
bench/convert_layout.py)."""

import os
import shutil
import warnings

import numpy as np
import pytest

from backbone.errors import UserError
from detector.config import DataConfig
from detector.io.datasets import (
    DatasetWarning,
    detect_layout,
    load_dataset,
    resolve_data,
)
from detector.io.datasets.summary import summarize
from tests.conftest import ROOT

LAYOUTS = ROOT / "tests" / "data" / "layouts"
SPLITS = ("train", "val", "test")


def _copy(name, tmp_path):
    dst = tmp_path / name
    shutil.copytree(LAYOUTS / name, dst)
    return dst


def _load(root, split, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("error", DatasetWarning)   # the fixtures are clean: no clip warning
        return load_dataset(DataConfig(root=str(root), **kw), split)


@pytest.mark.parametrize("name,fmt", [("voc", "voc"), ("voc_xml", "voc_xml"), ("flat_xml", "voc_xml"),
                                      ("yolo", "yolo"), ("coco", "coco")])
def test_layout_recognised(name, fmt):
    layout = detect_layout(str(LAYOUTS / name))
    assert layout.format == fmt and layout.root == str(LAYOUTS / name)
    assert layout.line().startswith(f"data: {fmt} layout at /")


def test_yaml_path_is_a_yolo_layout():
    data, layout = resolve_data(DataConfig(root=str(LAYOUTS / "yolo" / "data.yaml")))
    assert layout.format == data.format == "yolo" and layout.evidence == "data.yaml"
    assert len(load_dataset(data, "train")) == 3


def test_explicit_format_wins(tmp_path):
    with pytest.raises(UserError, match="no Annotations/"):
        load_dataset(DataConfig(root=str(LAYOUTS / "yolo"), format="voc"), "train")


@pytest.mark.parametrize("name", ["voc_xml", "yolo", "coco"])
def test_same_records_in_every_layout(name):
    for split in SPLITS:
        ref = {os.path.basename(r.path): r for r in _load(LAYOUTS / "voc", split).records}
        ds = _load(LAYOUTS / name, split)
        assert ds.classes == ["Platelets", "RBC", "WBC"]
        got = {os.path.basename(r.path): r for r in ds.records}
        assert sorted(got) == sorted(ref)                       # same split lists
        for k, r in got.items():
            assert (r.width, r.height) == (ref[k].width, ref[k].height)
            np.testing.assert_array_equal(r.labels, ref[k].labels)
            np.testing.assert_allclose(r.boxes, ref[k].boxes, atol=1e-3)   # YOLO's 6 decimals


def test_labelimg_layout_images_beside_annotations_split_written_once(tmp_path):
    root = _copy("flat_xml", tmp_path)
    parts = {s: _load(root, s) for s in SPLITS}
    assert sorted(r.image_id for s in SPLITS for r in parts[s].records) == sorted(
        f"BloodImage_0000{i}" for i in (1, 2, 3, 4, 7))
    assert all(os.path.dirname(r.path) == str(root / "images") for r in parts["train"].records)
    written = (root / "splits" / "train.txt").read_text()
    (root / "annotations" / "extra.xml").write_text((root / "annotations" / "BloodImage_00001.xml").read_text())
    with pytest.warns(DatasetWarning, match="in no split file"):
        again = load_dataset(DataConfig(root=str(root)), "train")
    assert (root / "splits" / "train.txt").read_text() == written
    assert [r.image_id for r in again.records] == [r.image_id for r in parts["train"].records]


def test_xml_image_found_through_path_and_data_images(tmp_path):
    root = _copy("flat_xml", tmp_path)
    os.rename(root / "images", root / "pictures")
    with pytest.raises(UserError, match="neither beside it nor in a sibling"):
        load_dataset(DataConfig(root=str(root)), "train")
    assert len(load_dataset(DataConfig(root=str(root), images="pictures"), "train")) > 0


def test_yolo_without_yaml_uses_classes_txt_and_split_folders(tmp_path):
    root = _copy("yolo", tmp_path)
    (root / "data.yaml").unlink()
    with pytest.raises(UserError, match="no class names"):
        load_dataset(DataConfig(root=str(root)), "train")
    (root / "classes.txt").write_text("Platelets\nRBC\nWBC\n")
    ds = _load(root, "val")
    assert [r.image_id for r in ds.records] == ["BloodImage_00004"]
    (root / "labels" / "val" / "BloodImage_00004.txt").unlink()   # an image without labels: background
    assert len(_load(root, "val").records[0].boxes) == 0


def test_yolo_names_map_and_relative_path(tmp_path):
    root = _copy("yolo", tmp_path)
    os.makedirs(tmp_path / "cfg")
    y = tmp_path / "cfg" / "mine.yaml"
    y.write_text("path: ../yolo\ntrain: images/train\nval: ../images/val\nnames: [Platelets, RBC, WBC]\n")
    assert len(load_dataset(DataConfig(root=str(y)), "val")) == 1    # '../images/val' tried as 'images/val'
    with pytest.raises(UserError, match="no 'test' split"):
        load_dataset(DataConfig(root=str(y)), "test")
    assert root.is_dir()


# ---------------------------------------------------------------------------------------------
# bad input


def test_yolo_label_id_out_of_range_names_file_and_line(tmp_path):
    root = _copy("yolo", tmp_path)
    f = root / "labels" / "train" / "BloodImage_00002.txt"
    f.write_text(f.read_text() + "3 0.5 0.5 0.1 0.1\n")
    n = len(f.read_text().splitlines())
    with pytest.raises(UserError, match=rf"BloodImage_00002.txt line {n}: class id 3 out of range \(0..2"):
        load_dataset(DataConfig(root=str(root)), "train")


def test_yolo_coordinates_outside_clipped_in_one_warning(tmp_path):
    root = _copy("yolo", tmp_path)
    for stem in ("BloodImage_00001", "BloodImage_00002"):
        f = root / "labels" / "train" / f"{stem}.txt"
        f.write_text(f.read_text() + "1 1.05 0.5 0.2 0.2\n")
    with pytest.warns(DatasetWarning) as rec:
        ds = load_dataset(DataConfig(root=str(root)), "train")
    msgs = [str(w.message) for w in rec if issubclass(w.category, DatasetWarning)]
    assert len(msgs) == 1 and "2 clipped" in msgs[0]
    assert ds.records[0].boxes[:, 2].max() <= 160


def test_class_list_disagreeing_with_the_labels(tmp_path):
    with pytest.raises(UserError, match=r"configured classes \['A', 'B', 'C'\] disagree with .*data.yaml"):
        load_dataset(DataConfig(root=str(LAYOUTS / "yolo"), classes=["A", "B", "C"]), "train")
    with pytest.raises(UserError, match="unknown class 'RBC'"):
        load_dataset(DataConfig(root=str(LAYOUTS / "voc_xml"), classes=["Platelets", "WBC"]), "train")


def test_images_without_annotations(tmp_path):
    root = tmp_path / "pics"
    shutil.copytree(LAYOUTS / "voc" / "JPEGImages", root / "images")
    with pytest.raises(UserError, match="5 image.* but no annotations"):
        load_dataset(DataConfig(root=str(root)), "train")


def test_two_layouts_without_order_name_both(tmp_path):
    root = _copy("yolo", tmp_path)
    shutil.copy(LAYOUTS / "coco" / "annotations" / "instances_train.json", root / "_annotations.coco.json")
    with pytest.raises(UserError, match=r"both a yolo layout .* and a coco layout .*--set data.format=yolo"):
        load_dataset(DataConfig(root=str(root)), "train")
    assert len(load_dataset(DataConfig(root=str(root), format="yolo"), "train")) == 3


def test_voc_wins_over_loose_xml():
    assert detect_layout(str(LAYOUTS / "voc")).format == "voc"   # its Annotations/ are loose XML too


def test_same_stem_in_two_folders_of_one_split(tmp_path):
    root = _copy("voc_xml", tmp_path)
    os.makedirs(root / "train" / "more" / "annotations")
    shutil.copy(root / "train" / "annotations" / "BloodImage_00001.xml", root / "train" / "more" / "annotations")
    with pytest.raises(UserError, match="same name 'BloodImage_00001' in one split"):
        load_dataset(DataConfig(root=str(root)), "train")


def test_data_yaml_path_that_exists_nowhere(tmp_path):
    with pytest.raises(UserError, match="no such file or folder"):
        load_dataset(DataConfig(root=str(tmp_path / "gone" / "data.yaml")), "train")
    root = _copy("yolo", tmp_path)
    (root / "data.yaml").write_text("path: .\ntrain: images/nowhere\nnames: [Platelets, RBC, WBC]\n")
    with pytest.raises(UserError, match="train 'images/nowhere' is .*, which does not exist"):
        load_dataset(DataConfig(root=str(root)), "train")


# ---------------------------------------------------------------------------------------------
# summary


def test_summary_counts_and_warnings():
    data, layout = resolve_data(DataConfig(root=str(LAYOUTS / "voc_xml")))
    s = summarize(data, load_dataset, layout.line())
    assert list(s.splits) == ["train", "val", "test"] and s.missing == []
    assert s.counts(s._all()).tolist() == [2, 76, 5]
    text = "\n".join(s.lines())
    assert "images: 5 (train 3, val 1, test 1)" in text
    assert "class 'Platelets' has 2 box(es)" in text and "class 'RBC'" not in text.split("warning")[1]
    assert "boxes are under 16 px" in text


def test_summary_lists_a_missing_split(tmp_path):
    root = _copy("yolo", tmp_path)
    (root / "data.yaml").write_text("path: .\ntrain: images/train\nval: images/val\nnames: [Platelets, RBC, WBC]\n")
    s = summarize(resolve_data(DataConfig(root=str(root)))[0], load_dataset)
    assert s.missing == ["test"] and "no test split" in s.lines()[2]


def _coco_variant(tmp_path, layout):
    """The coco fixture moved to Roboflow's (split/_annotations.coco.json, images beside) or
    COCO 2017's (annotations/instances_<split>2017.json, <split>2017/) names."""
    src = LAYOUTS / "coco"
    root = tmp_path / layout
    for split, word in (("train", "train"), ("val", "valid" if layout == "roboflow" else "val2017"),
                        ("test", "test")):
        if layout == "roboflow":
            shutil.copytree(src / split, root / word)
            shutil.copy(src / "annotations" / f"instances_{split}.json", root / word / "_annotations.coco.json")
        else:
            word = word if split == "val" else split + "2017"
            shutil.copytree(src / split, root / word)
            os.makedirs(root / "annotations", exist_ok=True)
            shutil.copy(src / "annotations" / f"instances_{split}.json", root / "annotations" / f"instances_{word}.json")
    return root


@pytest.mark.parametrize("layout", ["roboflow", "coco2017"])
def test_coco_files_found_one_per_split(tmp_path, layout):
    root = _coco_variant(tmp_path, layout)
    assert detect_layout(str(root)).format == "coco"
    for split in SPLITS:
        ref = sorted(os.path.basename(r.path) for r in _load(LAYOUTS / "voc", split).records)
        ds = _load(root, split)
        assert sorted(os.path.basename(r.path) for r in ds.records) == ref
        assert all(os.path.isfile(r.path) for r in ds.records)
    assert len(_load(root, "trainval")) == 4
