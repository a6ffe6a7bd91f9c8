"""detector.io.datasets.ilsvrc: the ILSVRC DET layout (map_det.txt, devkit indices, images
without XML, blacklists), the real 200-class map_det.txt, and its bad input."""

import json

import numpy as np
import pytest

from backbone.errors import UserError
from detector.config import DataConfig
from detector.io.datasets import ground_truth, load_dataset
from tests.detector.helpers import ilsvrc_layout, run_eval_map

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


@pytest.fixture
def ilsvrc_real(test_data, tmp_path):
    """voc-mini in the ILSVRC DET layout with the real 200-class map_det.txt (RBC -> airplane, WBC -> ant)."""
    wnid = {"RBC": "n02691156", "WBC": "n02219486", "Platelets": "n01443537"}  # airplane, ant, goldfish
    return ilsvrc_layout(test_data / "voc-mini", tmp_path / "ILSVRC", ["BloodImage_00000", "BloodImage_00001"], 2,
                         wnid, test_data / "ilsvrc" / "map_det.txt")


def test_real_map_det_and_ilsvrc_split_with_blacklist(ilsvrc_real, tmp_path, capsys, test_data):
    ds = load_dataset(DataConfig(format="ilsvrc", root=str(ilsvrc_real)), "val")
    assert len(ds.classes) == 200 and ds.class_ids == list(range(1, 201))
    assert ds.classes[0] == "n02672831" and ds.display_names[0] == "accordion"
    # a perfect submission (1-based inclusive pixels), plus a false positive of class 2 (airplane)
    # in image 2, whose airplanes are blacklisted: the FP and image 2's airplanes leave the score
    sub = []
    for r in ds.records:
        for b, lab in zip(r.boxes.tolist(), r.labels.tolist()):
            sub.append(f"{r.devkit_index} {ds.class_ids[lab - 1]} 0.9 {b[0] + 1:g} {b[1] + 1:g} {b[2]:g} {b[3]:g}")
    sub.append("2 2 0.99 600 440 630 470")
    (tmp_path / "sub.txt").write_text("\n".join(sub) + "\n")
    (tmp_path / "black.txt").write_text("2 n02691156\n")
    gt = ilsvrc_real / "ImageSets" / "DET" / "val.txt"
    rc, out, err = run_eval_map(capsys, "--protocol", "ilsvrc", "--ground-truth", gt, "--blacklist", tmp_path / "black.txt",
                        "--detections", tmp_path / "sub.txt", "--json", tmp_path / "r.json")
    assert rc == 0, err
    r = json.loads((tmp_path / "r.json").read_text())
    n_air = [int((rec.labels == 2).sum()) for rec in ds.records]
    assert r["npos"][1] == n_air[0] and r["AP"][1] == 1.0 and r["mAP"] == 1.0
    assert "airplane (n02691156)" in out
    rc, out, err = run_eval_map(capsys, "--protocol", "ilsvrc", "--ground-truth", gt, "--detections", tmp_path / "sub.txt",
                        "--json", tmp_path / "r2.json")
    r2 = json.loads((tmp_path / "r2.json").read_text())
    assert rc == 0 and r2["npos"][1] == sum(n_air) and r2["AP"][1] < 1.0   # the FP ranks first
