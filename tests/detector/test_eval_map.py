"""eval-map: the published sample numbers, every input format, split mode, bad input."""

import json
import random

import numpy as np
import pytest

from detector.cli.eval_map import main
from detector.datasets import ground_truth
from detector.formats import (detections_to_items, read_detections, read_ground_truth, write_coco_results,
                              write_detections_json, write_devkit_submission)


@pytest.fixture
def sample(test_data):
    return test_data / "metrics-sample"


def _run(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.parametrize("protocol, ap", [("voc", 0.2457), ("voc07", 0.2684)])
def test_published_sample_numbers(sample, tmp_path, capsys, protocol, ap):
    out_json = tmp_path / "m.json"
    rc, out, err = _run(capsys, "--protocol", protocol, "--ground-truth", sample / "groundtruths",
                        "--detections", sample / "detections", "--iou", "0.3", "--box-format", "xywh",
                        "--json", out_json, "--plots", tmp_path / "plots")
    assert rc == 0, err
    r = json.loads(out_json.read_text())
    assert abs(r["mAP"] - ap) <= 1e-4
    assert r["per_class_AP"]["person"] == r["mAP"] and r["npos"] == [15] and r["num_detections"] == [24]
    assert f"{ap:.4f}" in out and "person" in out
    assert (tmp_path / "plots" / f"pr_{protocol}.png").stat().st_size > 1000
    assert "warning" not in err   # no degenerate boxes in the sample when read as xywh


def test_wrong_box_format_is_reported_not_silent(sample, tmp_path, capsys):
    # read as xyxy, the sample's width/height numbers give negative-size detections: an error
    line = _bad(capsys, "--ground-truth", sample / "groundtruths", "--detections", sample / "detections")
    assert "00001.txt line 1: box" in line and "negative size" in line and "--box-format" in line
    # and degenerate ground-truth boxes: dropped, counted in one warning
    (tmp_path / "d.json").write_text("[]")
    rc, out, err = _run(capsys, "--ground-truth", sample / "groundtruths", "--detections", tmp_path / "d.json")
    assert rc == 0 and err.count("box(es) dropped") == 1 and "12 box(es) dropped" in err


def _sample_gt(sample):
    return read_ground_truth(str(sample / "groundtruths"), box_format="xywh")


def test_format_round_trips_give_the_same_ap(sample, tmp_path, capsys):
    gt = _sample_gt(sample)
    dets = read_detections(str(sample / "detections"), gt, "xywh")
    want = None
    for name, write in (("d.json", lambda p: write_detections_json(p, detections_to_items(gt, dets))),
                        ("devkit.txt", lambda p: write_devkit_submission(p, gt, dets)),
                        ("coco.json", lambda p: write_coco_results(p, gt, dets))):
        path = tmp_path / name
        write(str(path))
        back = read_detections(str(path), gt)
        for a, b in zip(dets, back):
            np.testing.assert_allclose(a["boxes"], b["boxes"], atol=1e-5)
            np.testing.assert_array_equal(a["labels"], b["labels"])
        rc, out, err = _run(capsys, "--protocol", "voc", "--ground-truth", sample / "groundtruths", "--box-format", "xywh",
                            "--detections", path, "--iou", "0.3", "--json", tmp_path / "r.json")
        assert rc == 0, err
        ap = json.loads((tmp_path / "r.json").read_text())["mAP"]
        want = ap if want is None else want
        assert ap == pytest.approx(want, abs=1e-12) and abs(ap - 0.2457) < 1e-4


def test_line_order_of_a_file_does_not_matter(sample, tmp_path, capsys):
    gt = _sample_gt(sample)
    dets = read_detections(str(sample / "detections"), gt, "xywh")
    p = tmp_path / "dk.txt"
    write_devkit_submission(str(p), gt, dets)
    lines = p.read_text().splitlines(keepends=True)
    results = []
    for seed in range(3):
        random.Random(seed).shuffle(lines)
        p.write_text("".join(lines))
        rc, out, err = _run(capsys, "--ground-truth", sample / "groundtruths", "--box-format", "xywh",
                            "--detections", p, "--iou", "0.3", "--json", tmp_path / "r.json")
        assert rc == 0, err
        results.append(json.loads((tmp_path / "r.json").read_text())["mAP"])
    assert results[0] == results[1] == results[2]


def test_coco_protocol_and_all_protocols_run(sample, tmp_path, capsys):
    for protocol in ("ilsvrc", "coco"):
        rc, out, err = _run(capsys, "--protocol", protocol, "--ground-truth", sample / "groundtruths",
                            "--box-format", "xywh", "--detections", sample / "detections", "--json", tmp_path / "c.json")
        assert rc == 0, err
        r = json.loads((tmp_path / "c.json").read_text())
        assert 0 <= r["mAP"] <= 1
    assert len(r["stats"]) == 12 and "Average Precision" in out


def test_voc_xml_ground_truth_and_project_json(test_data, tmp_path, capsys):
    root = test_data / "voc-mini"
    gt = read_ground_truth(str(root / "ImageSets" / "Main" / "test.txt"))
    r = gt.records[0]
    # perfect detections: the ground truth itself, as the project's JSON keyed by image path
    items = [{"image": r.path, "detections": [{"box": b.tolist(), "score": 1.0 - 0.01 * k, "label": gt.classes[l - 1]}
                                             for k, (b, l) in enumerate(zip(r.boxes, r.labels))]}]
    write_detections_json(str(tmp_path / "d.json"), items)
    for g in (root / "ImageSets" / "Main" / "test.txt", root / "Annotations" / "BloodImage_00001.xml"):
        rc, out, err = _run(capsys, "--ground-truth", g, "--detections", tmp_path / "d.json", "--json", tmp_path / "r.json")
        assert rc == 0, err
        assert json.loads((tmp_path / "r.json").read_text())["mAP"] == 1.0
    # the whole Annotations folder: images without detections lower the recall
    rc, out, err = _run(capsys, "--ground-truth", root / "Annotations", "--detections", tmp_path / "d.json",
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
    rc, out, err = _run(capsys, "--protocol", "ilsvrc", "--ground-truth", tmp_path / "gt.mat", "--classes", tmp_path / "map_det.txt",
                        "--detections", tmp_path / "sub.txt", "--blacklist", tmp_path / "black.txt", "--json", tmp_path / "r.json")
    assert rc == 0, err
    r = json.loads((tmp_path / "r.json").read_text())
    assert r["AP"][:2] == [1.0, 1.0] and r["AP"][2] is None and r["npos"] == [1, 1, 0]
    assert "accordion (n02672831)" in out
    rc, out, err = _run(capsys, "--protocol", "ilsvrc", "--ground-truth", tmp_path / "gt.mat", "--classes", tmp_path / "map_det.txt",
                        "--detections", tmp_path / "sub.txt", "--json", tmp_path / "r.json")
    # without the blacklist: 2 airplanes, the missed one counts and the 0.95 FP ranks first
    assert json.loads((tmp_path / "r.json").read_text())["AP"][1] == 0.25


# --- bad input: one error line, exit code 2 -------------------------------------------------------


def _bad(capsys, *argv):
    rc, out, err = _run(capsys, *argv)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("eval-map: error: "), err
    return lines[0]


@pytest.mark.parametrize("content, match", [
    ('[{"image": "00001", "detections": [{"box": [1, 2, 3, 4], "score": 1, "label": "person"}]', r"d\.json line 1: malformed JSON"),
    ('[{"image": "00009", "detections": []}]', "image '00009' is not in the ground truth"),
    ('[{"image": "00001", "detections": [{"box": [1, 2, 3, 4], "score": 1, "label": "cat"}]}]', "unknown class 'cat'"),
    ('[{"image": "00001", "detections": [{"box": [1, 2, 3, 4], "score": 1, "label": 7}]}]', "unknown class 7"),
    ('[{"image": "00001", "detections": [{"box": [1, 2, NaN, 4], "score": 1, "label": "person"}]}]', "NaN or infinite"),
    ('[{"image": "00001", "detections": [{"box": [1, 2, Infinity, 4], "score": 1, "label": "person"}]}]', "NaN or infinite"),
    ('[{"image": "00001", "detections": [{"box": [5, 2, 3, 4], "score": 1, "label": "person"}]}]', "negative size"),
    ('[{"image": "00001", "detections": [{"box": [1, 2, 3], "score": 1, "label": "person"}]}]', "box is not 4 numbers"),
    ('{"x": 1}', "expected a list"),
])
def test_bad_detections_json(sample, tmp_path, capsys, content, match):
    (tmp_path / "d.json").write_text(content)
    line = _bad(capsys, "--ground-truth", sample / "groundtruths", "--box-format", "xywh", "--detections", tmp_path / "d.json")
    assert match in line or __import__("re").search(match, line), line


@pytest.mark.parametrize("content, match", [
    ("1 1 0.5 1 1 10 10\n1 7 0.5 1 1 10 10\n", "dk.txt line 2: unknown class id 7"),
    ("1 1 0.5 1 1 10 10\n99 1 0.5 1 1 10 10\n", "dk.txt line 2: image index 99 is not in the ground truth"),
    ("1 1 0.5 1 1 10 10\n1 1 nan 1 1 10 10\n", "dk.txt line 2: NaN or infinite"),
    ("1 1 0.5 1 1 10 10\n1 1 0.5 1 1 10\n", "dk.txt line 2: expected `image_index"),
    ("1 1 0.5 1 1 10 10\n\n1 1 0.5 20 1 10 10\n", "dk.txt line 3: box .* negative size"),
])
def test_bad_devkit_lines(sample, tmp_path, capsys, content, match):
    (tmp_path / "dk.txt").write_text(content)
    line = _bad(capsys, "--ground-truth", sample / "groundtruths", "--box-format", "xywh", "--detections", tmp_path / "dk.txt")
    assert __import__("re").search(match, line), line


def test_bad_text_folder_and_coco_results(sample, tmp_path, capsys):
    d = tmp_path / "dets"
    d.mkdir()
    (d / "00001.txt").write_text("person 0.5 1 1 5 5\ndog 0.5 1 1 5 5\n")
    assert "00001.txt line 2: unknown class 'dog'" in _bad(capsys, "--ground-truth", sample / "groundtruths",
                                                           "--box-format", "xywh", "--detections", d)
    (d / "00001.txt").write_text("person 0.5 1 1 5\n")
    assert "00001.txt line 1: expected `class confidence" in _bad(capsys, "--ground-truth", sample / "groundtruths",
                                                                   "--box-format", "xywh", "--detections", d)
    (d / "00001.txt").write_text("person 0.5 1 1 5 5\n")
    (d / "zzz.txt").write_text("person 0.5 1 1 5 5\n")
    assert "image 'zzz' is not in the ground truth" in _bad(capsys, "--ground-truth", sample / "groundtruths",
                                                            "--box-format", "xywh", "--detections", d)
    (tmp_path / "c.json").write_text('[{"image_id": "00001", "category_id": 3, "bbox": [1, 1, 4, 4], "score": 0.5}]')
    assert "unknown category id 3" in _bad(capsys, "--ground-truth", sample / "groundtruths", "--box-format", "xywh",
                                           "--detections", tmp_path / "c.json")


def test_bad_ground_truth(test_data, tmp_path, capsys, sample):
    (tmp_path / "d.json").write_text("[]")
    ann = tmp_path / "ann"
    ann.mkdir()
    (ann / "a.xml").write_text("<annotation>\n<object><name>x</name>\n</annotation>\n")
    assert "a.xml line 3: malformed XML" in _bad(capsys, "--ground-truth", ann, "--detections", tmp_path / "d.json")
    assert "val.txt: no such file" in _bad(capsys, "--ground-truth", test_data / "voc-mini" / "ImageSets" / "Main" / "val.txt",
                                           "--detections", tmp_path / "d.json")
    (tmp_path / "classes.txt").write_text("WBC\n")
    assert "unknown class 'RBC'" in _bad(capsys, "--ground-truth", test_data / "voc-mini" / "ImageSets" / "Main" / "test.txt",
                                         "--classes", tmp_path / "classes.txt", "--detections", tmp_path / "d.json")
    g = tmp_path / "gt"
    g.mkdir()
    (g / "a.txt").write_text("person 1 1 nan 5\n")
    assert "a.txt line 1: a number is NaN or infinite" in _bad(capsys, "--ground-truth", g, "--detections", tmp_path / "d.json")
    (tmp_path / "gt.json").write_text('{"images": [{"id": 1}], "categories": [{"id": 1, "name": "a"}],\n "annotations": [}')
    assert "gt.json line 2: malformed JSON" in _bad(capsys, "--ground-truth", tmp_path / "gt.json", "--detections", tmp_path / "d.json")
    assert "no such file" in _bad(capsys, "--ground-truth", tmp_path / "nope", "--detections", tmp_path / "d.json")
    assert "--iou 1.5" in _bad(capsys, "--ground-truth", g, "--detections", tmp_path / "d.json", "--iou", "1.5")
    assert "give --ground-truth and --detections" in _bad(capsys, "--detections", tmp_path / "d.json")


@pytest.mark.parametrize("content", ["", "[]", "\n\n"])
def test_empty_detections_file_is_ap_zero(sample, tmp_path, capsys, content):
    p = tmp_path / ("d.json" if content == "[]" else "d.txt")
    p.write_text(content)
    rc, out, err = _run(capsys, "--ground-truth", sample / "groundtruths", "--box-format", "xywh",
                        "--detections", p, "--json", tmp_path / "r.json")
    assert rc == 0, err
    assert json.loads((tmp_path / "r.json").read_text())["mAP"] == 0.0
    assert "no detections" in err


# --- split mode (the detection part belongs to detector.inference; patched here) --------------------


def test_split_mode_scores_and_saves_detections(test_data, tmp_path, capsys, monkeypatch):
    import detector.inference as inference
    from detector.datasets import load_dataset

    calls = {}

    def fake_detect_split(cfg, split, model_path=None, cache_dir=None, device="auto", **kw):
        calls.update(split=split, model=model_path, cache=cache_dir, device=device, root=cfg.data.root, proto=cfg.test.protocol)
        ds = load_dataset(cfg.data, split)
        items = []
        for r in ds.records:  # the ground truth itself minus the last box of each image
            items.append({"image": r.path, "detections": [
                {"box": b.tolist(), "score": 0.9 - 0.001 * k, "label": ds.classes[l - 1]}
                for k, (b, l) in enumerate(zip(r.boxes[:-1], r.labels[:-1]))]})
        return ds, items

    monkeypatch.setattr(inference, "detect_split", fake_detect_split)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("data:\n  format: voc\n  root: /nonexistent\n")
    rc, out, err = _run(capsys, "--split", "test", "--config", cfg, "--data-root", test_data / "voc-mini",
                        "--set", "test.protocol=voc07", "--model", "m.pt", "--device", "cpu",
                        "--json", tmp_path / "out" / "r.json", "--plots", tmp_path / "out")
    assert rc == 0, err
    assert calls == {"split": "test", "model": "m.pt", "cache": None, "device": "cpu",
                     "root": str(test_data / "voc-mini"), "proto": "voc07"}
    r = json.loads((tmp_path / "out" / "r.json").read_text())
    assert r["protocol"] == "voc07" and 0.8 < r["mAP"] < 1.0
    saved = tmp_path / "out" / "detections_test.json"
    assert saved.is_file() and (tmp_path / "out" / "r.config.yaml").is_file()
    assert (tmp_path / "out" / "pr_voc07.png").is_file()
    # re-scoring the saved detections from files gives the same numbers
    rc, out2, err = _run(capsys, "--protocol", "voc07", "--ground-truth", test_data / "voc-mini" / "ImageSets" / "Main" / "test.txt",
                         "--detections", saved, "--json", tmp_path / "r2.json")
    assert rc == 0, err
    assert json.loads((tmp_path / "r2.json").read_text())["mAP"] == r["mAP"]
    # --save-detections and --protocol override
    rc, out, err = _run(capsys, "--split", "test", "--config", cfg, "--data-root", test_data / "voc-mini",
                        "--protocol", "coco", "--save-detections", tmp_path / "mine.json")
    assert rc == 0 and (tmp_path / "mine.json").is_file() and "Average Precision" in out


def test_split_mode_bad_usage(tmp_path, capsys, sample):
    assert "--split needs --config" in _bad(capsys, "--split", "test")
    assert "do not combine" in _bad(capsys, "--split", "test", "--config", "x.yaml", "--detections", sample / "detections")
    assert "config" in _bad(capsys, "--split", "test", "--config", tmp_path / "none.yaml")
