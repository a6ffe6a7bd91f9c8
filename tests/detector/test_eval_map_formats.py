"""eval-map: COCO ground truth exactly as pycocotools reads it, the real ILSVRC class list through a
DET split with a blacklist, empty detection folders, and the bad inputs of the other formats."""

import contextlib
import io
import json

import numpy as np
import pytest

from detector.cli.eval_map import main
from detector.datasets import load_dataset
from detector.schema import DataConfig

from .helpers import ilsvrc_layout


def _run(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def _bad(capsys, *argv):
    rc, out, err = _run(capsys, *argv)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("eval-map: error: "), err
    return lines[0]


def _coco_files(tmp_path, seed=0):
    """A COCO instances file with fractional boxes and segment areas unlike w*h (as real COCO),
    and a results file of noisy copies plus false positives."""
    rng = np.random.default_rng(seed)
    images, anns, results = [], [], []
    for i in range(1, 13):
        images.append({"id": i, "file_name": f"{i}.jpg", "width": 640, "height": 480})
        for _ in range(rng.integers(1, 6)):
            w, h = rng.uniform(8, 300), rng.uniform(8, 200)
            x, y = rng.uniform(0, 640 - w), rng.uniform(0, 480 - h)
            c = int(rng.integers(1, 4))
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": c * 10, "bbox": [x, y, w, h],
                         "area": float(w * h * rng.uniform(0.3, 0.9)), "iscrowd": 0})
            if rng.random() < 0.8:
                j = rng.normal(0, 6, 4)
                results.append({"image_id": i, "category_id": c * 10, "score": float(rng.random()),
                                "bbox": [x + j[0], y + j[1], max(1.0, w + j[2]), max(1.0, h + j[3])]})
        for _ in range(2):
            results.append({"image_id": i, "category_id": int(rng.integers(1, 4)) * 10, "score": float(rng.random()),
                            "bbox": [float(rng.uniform(0, 500)), float(rng.uniform(0, 350)), 60.5, 40.25]})
    cats = [{"id": c, "name": f"c{c}"} for c in (10, 20, 30)]
    (tmp_path / "gt.json").write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    (tmp_path / "res.json").write_text(json.dumps(results))
    return tmp_path / "gt.json", tmp_path / "res.json"


def test_coco_protocol_equals_pycocotools_on_coco_files(tmp_path, capsys):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt_file, res_file = _coco_files(tmp_path)
    rc, out, err = _run(capsys, "--protocol", "coco", "--ground-truth", gt_file, "--detections", res_file,
                        "--json", tmp_path / "r.json")
    assert rc == 0, err
    ours = json.loads((tmp_path / "r.json").read_text())["stats"]
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_file))
        E = COCOeval(gt, gt.loadRes(str(res_file)), "bbox")
        E.evaluate(); E.accumulate(); E.summarize()
    names = ["AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large",
             "AR1", "AR10", "AR100", "AR_small", "AR_medium", "AR_large"]
    # the small/medium/large ranges use the file's segment areas, not w*h: they must match too
    np.testing.assert_allclose([ours[n] for n in names], E.stats, atol=1e-6)
    assert len({round(v, 6) for v in E.stats[3:6]}) > 1


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
    rc, out, err = _run(capsys, "--protocol", "ilsvrc", "--ground-truth", gt, "--blacklist", tmp_path / "black.txt",
                        "--detections", tmp_path / "sub.txt", "--json", tmp_path / "r.json")
    assert rc == 0, err
    r = json.loads((tmp_path / "r.json").read_text())
    n_air = [int((rec.labels == 2).sum()) for rec in ds.records]
    assert r["npos"][1] == n_air[0] and r["AP"][1] == 1.0 and r["mAP"] == 1.0
    assert "airplane (n02691156)" in out
    rc, out, err = _run(capsys, "--protocol", "ilsvrc", "--ground-truth", gt, "--detections", tmp_path / "sub.txt",
                        "--json", tmp_path / "r2.json")
    r2 = json.loads((tmp_path / "r2.json").read_text())
    assert rc == 0 and r2["npos"][1] == sum(n_air) and r2["AP"][1] < 1.0   # the FP ranks first


def test_empty_detections_folder_is_ap_zero(tmp_path, capsys, test_data):
    (tmp_path / "dets").mkdir()
    rc, out, err = _run(capsys, "--ground-truth", test_data / "metrics-sample" / "groundtruths", "--box-format", "xywh",
                        "--detections", tmp_path / "dets", "--json", tmp_path / "r.json")
    assert rc == 0, err
    assert json.loads((tmp_path / "r.json").read_text())["mAP"] == 0.0 and "no detections" in err


def test_bad_coco_results_and_devkit_mat(tmp_path, capsys):
    import scipy.io

    gt_file, _ = _coco_files(tmp_path)
    for content, match in [
        ('[{"image_id": 99, "category_id": 10, "bbox": [1, 1, 4, 4], "score": 0.5}]', "image_id 99 is not in the ground truth"),
        ('[{"image_id": 1, "category_id": 10, "bbox": [1, NaN, 4, 4], "score": 0.5}]', "result #0: NaN or infinite"),
        ('[{"image_id": 1, "category_id": 10, "bbox": [1, 1, 4, 4]}]', "result #0 lacks"),
    ]:
        (tmp_path / "c.json").write_text(content)
        line = _bad(capsys, "--protocol", "coco", "--ground-truth", gt_file, "--detections", tmp_path / "c.json")
        assert match in line, line
    (tmp_path / "map.txt").write_text("n02672831 1 accordion\nn02691156 2 airplane\n")
    (tmp_path / "sub.txt").write_text("5 1 0.9 1 1 10 10\n")

    def mat(labels_img, boxes_img):
        labels = np.empty((1, 1), dtype=object)
        boxes = np.empty((1, 1), dtype=object)
        labels[0, 0], boxes[0, 0] = labels_img, boxes_img
        scipy.io.savemat(tmp_path / "gt.mat", {"gt_img_ids": np.array([[5]]), "gt_obj_labels": labels,
                                               "gt_obj_bboxes": boxes})

    mat(np.array([[7.0]]), np.array([[1.0], [1.0], [10.0], [10.0]]))
    argv = ["--protocol", "ilsvrc", "--ground-truth", tmp_path / "gt.mat", "--classes", tmp_path / "map.txt",
            "--detections", tmp_path / "sub.txt"]
    assert "unknown class id 7" in _bad(capsys, *argv)
    mat(np.array([[1.0]]), np.array([[1.0], [np.nan], [10.0], [10.0]]))
    assert "NaN" in _bad(capsys, *argv)
    data = (tmp_path / "gt.mat").read_bytes()
    (tmp_path / "gt.mat").write_bytes(data[:200])
    assert "gt.mat" in _bad(capsys, *argv)


def test_devkit_mat_counts_that_differ_are_warned(tmp_path, capsys):
    import scipy.io

    (tmp_path / "map.txt").write_text("n02672831 1 accordion\nn02691156 2 airplane\n")
    labels = np.empty((1, 1), dtype=object)
    boxes = np.empty((1, 1), dtype=object)
    labels[0, 0] = np.array([[1.0, 2.0]])
    boxes[0, 0] = np.array([[1.0, 7.0], [1.0, 7.0], [10.0, 7.0], [10.0, 9.0]])   # the airplane is 1 px wide
    scipy.io.savemat(tmp_path / "gt.mat", {"gt_img_ids": np.array([[5]]), "gt_obj_labels": labels,
                                           "gt_obj_bboxes": boxes, "num_pos_per_class": np.array([[1, 1]])})
    (tmp_path / "sub.txt").write_text("5 1 0.9 1 1 10 10\n")
    rc, out, err = _run(capsys, "--protocol", "ilsvrc", "--ground-truth", tmp_path / "gt.mat", "--classes",
                        tmp_path / "map.txt", "--detections", tmp_path / "sub.txt")
    assert rc == 0, err
    assert "differ from its num_pos_per_class (e.g. class id 2: 0 boxes read, the file says 1)" in err
