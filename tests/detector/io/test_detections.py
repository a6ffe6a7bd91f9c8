"""detector.io.detections: detection files (project JSON, devkit submission, COCO results, text
folders) read back as written, in any line order, empty, and their bad input; read through
eval-map, whose bad input is one error line and exit code 2."""

import json
import random

import numpy as np
import pytest

from detector.io.datasets.ground_truth import read_ground_truth
from detector.io.detections import (detections_to_items, read_detections, write_coco_results, write_detections_json,
                                    write_devkit_submission)
from tests.detector.helpers import coco_eval_files, eval_map_error, run_eval_map


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
        rc, out, err = run_eval_map(capsys, "--protocol", "voc", "--ground-truth", sample / "groundtruths", "--box-format", "xywh",
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
        rc, out, err = run_eval_map(capsys, "--ground-truth", sample / "groundtruths", "--box-format", "xywh",
                            "--detections", p, "--iou", "0.3", "--json", tmp_path / "r.json")
        assert rc == 0, err
        results.append(json.loads((tmp_path / "r.json").read_text())["mAP"])
    assert results[0] == results[1] == results[2]


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
    line = eval_map_error(capsys, "--ground-truth", sample / "groundtruths", "--box-format", "xywh", "--detections", tmp_path / "d.json")
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
    line = eval_map_error(capsys, "--ground-truth", sample / "groundtruths", "--box-format", "xywh", "--detections", tmp_path / "dk.txt")
    assert __import__("re").search(match, line), line


def test_bad_text_folder_and_coco_results(sample, tmp_path, capsys):
    d = tmp_path / "dets"
    d.mkdir()
    (d / "00001.txt").write_text("person 0.5 1 1 5 5\ndog 0.5 1 1 5 5\n")
    assert "00001.txt line 2: unknown class 'dog'" in eval_map_error(capsys, "--ground-truth", sample / "groundtruths",
                                                           "--box-format", "xywh", "--detections", d)
    (d / "00001.txt").write_text("person 0.5 1 1 5\n")
    assert "00001.txt line 1: expected `class confidence" in eval_map_error(capsys, "--ground-truth", sample / "groundtruths",
                                                                   "--box-format", "xywh", "--detections", d)
    (d / "00001.txt").write_text("person 0.5 1 1 5 5\n")
    (d / "zzz.txt").write_text("person 0.5 1 1 5 5\n")
    assert "image 'zzz' is not in the ground truth" in eval_map_error(capsys, "--ground-truth", sample / "groundtruths",
                                                            "--box-format", "xywh", "--detections", d)
    (tmp_path / "c.json").write_text('[{"image_id": "00001", "category_id": 3, "bbox": [1, 1, 4, 4], "score": 0.5}]')
    assert "unknown category id 3" in eval_map_error(capsys, "--ground-truth", sample / "groundtruths", "--box-format", "xywh",
                                           "--detections", tmp_path / "c.json")


def test_bad_coco_results(tmp_path, capsys):
    gt_file, _ = coco_eval_files(tmp_path)
    for content, match in [
        ('[{"image_id": 99, "category_id": 10, "bbox": [1, 1, 4, 4], "score": 0.5}]', "image_id 99 is not in the ground truth"),
        ('[{"image_id": 1, "category_id": 10, "bbox": [1, NaN, 4, 4], "score": 0.5}]', "result #0: NaN or infinite"),
        ('[{"image_id": 1, "category_id": 10, "bbox": [1, 1, 4, 4]}]', "result #0 lacks"),
    ]:
        (tmp_path / "c.json").write_text(content)
        line = eval_map_error(capsys, "--protocol", "coco", "--ground-truth", gt_file, "--detections", tmp_path / "c.json")
        assert match in line, line


@pytest.mark.parametrize("content", ["", "[]", "\n\n"])
def test_empty_detections_file_is_ap_zero(sample, tmp_path, capsys, content):
    p = tmp_path / ("d.json" if content == "[]" else "d.txt")
    p.write_text(content)
    rc, out, err = run_eval_map(capsys, "--ground-truth", sample / "groundtruths", "--box-format", "xywh",
                        "--detections", p, "--json", tmp_path / "r.json")
    assert rc == 0, err
    assert json.loads((tmp_path / "r.json").read_text())["mAP"] == 0.0
    assert "no detections" in err


def test_empty_detections_folder_is_ap_zero(tmp_path, capsys, test_data):
    (tmp_path / "dets").mkdir()
    rc, out, err = run_eval_map(capsys, "--ground-truth", test_data / "metrics-sample" / "groundtruths", "--box-format", "xywh",
                        "--detections", tmp_path / "dets", "--json", tmp_path / "r.json")
    assert rc == 0, err
    assert json.loads((tmp_path / "r.json").read_text())["mAP"] == 0.0 and "no detections" in err
