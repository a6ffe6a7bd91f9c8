"""detector.io.detections: detection files (project JSON, devkit submission, COCO results, text
folders) read back as written, in any line order, empty, and their bad input; read through
eval-map, whose bad input is one error line and exit code 2."""

import json
import random
import re
import warnings

import numpy as np
import pytest

from backbone.errors import InputWarning, UserError
from detector.io.datasets import ground_truth
from detector.io.datasets.ground_truth import read_ground_truth
from detector.io.detections import (
    InvertedBoxWarning,
    UnknownClassWarning,
    detections_to_items,
    read_detections,
    write_coco_results,
    write_detections,
    write_detections_json,
    write_devkit_submission,
    write_text_detections,
)
from eval import evaluate
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
    ('[{"image": "00001", "detections": [{"box": [1, 2, 3], "score": 1, "label": "person"}]}]', "box is not 4 numbers"),
    ('{"x": 1}', "expected a list"),
])
def test_bad_detections_json(sample, tmp_path, capsys, content, match):
    (tmp_path / "d.json").write_text(content)
    line = eval_map_error(capsys, "--ground-truth", sample / "groundtruths", "--box-format", "xywh", "--detections", tmp_path / "d.json",
                          "--strict")
    assert match in line or __import__("re").search(match, line), line


@pytest.mark.parametrize("content, match", [
    ("1 1 0.5 1 1 10 10\n1 7 0.5 1 1 10 10\n", "dk.txt line 2: unknown class id 7"),
    ("1 1 0.5 1 1 10 10\n99 1 0.5 1 1 10 10\n", "dk.txt line 2: image index 99 is not in the ground truth"),
    ("1 1 0.5 1 1 10 10\n1 1 nan 1 1 10 10\n", "dk.txt line 2: NaN or infinite"),
    ("1 1 0.5 1 1 10 10\n1 1 0.5 1 1 10\n", "dk.txt line 2: expected `image_index"),
])
def test_bad_devkit_lines(sample, tmp_path, capsys, content, match):
    (tmp_path / "dk.txt").write_text(content)
    line = eval_map_error(capsys, "--ground-truth", sample / "groundtruths", "--box-format", "xywh", "--detections", tmp_path / "dk.txt",
                          "--strict")
    assert __import__("re").search(match, line), line


def test_bad_text_folder_and_coco_results(sample, tmp_path, capsys):
    d = tmp_path / "dets"
    d.mkdir()
    (d / "00001.txt").write_text("person 0.5 1 1 5 5\ndog 0.5 1 1 5 5\n")
    assert "00001.txt line 2: unknown class 'dog'" in eval_map_error(capsys, "--ground-truth", sample / "groundtruths",
                                                           "--box-format", "xywh", "--detections", d, "--strict")
    (d / "00001.txt").write_text("person 0.5 1 1 5\n")
    assert "00001.txt line 1: expected `class confidence" in eval_map_error(capsys, "--ground-truth", sample / "groundtruths",
                                                                   "--box-format", "xywh", "--detections", d)
    (d / "00001.txt").write_text("person 0.5 1 1 5 5\n")
    (d / "zzz.txt").write_text("person 0.5 1 1 5 5\n")
    assert "image 'zzz' is not in the ground truth" in eval_map_error(capsys, "--ground-truth", sample / "groundtruths",
                                                            "--box-format", "xywh", "--detections", d)
    (tmp_path / "c.json").write_text('[{"image_id": "00001", "category_id": 3, "bbox": [1, 1, 4, 4], "score": 0.5}]')
    assert "unknown category id 3" in eval_map_error(capsys, "--ground-truth", sample / "groundtruths", "--box-format", "xywh",
                                           "--detections", tmp_path / "c.json", "--strict")


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


def _odd_dets(gt, seed=0):
    """Detections with float64 boxes that float arithmetic would not round-trip (x1 + 1 - 1 != x1)."""
    rng = np.random.default_rng(seed)
    out = []
    for k, r in enumerate(gt.records):
        n = 0 if k == 1 else 5  # an image without detections: an empty file
        xy = rng.uniform(0, 200, (n, 2))
        boxes = np.concatenate([xy, xy + rng.uniform(0.1, 90, (n, 2))], 1)
        boxes[:1, :2] = 0.1  # 0.1 + 1 - 1 == 0.10000000000000009 in floats
        out.append({"boxes": boxes, "scores": rng.uniform(0, 1, n), "labels": np.ones(n, np.int64)})
    return out


def test_text_folder_round_trip_is_exact(sample, tmp_path, capsys):
    gt = _sample_gt(sample)
    for dets in (read_detections(str(sample / "detections"), gt, "xywh"), _odd_dets(gt)):
        folder = tmp_path / f"t{len(list(tmp_path.iterdir()))}"
        paths = write_text_detections(str(folder), gt, dets)
        assert len(paths) == len(gt.records) and all(p.endswith(".txt") for p in paths)
        back = read_detections(str(folder), gt)
        for a, b in zip(dets, back):
            np.testing.assert_array_equal(a["boxes"], b["boxes"])
            np.testing.assert_array_equal(a["scores"], b["scores"])
            np.testing.assert_array_equal(a["labels"], b["labels"])
    # the lines are Cartucho/mAP's: class score left top right bottom, 1-based inclusive
    first = (folder / "00001.txt").read_text().splitlines()[0].split()
    assert first[0] == "person" and first[2:4] == ["1.1", "1.1"]
    # and the same mAP as the files they came from (the text folder is xyxy, the sample xywh)
    dets = read_detections(str(sample / "detections"), gt, "xywh")
    write_text_detections(str(tmp_path / "sample"), gt, dets)
    aps = [evaluate("voc", ground_truth(gt), d, 1, iou=0.3)["mAP"] for d in (dets, read_detections(str(tmp_path / "sample"), gt))]
    assert aps[0] == aps[1] == pytest.approx(0.245687, abs=1e-6)


def test_coco_results_without_coco_ground_truth_use_the_ids_mapping(sample, tmp_path, capsys):
    gt = _sample_gt(sample)
    dets = read_detections(str(sample / "detections"), gt, "xywh")
    p = tmp_path / "c.json"
    written = write_coco_results(str(p), gt, dets)
    ids = json.loads((tmp_path / "c.ids.json").read_text())
    assert written == [str(p), str(tmp_path / "c.ids.json")]
    assert ids["categories"] == {"1": "person"} and ids["images"]["1"]["image_id"] == gt.records[0].image_id
    results = json.loads(p.read_text())
    assert {r["image_id"] for r in results} <= set(range(1, len(gt.records) + 1))
    back = read_detections(str(p), gt)
    for a, b in zip(dets, back):
        np.testing.assert_allclose(a["boxes"], b["boxes"], atol=1e-9)
        np.testing.assert_array_equal(a["labels"], b["labels"])
    # without the mapping the numbered images are not the ground truth's
    (tmp_path / "c.ids.json").unlink()
    assert "is not in the ground truth" in eval_map_error(capsys, "--ground-truth", sample / "groundtruths",
                                                          "--box-format", "xywh", "--detections", p)


def test_coco_results_of_a_coco_ground_truth_keep_its_ids(tmp_path):
    gt_file, _ = coco_eval_files(tmp_path)
    gt = read_ground_truth(str(gt_file))
    dets = [{"boxes": r.boxes.astype(np.float64), "scores": np.ones(len(r.boxes)), "labels": r.labels} for r in gt.records]
    assert write_coco_results(str(tmp_path / "r.json"), gt, dets) == [str(tmp_path / "r.json")]
    assert not (tmp_path / "r.ids.json").exists()
    res = json.loads((tmp_path / "r.json").read_text())
    assert {str(r["image_id"]) for r in res} <= {r.image_id for r in gt.records}
    assert {r["category_id"] for r in res} <= set(gt.class_ids)


def test_write_detections_formats_and_devkit_without_ids(sample, tmp_path):
    gt = _sample_gt(sample)
    dets = read_detections(str(sample / "detections"), gt, "xywh")
    with pytest.raises(UserError, match="--format devkit needs the ILSVRC devkit's ids.*class ids.*devkit image indexes"):
        write_detections(str(tmp_path / "k.txt"), "devkit", gt, dets)
    assert not (tmp_path / "k.txt").exists()
    for fmt in ("json", "coco", "txt"):
        out = tmp_path / f"o_{fmt}"
        write_detections(str(out), fmt, gt, dets)
        back = read_detections(str(out), gt)
        assert [len(d["scores"]) for d in back] == [len(d["scores"]) for d in dets]


def _with_foreign_class(sample, tmp_path):
    """The sample's detections plus `refrigerator` lines, a class its ground truth lacks."""
    d = tmp_path / "dets"
    d.mkdir()
    for f in (sample / "detections").iterdir():
        (d / f.name).write_text(f.read_text())
    with open(d / "00001.txt", "a") as f:
        f.write("refrigerator 0.99 1 1 30 30\nrefrigerator 0.5 5 5 30 30\n")
    with open(d / "00003.txt", "a") as f:
        f.write("sofa 0.7 1 1 30 30\n")
    return d


def test_unknown_classes_are_left_out_with_one_warning(sample, tmp_path, capsys):
    d = _with_foreign_class(sample, tmp_path)
    base = ["--ground-truth", sample / "groundtruths", "--box-format", "xywh", "--iou", "0.3"]
    rc, _out, err = run_eval_map(capsys, *base, "--detections", d, "--json", tmp_path / "r.json")
    assert rc == 0, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("eval-map: warning: "), err
    assert "3 detection(s)" in lines[0] and "refrigerator (2), sofa (1)" in lines[0] and "--strict" in lines[0]
    assert json.loads((tmp_path / "r.json").read_text())["mAP"] == pytest.approx(0.245687, abs=1e-6)
    line = eval_map_error(capsys, *base, "--detections", d, "--strict")
    assert "00001.txt line 4: unknown class 'refrigerator'" in line, line
    # an image the ground truth lacks stays an error
    (d / "zzz.txt").write_text("person 0.5 1 1 5 5\n")
    assert "image 'zzz' is not in the ground truth" in eval_map_error(capsys, *base, "--detections", d)


@pytest.mark.parametrize("fmt", ["json", "coco", "devkit"])
def test_unknown_class_ids_of_every_reader_are_left_out(sample, tmp_path, capsys, fmt):
    gt = _sample_gt(sample)
    p = tmp_path / "d"
    if fmt == "json":
        p.write_text('[{"image": "00001", "detections": [{"box": [1, 2, 3, 4], "score": 1, "label": "person"},'
                     ' {"box": [1, 2, 3, 4], "score": 0.5, "label": "cat"}, {"box": [1, 2, 3, 4], "score": 0.5, "label": 7}]}]')
        want = "cat (1), class 7 (1)"
    elif fmt == "coco":
        p.write_text('[{"image_id": "00001", "category_id": 1, "bbox": [1, 1, 4, 4], "score": 0.5},'
                     ' {"image_id": "00001", "category_id": 3, "bbox": [1, 1, 4, 4], "score": 0.5}]')
        want = "category id 3 (1)"
    else:
        p.write_text("1 1 0.5 1 1 10 10\n1 7 0.5 1 1 10 10\n1 7 0.4 1 1 10 10\n")
        want = "class id 7 (2)"
    with pytest.warns(UnknownClassWarning, match=r"left out: " + re.escape(want)):
        dets = read_detections(str(p), gt)
    assert sum(len(d["scores"]) for d in dets) == 1 and dets[0]["labels"].tolist() == [1]
    with warnings.catch_warnings():   # --strict: the first is the error
        warnings.simplefilter("error", InputWarning)
        with pytest.raises(UnknownClassWarning, match="unknown"):
            read_detections(str(p), gt)


# ---------------------------------------------------------------------------------------------
# inverted boxes and BOMs: read as the peers read them


def _inverted_file(tmp_path, fmt):
    """One normal and two inverted detections of image 00001 (person), in format ``fmt``; the
    boxes we read (0-based, x2 exclusive) and the first inverted one's place as the warning names it."""
    want = [[0, 0, 10, 10], [19, 0, 10, 10], [0, 29, 10, 20]]   # the second: x2 < x1, the third: y2 < y1
    if fmt == "json":
        p = tmp_path / "d.json"
        p.write_text(json.dumps([{"image": "00001", "detections": [
            {"box": b, "score": 0.9 - 0.1 * k, "label": "person"} for k, b in enumerate(want)]}]))
        return p, want, "entry #0 detection #1: [19.0, 0.0, 10.0, 10.0]"
    if fmt == "coco":
        p = tmp_path / "c.json"
        p.write_text(json.dumps([{"image_id": "00001", "category_id": 1, "score": 0.9 - 0.1 * k,
                                  "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]]} for k, b in enumerate(want)]))
        return p, want, "result #1: bbox [19.0, 0.0, -9.0, 10.0]"
    if fmt == "devkit":
        p = tmp_path / "dk.txt"
        p.write_text("".join(f"1 1 {0.9 - 0.1 * k:.1f} {b[0] + 1} {b[1] + 1} {b[2]} {b[3]}\n" for k, b in enumerate(want)))
        return p, want, "line 2: [20.0, 1.0, 10.0, 10.0]"
    p = tmp_path / "dets"
    p.mkdir()
    (p / "00001.txt").write_text("".join(f"person {0.9 - 0.1 * k:.1f} {b[0] + 1} {b[1] + 1} {b[2]} {b[3]}\n"
                                         for k, b in enumerate(want)))
    return p, want, "00001.txt line 2: [20.0, 1.0, 10.0, 10.0]"


@pytest.mark.parametrize("fmt", ["json", "coco", "devkit", "txt"])
def test_inverted_boxes_of_every_reader_are_kept_with_one_warning(sample, tmp_path, fmt):
    gt = _sample_gt(sample)
    p, want, first = _inverted_file(tmp_path, fmt)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        dets = read_detections(str(p), gt)
    assert [w.category for w in seen] == [InvertedBoxWarning], [str(w.message) for w in seen]
    msg = str(seen[0].message)
    assert msg.startswith(f"{p}: 2 box(es) inverted (") and f"; e.g. {first}; " in msg, msg
    np.testing.assert_allclose(dets[0]["boxes"], want)   # kept as they are: eval scores them as the devkits do
    with warnings.catch_warnings():   # --strict: the first inverted box is the error
        warnings.simplefilter("error", InputWarning)
        with pytest.raises(InvertedBoxWarning, match=re.escape(f"{p}: {first} (box(es) inverted")):
            read_detections(str(p), gt)


def test_inverted_boxes_in_sizes_name_the_box_format(sample, tmp_path):
    gt = _sample_gt(sample)
    d = tmp_path / "dets"
    d.mkdir()
    (d / "00001.txt").write_text("person 0.5 10 10 -3 5\n")
    with pytest.warns(InvertedBoxWarning, match=r"1 box\(es\) inverted \(a negative width or height\); "
                      r"e\.g\. 00001\.txt line 1: \[10\.0, 10\.0, -3\.0, 5\.0\] .*--box-format xyxy"):
        dets = read_detections(str(d), gt, "xywh")
    np.testing.assert_allclose(dets[0]["boxes"], [[9, 9, 7, 15]])


def test_a_utf8_bom_is_skipped(sample, tmp_path):
    # Windows editors write one first; the class name (text) and the first number (devkit) are intact
    gt = _sample_gt(sample)
    want = read_detections(str(sample / "detections"), gt, "xywh")
    d = tmp_path / "dets"
    d.mkdir()
    for f in (sample / "detections").iterdir():
        (d / f.name).write_text(f.read_text(), encoding="utf-8-sig")
    dk = tmp_path / "dk.txt"
    write_devkit_submission(str(dk), gt, want)
    dk.write_text(dk.read_text(), encoding="utf-8-sig")
    assert dk.read_bytes().startswith(b"\xef\xbb\xbf")
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # nothing left out as an unknown class
        for got in (read_detections(str(d), gt, "xywh"), read_detections(str(dk), gt)):
            for a, b in zip(want, got):
                np.testing.assert_allclose(a["boxes"], b["boxes"], atol=1e-5)
                np.testing.assert_array_equal(a["labels"], b["labels"])


@pytest.mark.parametrize("fmt", ["coco", "devkit"])
def test_detections_left_out_are_not_counted_as_inverted(sample, tmp_path, fmt):
    # as the JSON and text readers: a detection of an unknown class is left out before its box is looked at
    gt = _sample_gt(sample)
    p = tmp_path / "d"
    if fmt == "coco":
        p.write_text('[{"image_id": "00001", "category_id": 1, "bbox": [1, 1, 4, 4], "score": 0.5},'
                     ' {"image_id": "00001", "category_id": 3, "bbox": [9, 9, -4, 4], "score": 0.5}]')
    else:
        p.write_text("1 1 0.5 1 1 10 10\n1 7 0.5 10 10 1 1\n")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        read_detections(str(p), gt)
    assert [w.category for w in seen] == [UnknownClassWarning], [str(w.message) for w in seen]
