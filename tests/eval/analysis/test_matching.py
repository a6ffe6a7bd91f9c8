"""eval.analysis.matching: the one matching pass against eval.detection's matchings (the same
kernel) and each protocol's evaluate."""

import math

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from eval import evaluate
from eval.analysis import analyze
from eval.analysis.matching import Scene
from eval.detection import flatten, match_ilsvrc, match_voc

from ..test_detection_ap import C, scene
from .common import NAMES, SETTINGS, _same


@SETTINGS
@given(scene(blacklist=True), st.sampled_from(["voc", "voc07", "ilsvrc", "coco"]), st.sampled_from([None, 0.3, 0.6]))
def test_stack_c50_c75_and_ap_are_the_protocols_evaluate(s, protocol, iou):
    gts, dets = s
    r = analyze(protocol, gts, dets, NAMES, iou=iou)
    for key, thr in (("C50", 0.5), ("C75", 0.75)):
        want = evaluate(protocol, gts, dets, C, iou=thr)["AP"]
        got = [r["coco_stack"]["per_class"][n]["AP"][key] if n in r["coco_stack"]["per_class"] else None for n in NAMES]
        _same(got, want, f"{protocol} {key}")
    e = evaluate(protocol, gts, dets, C, iou=iou)
    _same(r["AP"], e["AP"], f"{protocol} AP at {iou}")
    # COCOeval says -1 for "no object at all", we say nan (None in JSON)
    _same([r["mAP"]], [math.nan if (protocol == "coco" and e["mAP"] == -1) else e["mAP"]], "mAP")
    assert r["npos"] == e["npos"]


@SETTINGS
@given(scene(blacklist=True), st.sampled_from([0.5, 0.3, 0.7]))
def test_matchings_are_eval_detections(s, thr):
    gts, dets = s
    f = flatten(gts, dets, C)
    for protocol, ref in (("voc", match_voc), ("ilsvrc", match_ilsvrc)):
        tp, ignored = ref(f, C, thr)
        state, gt = Scene(protocol, gts, dets, C, thr, None).match(thr)
        np.testing.assert_array_equal(state == 1, tp, protocol)
        np.testing.assert_array_equal(state == -1, ignored, protocol)
        assert (gt[state == 1] >= 0).all() and (f.g_lab[gt[state == 1]] == f.d_lab[state == 1]).all()


@SETTINGS
@given(scene(blacklist=True, inverted=True), st.sampled_from(["voc", "voc07", "ilsvrc", "coco"]), st.sampled_from([None, 0.5]))
def test_inverted_detections_get_evaluates_decisions(s, protocol, iou):
    # an inverted detection (x2 < x1 or y2 < y1) overlaps nothing: a false positive in both, or
    # (coco, one negative side: negative area, outside every range) ignored in both
    gts, dets = s
    thr = 0.5 if iou is None else iou
    if protocol != "coco":
        f = flatten(gts, dets, C)
        tp, ignored = (match_ilsvrc if protocol == "ilsvrc" else match_voc)(f, C, thr)
        state, _ = Scene(protocol, gts, dets, C, thr, None).match(thr)
        np.testing.assert_array_equal(state == 1, tp, protocol)
        np.testing.assert_array_equal(state == -1, ignored, protocol)
    r = analyze(protocol, gts, dets, NAMES, iou=iou)
    e = evaluate(protocol, gts, dets, C, iou=iou)
    _same(r["AP"], e["AP"], f"{protocol} AP at {iou}")
    assert r["npos"] == e["npos"]
