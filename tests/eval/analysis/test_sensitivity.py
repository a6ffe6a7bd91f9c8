"""eval.analysis.sensitivity: size ranges against pycocotools' COCOeval area ranges, aspect bins,
the confusion matrix and the best-F1 thresholds."""

import contextlib
import io
import math

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from eval.analysis import analyze

from ..test_detection_ap import C
from .common import NAMES, O1, O2, O3, SETTINGS, _d, _g, _same, _to_coco, scaled_scene


@SETTINGS
@given(scaled_scene(), st.sampled_from([None, 0.5]))
def test_size_ranges_are_cocoevals_area_ranges(s, iou):
    _size_ranges_are_cocoevals(s, iou)


@SETTINGS
@given(scaled_scene(inverted=True), st.sampled_from([None, 0.5]))
def test_size_ranges_with_inverted_detections_are_cocoevals(s, iou):
    _size_ranges_are_cocoevals(s, iou)


def _size_ranges_are_cocoevals(s, iou):
    from pycocotools.cocoeval import COCOeval

    gts, dets = s
    gt, dt = _to_coco(gts, dets, [{"id": c, "name": NAMES[c - 1]} for c in range(1, C + 1)])
    with contextlib.redirect_stdout(io.StringIO()):
        E = COCOeval(gt, dt, "bbox")
        if iou is not None:
            E.params.iouThrs = np.array([iou])
        E.evaluate()
        E.accumulate()
        E.summarize()
    r = analyze("coco", gts, dets, NAMES, iou=iou)
    size = r["sensitivity"]["size"]
    for a, rng in enumerate(["small", "medium", "large"], start=1):
        want = []
        for k in range(C):
            p = E.eval["precision"][:, :, k, a, -1]
            want.append(p[p > -1].mean() if (p > -1).any() else math.nan)
        _same([size["per_class"][n][rng] for n in NAMES], want, rng)
        if iou is None:   # COCOeval's AP_small / AP_medium / AP_large (-1 when no object is in range)
            _same([size["mAP"][rng] if size["mAP"][rng] is not None else -1.0], [E.stats[2 + a]], rng)


def test_confusion_and_f1():
    gts = [_g([O1, O2, O3], [1, 2, 2])]
    # a hit on O1 (a), a class-a box on O2 (b object: confusion), O3 missed, a background box
    dets = [_d([O1, O2, [400, 400, 420, 420]], [0.9, 0.8, 0.7], [1, 1, 1])]
    r = analyze("voc", gts, dets, ["a", "b"])
    f1 = r["f1"]["a"]
    # ranked TP, FP, FP: F1 is best after the first (P 1, R 1)
    assert f1 == {"score": 0.9, "f1": 1.0, "precision": 1.0, "recall": 1.0}
    assert r["f1"]["b"]["score"] is None
    M = r["confusion"]["matrix"]   # rows a, b, background; columns a, b, missed
    assert M == [[1, 0, 0], [0, 0, 2], [0, 0, 0]]
    dets[0]["scores"] = np.array([0.9, 0.95, 0.7])    # now the confusing box is kept at a's best F1
    r = analyze("voc", gts, dets, ["a", "b"])
    assert r["f1"]["a"]["score"] == 0.9
    assert r["confusion"]["matrix"] == [[1, 0, 0], [1, 0, 1], [0, 0, 0]]


def test_sensitivity_bins_voc():
    # a small and a large object, both found; a large false positive ranked first
    gts = [_g([[0, 0, 10, 10], [100, 100, 300, 200]], [1, 1])]
    dets = [_d([[400, 0, 600, 100], [0, 0, 10, 10], [100, 100, 300, 200]], [0.9, 0.8, 0.7], [1, 1, 1])]
    s = analyze("voc", gts, dets, ["a"])["sensitivity"]
    assert s["size"]["per_class"]["a"] == {"small": 1.0, "medium": None, "large": 0.5}
    assert s["size"]["npos"] == {"small": 1, "medium": 0, "large": 1}
    assert s["aspect"]["per_class"]["a"]["square"] == 1.0 and s["aspect"]["per_class"]["a"]["extra-wide"] == 0.5
