"""Text-file defects in datasets (issue 20, "read what the peers read"): a UTF-8 BOM in a class
file, split file, YOLO label file, image list or data.yaml; a split or label line given twice; a
COCO file naming one file_name under two image ids; a blank COCO category name; splits without
images (fixtures: tests/data/layouts, five BCCD images, MIT)."""

import contextlib
import json
import shutil
import warnings

import numpy as np
import pytest

from backbone.errors import InputWarning, UserError
from detector.config import DataConfig
from detector.io.datasets import DatasetWarning, load_dataset, read_class_file, read_ground_truth
from detector.io.datasets.common import read_split_file
from detector.io.datasets.ilsvrc import read_split_with_index
from detector.io.datasets.summary import summarize
from detector.io.detections import read_detections
from tests.conftest import ROOT
from tests.detector.helpers import ilsvrc_layout, run_eval_map

LAYOUTS = ROOT / "tests" / "data" / "layouts"
BOM = "\ufeff"


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GOOGLENET_DET_CACHE", str(tmp_path / "cache"))


def _copy(name, tmp_path):
    dst = tmp_path / name
    shutil.copytree(LAYOUTS / name, dst)
    return dst


def _bom(path):
    """Prepend a BOM to the text file ``path`` (what Windows Notepad writes as "UTF-8")."""
    path.write_bytes(BOM.encode("utf-8") + path.read_bytes())


def _clean(root, split, **kw):
    """The split read with no warning at all."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return load_dataset(DataConfig(root=str(root), **kw), split)


def _records(ds):
    return [(r.image_id, r.path, r.boxes.tolist(), r.labels.tolist()) for r in ds.records]


@contextlib.contextmanager
def _strict():
    """--strict, as the CLIs set it."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", InputWarning)
        yield


# ---------------------------------------------------------------------------------------------
# BOMs: read as without


def test_bom_in_a_voc_split_file(tmp_path):
    root = _copy("voc", tmp_path)
    ref = _records(_clean(root, "train"))
    _bom(root / "ImageSets" / "Main" / "train.txt")   # was: image id '\ufeffBloodImage_...' has no annotation
    assert _records(_clean(root, "train")) == ref


def test_bom_in_class_files(tmp_path):
    (tmp_path / "c.txt").write_text(BOM + "RBC\nWBC\n", encoding="utf-8")
    assert read_class_file(str(tmp_path / "c.txt")).names == ["RBC", "WBC"]   # was '\ufeffRBC'
    (tmp_path / "m.txt").write_text(BOM + "n02672831 1 accordion\nn02691156 2 airplane\n", encoding="utf-8")
    cl = read_class_file(str(tmp_path / "m.txt"))
    assert cl.names == ["n02672831", "n02691156"] and cl.ids == [1, 2]        # was: not map_det (line 1)


def test_bom_in_yolo_labels_classes_txt_data_yaml_and_image_lists(tmp_path):
    root = _copy("yolo", tmp_path)
    ref = _records(_clean(root, "train"))
    for f in (root / "labels" / "train").glob("*.txt"):
        _bom(f)                                       # was: class id '\ufeff2' is not a whole number
    _bom(root / "data.yaml")
    assert _records(_clean(root, "train")) == ref
    (root / "data.yaml").unlink()
    (root / "classes.txt").write_text(BOM + "Platelets\nRBC\nWBC\n", encoding="utf-8")
    ds = _clean(root, "train")
    assert ds.classes == ["Platelets", "RBC", "WBC"] and _records(ds) == ref   # was '\ufeffPlatelets'
    lst = root / "train.txt"
    lst.write_text(BOM + "".join(f"images/train/{r[1].rsplit('/', 1)[1]}\n" for r in ref), encoding="utf-8")
    (root / "data.yaml").write_text(f"{BOM}train: train.txt\nnames: [Platelets, RBC, WBC]\n", encoding="utf-8")
    assert _records(_clean(root, "train")) == ref     # was: '\ufeffimages/train/...' not a file


def test_bom_in_a_coco_file(tmp_path):
    root = _copy("coco", tmp_path)
    ref = _records(_clean(root, "val"))
    for f in (root / "annotations").glob("*.json"):
        _bom(f)                                       # was: malformed JSON (Unexpected UTF-8 BOM)
    assert _records(_clean(root, "val")) == ref


def test_bom_in_an_ilsvrc_split_file(tmp_path, test_data):
    root = ilsvrc_layout(test_data / "voc-mini", tmp_path / "ilsvrc", ["BloodImage_00000", "BloodImage_00001"], 2,
                         {"RBC": "n00000001", "WBC": "n00000002", "Platelets": "n00000003"},
                         "n00000001 1 RBC\nn00000002 2 WBC\nn00000003 3 Platelets\n")
    _bom(root / "ImageSets" / "DET" / "val.txt")
    _bom(root / "map_det.txt")
    assert read_split_with_index(str(root / "ImageSets" / "DET" / "val.txt")) == [
        ("BloodImage_00000", 1), ("BloodImage_00001", 2)]
    ds = _clean(root, "val", format="ilsvrc")
    assert [r.image_id for r in ds.records] == ["BloodImage_00000", "BloodImage_00001"]
    assert ds.classes == ["n00000001", "n00000002", "n00000003"]


# ---------------------------------------------------------------------------------------------
# lines given twice: dropped, one counted warning, --strict refuses


def test_split_file_listing_an_image_twice(tmp_path):
    root = _copy("voc", tmp_path)
    split = root / "ImageSets" / "Main" / "train.txt"
    ids = split.read_text().split()
    ref = _records(_clean(root, "train"))
    split.write_text("\n".join(ids + ids[:1] + ids) + "\n")
    with pytest.warns(DatasetWarning) as rec:
        ds = load_dataset(DataConfig(root=str(root)), "train")
    msgs = [str(w.message) for w in rec]
    assert len(msgs) == 1, msgs
    assert msgs[0] == (f"split file {split}: {len(ids) + 1} line(s) repeat an image listed before and are dropped; "
                       f"e.g. line {len(ids) + 1} {ids[0]!r} is line 1 again; line {len(ids) + 2} {ids[0]!r} is "
                       f"line 1 again; line {len(ids) + 3} {ids[1]!r} is line 2 again")
    assert _records(ds) == ref                        # each image once (was: counted twice)
    with _strict(), pytest.raises(DatasetWarning, match=rf"line {len(ids) + 1} '{ids[0]}' is line 1 again .*--strict"):
        read_split_file(str(split))


def test_ilsvrc_split_listing_an_image_twice(tmp_path):
    p = tmp_path / "val.txt"
    p.write_text("a 1\nb 2\na 1\n")
    with pytest.warns(DatasetWarning, match=r"1 line\(s\) repeat an image .* line 3 'a' is line 1 again"):
        assert read_split_with_index(str(p)) == [("a", 1), ("b", 2)]


def test_yolo_label_line_and_image_list_line_given_twice(tmp_path):
    root = _copy("yolo", tmp_path)
    ref = _records(_clean(root, "train"))
    f = sorted((root / "labels" / "train").glob("*.txt"))[0]
    lines = f.read_text().splitlines()
    f.write_text("\n".join(lines + lines[:2]) + "\n")   # ultralytics: "2 duplicate labels removed"
    with pytest.warns(DatasetWarning) as rec:
        ds = load_dataset(DataConfig(root=str(root)), "train")
    msgs = [str(w.message) for w in rec]
    assert len(msgs) == 1 and "2 label line(s) repeat an earlier line of their file and are dropped" in msgs[0], msgs
    assert f"{f.name} line {len(lines) + 1} is line 1 again" in msgs[0]
    assert _records(ds) == ref
    f.write_text("\n".join(lines) + "\n")
    lst = root / "train.txt"
    names = [r[1].rsplit("/", 1)[1] for r in ref]
    lst.write_text("".join(f"images/train/{n}\n" for n in names + names[:1]))
    (root / "data.yaml").write_text("train: train.txt\nnames: [Platelets, RBC, WBC]\n")
    with pytest.warns(DatasetWarning, match=rf"image list {lst}: 1 line\(s\) repeat an image"):
        load_dataset(DataConfig(root=str(root)), "train")


def _coco_two_ids(tmp_path):
    """A COCO file naming a.jpg under ids 7 and 8 (each with one box), and b.jpg under 9."""
    images = [{"id": 7, "file_name": "a.jpg", "width": 100, "height": 50},
              {"id": 9, "file_name": "b.jpg", "width": 100, "height": 50},
              {"id": 8, "file_name": "a.jpg", "width": 100, "height": 50}]
    anns = [{"id": 1, "image_id": 7, "category_id": 1, "bbox": [10, 5, 20, 10]},
            {"id": 2, "image_id": 8, "category_id": 1, "bbox": [50, 20, 30, 20]},
            {"id": 3, "image_id": 9, "category_id": 1, "bbox": [1, 1, 5, 5]}]
    p = tmp_path / "gt.json"
    p.write_text(json.dumps({"images": images, "annotations": anns, "categories": [{"id": 1, "name": "cell"}]}))
    return p


def test_coco_file_name_under_two_ids_is_one_image(tmp_path):
    p = _coco_two_ids(tmp_path)
    with pytest.warns(DatasetWarning) as rec:
        ds = read_ground_truth(str(p))
    msgs = [str(w.message) for w in rec]
    assert msgs == [f"{p}: 1 image id(s) name a file_name listed before under another id; each is merged into that "
                    "image (the union of their annotations; detections of either id score against it); e.g. "
                    "image #2 (id 8) is file 'a.jpg' of image id 7"]
    assert [r.image_id for r in ds.records] == ["7", "9"]    # was 7, 9, 8: a.jpg twice, once as background
    np.testing.assert_array_equal(ds.records[0].boxes, [[10, 5, 30, 15], [50, 20, 80, 40]])
    assert ds.records[0].aliases == ("8",)
    # detections of either id score against the merged image (was: image_id 8 not in the ground truth)
    res = tmp_path / "res.json"
    res.write_text(json.dumps([{"image_id": 7, "category_id": 1, "bbox": [10, 5, 20, 10], "score": 0.9},
                               {"image_id": 8, "category_id": 1, "bbox": [50, 20, 30, 20], "score": 0.8}]))
    dets = read_detections(str(res), ds)
    assert dets[0]["scores"].tolist() == [0.9, 0.8] and len(dets[1]["scores"]) == 0
    items = tmp_path / "dets.json"
    items.write_text(json.dumps([{"image": "a.jpg", "detections": [{"box": [10, 5, 30, 15], "label": 1, "score": 1}]}]))
    assert read_detections(str(items), ds)[0]["scores"].tolist() == [1.0]   # was: 'a.jpg' not in the ground truth
    with _strict(), pytest.raises(DatasetWarning, match=r"image #2 \(id 8\) is file 'a.jpg' of image id 7 .*--strict"):
        read_ground_truth(str(p))


def test_eval_map_scores_both_ids_against_the_merged_image(tmp_path, capsys):
    p = _coco_two_ids(tmp_path)
    res = tmp_path / "res.json"
    res.write_text(json.dumps([{"image_id": i, "category_id": 1, "bbox": b, "score": s} for i, b, s in
                               [(7, [10, 5, 20, 10], 0.9), (8, [50, 20, 30, 20], 0.8), (9, [1, 1, 5, 5], 0.7)]]))
    rc, out, err = run_eval_map(capsys, "--protocol", "voc", "--ground-truth", p, "--detections", res)
    assert rc == 0, err
    assert "mAP" in out and "1.000" in out, out
    assert err.count("warning:") == 1 and "merged into that image" in err, err


# ---------------------------------------------------------------------------------------------
# class names from the data


def test_blank_coco_category_name_is_one_warning(tmp_path):
    p = tmp_path / "gt.json"
    p.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.jpg", "width": 10, "height": 10}],
                             "annotations": [], "categories": [{"id": 1, "name": "  "}, {"id": 2, "name": "cell"}]}))
    with pytest.warns(DatasetWarning) as rec:
        ds = read_ground_truth(str(p))
    assert [str(w.message) for w in rec] == [
        f"{p}: 1 class name(s) blank (shown so in every table and file); e.g. category #0 (id 1) is named '  '"]
    assert ds.classes == ["  ", "cell"]


def test_blank_yolo_class_name_is_one_warning(tmp_path):
    root = _copy("yolo", tmp_path)
    (root / "data.yaml").write_text("path: .\ntrain: images/train\nnames: [Platelets, ' ', WBC]\n")
    with pytest.warns(DatasetWarning) as rec:
        ds = load_dataset(DataConfig(root=str(root)), "train")
    assert [str(w.message) for w in rec] == [
        f"{root / 'data.yaml'}: 1 class name(s) blank (shown so in every table and file); e.g. names[1] is named ' '"]
    assert ds.classes == ["Platelets", " ", "WBC"]


# ---------------------------------------------------------------------------------------------
# splits without images


def test_yolo_train_entry_without_images_is_an_error(tmp_path):
    root = _copy("yolo", tmp_path)
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text("root:x:0:0\n")
    (root / "data.yaml").write_text("train: ../etc\nval: images/val\nnames: [Platelets, RBC, WBC]\n")
    with pytest.raises(UserError, match=rf"data.yaml: no images in its 'train' split \(train {tmp_path}/etc\)"):
        load_dataset(DataConfig(root=str(root)), "train")      # was: an empty training set
    assert len(load_dataset(DataConfig(root=str(root)), "val")) == 1


def test_summary_warns_of_an_empty_split(tmp_path):
    root = _copy("voc", tmp_path)
    (root / "ImageSets" / "Main" / "train.txt").write_text("")
    data = DataConfig(root=str(root), format="voc", train_split="train", val_split="val", test_split="test")
    lines = summarize(data, load_dataset).lines()
    assert "warning: split 'train' has no images (training on it trains nothing)" in lines, lines
