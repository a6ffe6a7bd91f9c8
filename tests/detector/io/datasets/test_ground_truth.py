"""detector.io.datasets.ground_truth: eval-map --ground-truth from a VOC split file, one XML, an
Annotations folder, the ILSVRC devkit .mat (with a blacklist, counts that differ from its own),
and their bad input (one error line, exit code 2)."""

import json

import numpy as np

from detector.io.datasets.ground_truth import read_ground_truth
from detector.io.detections import write_detections_json
from tests.detector.helpers import eval_map_error, run_eval_map


def test_voc_xml_ground_truth_and_project_json(test_data, tmp_path, capsys):
    root = test_data / "voc-mini"
    gt = read_ground_truth(str(root / "ImageSets" / "Main" / "test.txt"))
    r = gt.records[0]
    # perfect detections: the ground truth itself, as the project's JSON keyed by image path
    items = [{"image": r.path, "detections": [{"box": b.tolist(), "score": 1.0 - 0.01 * k, "label": gt.classes[l - 1]}
                                             for k, (b, l) in enumerate(zip(r.boxes, r.labels))]}]
    write_detections_json(str(tmp_path / "d.json"), items)
    for g in (root / "ImageSets" / "Main" / "test.txt", root / "Annotations" / "BloodImage_00001.xml"):
        rc, out, err = run_eval_map(capsys, "--ground-truth", g, "--detections", tmp_path / "d.json", "--json", tmp_path / "r.json")
        assert rc == 0, err
        assert json.loads((tmp_path / "r.json").read_text())["mAP"] == 1.0
    # the whole Annotations folder: images without detections lower the recall
    rc, out, err = run_eval_map(capsys, "--ground-truth", root / "Annotations", "--detections", tmp_path / "d.json",
                        "--json", tmp_path / "r.json")
    assert rc == 0 and json.loads((tmp_path / "r.json").read_text())["mAP"] < 1.0
    assert err.count("warning") == 1 and "1 box(es) dropped" in err   # BloodImage_00338's point box


def test_devkit_mat_ground_truth_with_blacklist(tmp_path, capsys, test_data):
    import scipy.io

    (tmp_path / "map_det.txt").write_text("n02672831 1 accordion\nn02691156 2 airplane\nn02219486 3 ant\n")
    # two images (devkit ids 5 and 9); boxes 4 x n, 1-based inclusive
    labels = np.empty((1, 2), dtype=object)
    boxes = np.empty((1, 2), dtype=object)
    labels[0, 0] = np.array([[1, 2]], float)
    boxes[0, 0] = np.array([[1, 21], [1, 21], [10, 40], [10, 40]], float)
    labels[0, 1] = np.array([[2]], float)
    boxes[0, 1] = np.array([[5], [5], [24], [24]], float)
    scipy.io.savemat(tmp_path / "gt.mat", {"gt_img_ids": np.array([[5, 9]]), "gt_obj_labels": labels,
                                           "gt_obj_bboxes": boxes, "gt_obj_thr": labels, "num_pos_per_class": np.array([[1, 2, 0]])})
    (tmp_path / "black.txt").write_text("9 n02691156\n")
    # image 5: both found; image 9: the airplane missed, but it is blacklisted
    (tmp_path / "sub.txt").write_text("5 1 0.9 1 1 10 10\n5 2 0.8 21 21 40 40\n9 2 0.95 100 100 120 120\n")
    rc, out, err = run_eval_map(capsys, "--protocol", "ilsvrc", "--ground-truth", tmp_path / "gt.mat", "--classes", tmp_path / "map_det.txt",
                        "--detections", tmp_path / "sub.txt", "--blacklist", tmp_path / "black.txt", "--json", tmp_path / "r.json")
    assert rc == 0, err
    r = json.loads((tmp_path / "r.json").read_text())
    assert r["AP"][:2] == [1.0, 1.0] and r["AP"][2] is None and r["npos"] == [1, 1, 0]
    assert "accordion (n02672831)" in out
    rc, out, err = run_eval_map(capsys, "--protocol", "ilsvrc", "--ground-truth", tmp_path / "gt.mat", "--classes", tmp_path / "map_det.txt",
                        "--detections", tmp_path / "sub.txt", "--json", tmp_path / "r.json")
    # without the blacklist: 2 airplanes, the missed one counts and the 0.95 FP ranks first
    assert json.loads((tmp_path / "r.json").read_text())["AP"][1] == 0.25


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
    rc, out, err = run_eval_map(capsys, "--protocol", "ilsvrc", "--ground-truth", tmp_path / "gt.mat", "--classes",
                        tmp_path / "map.txt", "--detections", tmp_path / "sub.txt")
    assert rc == 0, err
    assert "differ from its num_pos_per_class (e.g. class id 2: 0 boxes read, the file says 1)" in err


def test_bad_ground_truth(test_data, tmp_path, capsys, sample):
    (tmp_path / "d.json").write_text("[]")
    ann = tmp_path / "ann"
    ann.mkdir()
    (ann / "a.xml").write_text("<annotation>\n<object><name>x</name>\n</annotation>\n")
    assert "a.xml line 3: malformed XML" in eval_map_error(capsys, "--ground-truth", ann, "--detections", tmp_path / "d.json")
    assert "val.txt: no such file" in eval_map_error(capsys, "--ground-truth", test_data / "voc-mini" / "ImageSets" / "Main" / "val.txt",
                                           "--detections", tmp_path / "d.json")
    (tmp_path / "classes.txt").write_text("WBC\n")
    assert "unknown class 'RBC'" in eval_map_error(capsys, "--ground-truth", test_data / "voc-mini" / "ImageSets" / "Main" / "test.txt",
                                         "--classes", tmp_path / "classes.txt", "--detections", tmp_path / "d.json")
    g = tmp_path / "gt"
    g.mkdir()
    (g / "a.txt").write_text("person 1 1 nan 5\n")
    assert "a.txt line 1: a number is NaN or infinite" in eval_map_error(capsys, "--ground-truth", g, "--detections", tmp_path / "d.json")
    (tmp_path / "gt.json").write_text('{"images": [{"id": 1}], "categories": [{"id": 1, "name": "a"}],\n "annotations": [}')
    assert "gt.json line 2: malformed JSON" in eval_map_error(capsys, "--ground-truth", tmp_path / "gt.json", "--detections", tmp_path / "d.json")
    assert "no such file" in eval_map_error(capsys, "--ground-truth", tmp_path / "nope", "--detections", tmp_path / "d.json")


def test_bad_devkit_mat(tmp_path, capsys):
    import scipy.io

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
    assert "unknown class id 7" in eval_map_error(capsys, *argv)
    mat(np.array([[1.0]]), np.array([[1.0], [np.nan], [10.0], [10.0]]))
    assert "NaN" in eval_map_error(capsys, *argv)
    data = (tmp_path / "gt.mat").read_bytes()
    (tmp_path / "gt.mat").write_bytes(data[:200])
    assert "gt.mat" in eval_map_error(capsys, *argv)
