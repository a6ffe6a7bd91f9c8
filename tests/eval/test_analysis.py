"""eval.analysis: the stack's C50/C75 against each protocol's evaluate, the matchings against
eval.detection's, size ranges against pycocotools' COCOeval, the COCO stack against a transcription
of mmdetection's coco_error_analysis, hand-worked TIDE and Hoiem cases (and mutants of the TIDE
rules that these cases must catch), the report files, and (slow) the tidecv package on the
committed BCCD sample."""

import contextlib
import copy
import io
import json
import math
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eval import analysis as A
from eval import evaluate
from eval.analysis import COCO_SUPERCATEGORIES, analyze, summary_lines, write_report
from eval.detection import flatten, match_ilsvrc, match_voc

from .test_detection_ap import C, scene

NAMES = ["a", "b", "c"]
FIXTURE = Path(__file__).resolve().parent.parent / "data" / "analysis"
SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _same(a, b, what=""):
    assert len(a) == len(b), what
    for x, y in zip(a, b):
        x = math.nan if x is None else x
        y = math.nan if y is None else y
        assert (math.isnan(x) and math.isnan(y)) or abs(x - y) < 1e-12, (what, a, b)


# ----------------------------------------------------------------------------------------------
# the protocols' own numbers


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
        state, gt = A._Scene(protocol, gts, dets, C, thr, None).match(thr)
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
        state, _ = A._Scene(protocol, gts, dets, C, thr, None).match(thr)
        np.testing.assert_array_equal(state == 1, tp, protocol)
        np.testing.assert_array_equal(state == -1, ignored, protocol)
    r = analyze(protocol, gts, dets, NAMES, iou=iou)
    e = evaluate(protocol, gts, dets, C, iou=iou)
    _same(r["AP"], e["AP"], f"{protocol} AP at {iou}")
    assert r["npos"] == e["npos"]


def _to_coco(gts, dets, cats):
    """pycocotools objects the way a user's files would give them (loadRes for the results)."""
    from pycocotools.coco import COCO

    images, anns, res = [], [], []
    for i, (g, d) in enumerate(zip(gts, dets)):
        images.append({"id": i + 1, "width": 1000, "height": 1000})
        for b, lab, df in zip(g["boxes"].tolist(), g["labels"].tolist(), g["difficult"].tolist()):
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": lab, "iscrowd": int(df),
                         "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]], "area": (b[2] - b[0]) * (b[3] - b[1])})
        for b, sc, lab in zip(d["boxes"].tolist(), d["scores"].tolist(), d["labels"].tolist()):
            res.append({"image_id": i + 1, "category_id": lab, "score": sc, "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]]})
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {"images": images, "annotations": anns, "categories": cats}
        gt.createIndex()
        dt = gt.loadRes(res) if res else None
    return gt, dt


@st.composite
def scaled_scene(draw, inverted=False):
    """test_detection_ap's scenes with each image scaled so that objects span COCO's small,
    medium and large ranges (its boxes are at most 16 px)."""
    gts, dets = draw(scene(inverted=inverted))
    for g, d in zip(gts, dets):
        k = draw(st.sampled_from([1.0, 4.0, 9.0]))
        g["boxes"] = g["boxes"] * k
        d["boxes"] = d["boxes"] * k
    if not any(len(d["scores"]) for d in dets):   # loadRes fails on no results at all
        dets[0] = {"boxes": np.array([[0.0, 0, 50, 50]]), "scores": np.array([0.5]), "labels": np.array([1])}
    return gts, dets


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


def _mmdet_stack(cocoGt, cocoDt):
    """mmdetection tools/analysis_tools/coco_error_analysis.py (analyze_results and
    analyze_individual_category, bbox, all areas), transcribed: returns ps (7, R, K)."""
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        E = COCOeval(copy.deepcopy(cocoGt), copy.deepcopy(cocoDt), "bbox")
        E.params.imgIds = cocoGt.getImgIds()
        E.params.iouThrs = [0.75, 0.5, 0.1]
        E.params.maxDets = [100]
        E.evaluate()
        E.accumulate()
        ps = E.eval["precision"]
        ps = np.vstack([ps, np.zeros((4, *ps.shape[1:]))])
        for k, catId in enumerate(cocoGt.getCatIds()):
            nm = cocoGt.loadCats(catId)[0]
            dt = copy.deepcopy(cocoDt)
            dt.dataset["annotations"] = [a for a in dt.dataset["annotations"] if a["category_id"] == catId]
            dt.createIndex()
            out = []
            for similar_only in (True, False):
                gt = copy.deepcopy(cocoGt)
                child = gt.getCatIds(supNms=[nm["supercategory"]])
                for ann in gt.dataset["annotations"]:
                    if ann["category_id"] != catId and (not similar_only or ann["category_id"] in child):
                        ann["ignore"] = 1
                        ann["iscrowd"] = 1
                        ann["category_id"] = catId
                e = COCOeval(gt, copy.deepcopy(dt), "bbox")
                e.params.imgIds = cocoGt.getImgIds()
                e.params.maxDets = [100]
                e.params.iouThrs = [0.1]
                e.params.useCats = 1
                e.evaluate()
                e.accumulate()
                out.append(e.eval["precision"][0, :, k, :, :])
            ps[3, :, k] = out[0]
            ps[4, :, k] = out[1]
            ps[ps == -1] = 0
            ps[5, :, k] = ps[4, :, k] > 0
            ps[6, :, k] = 1.0
    return ps[..., 0, 0]


@pytest.mark.parametrize("seed", range(4))
def test_coco_stack_is_mmdetections_coco_error_analysis(seed):
    rng = np.random.default_rng(seed)
    groups = {"a": "x", "b": "x", "c": "y"}
    gts, dets = [], []
    for _ in range(25):   # cells of overlapping objects, detections near them, some crowd
        n = int(rng.integers(1, 6))
        xy = rng.uniform(0, 150, (n, 2))
        b = np.c_[xy, xy + rng.uniform(6, 60, (n, 2))]
        lab = rng.integers(1, 4, n)
        gts.append({"boxes": b, "labels": lab, "difficult": rng.random(n) < 0.1})
        m = int(rng.integers(1, 15))
        pick = rng.integers(0, n, m)
        db = b[pick] + rng.normal(0, 5, (m, 4))
        far = rng.random(m) < 0.3
        db[far] = np.c_[rng.uniform(0, 150, (far.sum(), 2)), rng.uniform(0, 150, (far.sum(), 2)) + 160]
        db[:, 2:] = np.maximum(db[:, 2:], db[:, :2] + 1)
        dl = np.where(rng.random(m) < 0.7, lab[pick], rng.integers(1, 4, m))
        dets.append({"boxes": db, "scores": np.round(rng.random(m), 3), "labels": dl})
    cats = [{"id": i + 1, "name": n, "supercategory": groups[n]} for i, n in enumerate(NAMES)]
    ps = _mmdet_stack(*_to_coco(gts, dets, cats))
    r = analyze("coco", gts, dets, NAMES, class_groups=groups)
    assert r["coco_stack"]["types"] == list(A.STACK_TYPES)
    for k, n in enumerate(NAMES):
        want = ps[:, :, k].mean(axis=1)
        got = [r["coco_stack"]["per_class"][n]["AP"][t] for t in A.STACK_TYPES]
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12, err_msg=n)
        np.testing.assert_allclose(r["coco_stack"]["per_class"][n]["precision"]["Oth"], ps[4, :, k], atol=1e-6)
    # every class has objects here: "all" is mmdetection's allclass mean
    np.testing.assert_allclose([r["coco_stack"]["all"]["AP"][t] for t in A.STACK_TYPES], ps.mean(axis=(1, 2)), atol=1e-12)


# ----------------------------------------------------------------------------------------------
# TIDE on hand-made scenes: one error type each, boundaries, and the rules' order


def _g(boxes, labels, difficult=None):
    b = np.array(boxes, float).reshape(-1, 4)
    return {"boxes": b, "labels": np.array(labels, int), "difficult": np.zeros(len(b), bool) if difficult is None
            else np.array(difficult, bool)}


def _d(boxes, scores, labels):
    return {"boxes": np.array(boxes, float).reshape(-1, 4), "scores": np.array(scores, float),
            "labels": np.array(labels, int)}


O1, O2, O3 = [0, 0, 10, 10], [100, 100, 110, 110], [200, 200, 210, 210]
NO_ERRORS = dict.fromkeys(A.TIDE_MAIN, 0)

# name: (gts, dets, classes, expected error counts (others 0), expected dAP (others 0), voc)
TIDE_CASES = {
    # a class-a box at IoU .3 on O1 ranked above O2's hit: fixing it makes a second true positive
    "Loc": ([_g([O1, O2], [1, 1])], [_d([[0, 0, 10, 3], O2], [0.9, 0.5], [1, 1])], ["a"],
            {"Loc": 1}, {"Loc": 0.75}),
    # IoU exactly 0.1 is still Loc (TIDE: bg <= IoU <= fg), just under it is background
    "Loc at 0.1": ([_g([O1, O2], [1, 1])], [_d([[0, 0, 10, 1], O2], [0.9, 0.5], [1, 1])], ["a"],
                   {"Loc": 1}, {"Loc": 0.75}),
    "Bkg under 0.1": ([_g([O1, O2], [1, 1])], [_d([[0, 0, 10, 0.9], O2], [0.9, 0.5], [1, 1])], ["a"],
                      {"Bkg": 1, "Miss": 1}, {"Bkg": 0.25, "Miss": 0.25}),
    # IoU exactly t with an object already matched: Loc (the bound is inclusive), not Dupe; its
    # fix removes it (the object is taken)
    "Loc at IoU t": ([_g([O1, O2], [1, 1])], [_d([O1, [0, 0, 10, 5], O2], [0.9, 0.8, 0.7], [1, 1, 1])], ["a"],
                     {"Loc": 1}, {"Loc": 1 - (0.5 + 0.5 * 2 / 3)}),
    # IoU exactly 0.1 with an object of another class: still background (IoU <= 0.1), not Both
    "Bkg at 0.1": ([_g([O1, O2], [2, 1])], [_d([[0, 0, 10, 1], O2], [0.9, 0.5], [1, 1])], ["a", "b"],
                   {"Bkg": 1, "Miss": 1}, {"Bkg": 0.25, "Miss": 0.25}),
    # a class-b box exactly on the class-a object: fixing moves it to class a
    "Cls": ([_g([O1, O2], [1, 1])], [_d([O1, O2], [0.9, 0.5], [2, 1])], ["a", "b"],
            {"Cls": 1}, {"Cls": 0.5}),
    # a second box on O2 after its true positive, before O1's
    "Dupe": ([_g([O1, O2], [1, 1])], [_d([O2, [100, 100, 110, 108], O1], [0.9, 0.8, 0.7], [1, 1, 1])], ["a"],
             {"Dupe": 1}, {"Dupe": 1 - (0.5 + 0.5 * 2 / 3)}),
    # far from every object, and in an image without objects
    "Bkg": ([_g([O1, O2], [1, 1]), _g([], [])], [_d([O2, O1], [0.5, 0.4], [1, 1]), _d([O3], [0.9], [1])], ["a"],
            {"Bkg": 1}, {"Bkg": 1 - 2 / 3}),
    # class b at IoU .3 on the class-a object: neither Loc (no b object there) nor Cls (IoU < t)
    "Both": ([_g([O1, O3], [1, 2])], [_d([O1, [0, 0, 10, 3], O3], [0.3, 0.9, 0.5], [1, 2, 2])], ["a", "b"],
             {"Both": 1}, {"Both": 0.25}),
    "Miss": ([_g([O1, O2], [1, 1])], [_d([O2], [0.5], [1])], ["a"], {"Miss": 1}, {"Miss": 0.5}),
    # Loc is tested before Cls: IoU .3 with its own class wins over IoU 1 with class b
    "Loc before Cls": ([_g([O1, [0, 0, 10, 3], O2], [2, 1, 1])], [_d([[0, 0, 10, 10], O2], [0.9, 0.5], [1, 1])],
                       ["a", "b"], {"Loc": 1, "Miss": 1}, {"Loc": 0.375, "Miss": 0.125}),
    # one object, a Cls error (0.9) and a Loc error (0.8) on it: only the higher-scoring one is
    # fixed (tidecv's BestGTMatch is shared by both types), so fixing Loc gains nothing
    "best of Cls and Loc": ([_g([O1], [1])], [_d([O1, [0, 0, 10, 3]], [0.9, 0.8], [2, 1])], ["a", "b"],
                            {"Cls": 1, "Loc": 1}, {"Cls": 1.0}),
    # two Loc errors on O1: one true positive, the other removed
    "two Loc on one object": ([_g([O1, O2], [1, 1])], [_d([[0, 0, 10, 3], [0, 0, 10, 4], O2], [0.9, 0.8, 0.5], [1, 1, 1])],
                              ["a"], {"Loc": 2}, {"Loc": 1 - 1 / 6}),
    # a box on a difficult object is ignored by voc, so it is no error at all
    "difficult": ([_g([O1, O2], [1, 1], [True, False])], [_d([O1, O2], [0.9, 0.5], [1, 1])], ["a"], {}, {}),
}


def _check_tide_case(run, name):
    gts, dets, classes, counts, dap = TIDE_CASES[name]
    r = run("voc", gts, dets, classes)["tide"]
    assert r["counts"] == {**NO_ERRORS, **counts}, (name, r["counts"])
    for k in A.TIDE_MAIN:
        assert r["dAP"][k] == pytest.approx(dap.get(k, 0.0), abs=1e-12), (name, k, r["dAP"])


@pytest.mark.parametrize("name", list(TIDE_CASES))
def test_tide_error_types(name):
    _check_tide_case(analyze, name)


def test_tide_special_errors_and_coco_ap():
    gts, dets, classes, _, _ = TIDE_CASES["Loc"]
    r = analyze("voc", gts, dets, classes)["tide"]
    # FalsePos: the FP removed -> O2 alone, recall .5 at precision 1; FalseNeg: O1 removed
    assert r["special"] == pytest.approx({"FalsePos": 0.25, "FalseNeg": 0.25})
    assert r["mAP"] == pytest.approx(0.25)
    # coco: the same errors, COCO's 101-point AP (rec .5 at prec .5: 51 points of .5 / 101)
    rc = analyze("coco", gts, dets, classes)["tide"]
    assert rc["counts"] == {**NO_ERRORS, "Loc": 1}
    assert rc["mAP"] == pytest.approx(51 * 0.5 / 101, abs=1e-9)
    assert rc["dAP"]["Loc"] == pytest.approx(1 - 51 * 0.5 / 101, abs=1e-9)
    assert rc["per_class"]["a"]["largest"] == "Loc"


MUTANTS = {   # a broken rule each: one of TIDE_CASES must fail on it
    "Loc's upper bound exclusive": ("(sc.ms <= loc_thr)", "(sc.ms < loc_thr)"),
    "Loc's lower bound exclusive": ("(sc.ms >= BACKGROUND_IOU) & (sc.ms <= loc_thr)", "(sc.ms > BACKGROUND_IOU) & (sc.ms <= loc_thr)"),
    "Cls tested before Loc": ("loc = fp & ~no_obj & (sc.ms >= BACKGROUND_IOU)", "loc = fp & ~no_obj & (sc.fg_other_gt < 0) & (sc.ms >= BACKGROUND_IOU)"),
    "every Cls/Loc error fixed": ("best[cand[np.unique(target[cand], return_index=True)[1]]] = True", "best[cand] = True"),
    "Cls fixed in its own class": ("lab[fix] = f.g_lab[target[fix]]", "pass"),
    "Dupe not tested": ("dupe = fp & ~no_obj & ~loc & ~cls & dupe_hit", "dupe = np.zeros(D, bool)"),
    "Bkg bound exclusive": ("(sc.max_any <= BACKGROUND_IOU)", "(sc.max_any < BACKGROUND_IOU)"),
    "Miss counts usable objects": ("missed = sc.g_count & ~used & ~usable", "missed = sc.g_count & ~used"),
    "fixed Miss keeps the object": ("npos = sc.npos - miss_c", "npos = sc.npos"),
    "ignored detections are errors": ("fp = state == 0\n    used", "fp = state <= 0\n    used"),
}


@pytest.mark.parametrize("mutant", list(MUTANTS))
def test_tide_cases_catch_broken_rules(mutant):
    old, new = MUTANTS[mutant]
    src = Path(A.__file__).read_text()
    assert src.count(old) == 1, f"mutant {mutant!r} no longer applies: update it"
    mod = types.ModuleType("eval._analysis_mutant")
    mod.__package__ = "eval"
    mod.__file__ = A.__file__
    exec(compile(src.replace(old, new), A.__file__, "exec"), mod.__dict__)  # noqa: S102 (the mutant)
    failed = []
    for name in TIDE_CASES:
        try:
            _check_tide_case(mod.analyze, name)
        except AssertionError:
            failed.append(name)
    assert failed, f"no TIDE case notices the mutant {mutant!r}"


# ----------------------------------------------------------------------------------------------
# Hoiem's bins, groups, the confusion matrix, F1


def _hoiem_scene(protocol):
    # objects: O_a1 (Loc target), O_b (similar class), O_c (other group), O_a2 (hit), O_a3 difficult
    gts = [_g([O1, [50, 0, 60, 10], [100, 0, 110, 10], [150, 0, 160, 10], [200, 0, 210, 10]],
              [1, 2, 3, 1, 1], [False, False, False, False, True])]
    dets = [_d([[200, 0, 210, 10],     # on the difficult object: no bin
                [150, 0, 160, 10],     # Cor
                [150, 0, 160, 9],      # duplicate of the hit: Loc
                [0, 0, 10, 2],         # IoU .2 with its own class: Loc (ilsvrc's threshold here: .25)
                [50, 0, 60, 10],       # on the b object (same group): Sim
                [100, 0, 110, 10],     # on the c object: Oth
                [300, 300, 320, 320]],  # BG
               [0.95, 0.9, 0.85, 0.8, 0.7, 0.6, 0.5], [1] * 7)]
    return gts, dets


@pytest.mark.parametrize("protocol", ["voc", "coco", "ilsvrc"])
def test_hoiem_bins(protocol):
    gts, dets = _hoiem_scene(protocol)
    if protocol == "ilsvrc":   # no difficult flag there: blacklist nothing, the box is an object
        gts[0]["difficult"][:] = False
    groups = {"a": "x", "b": "x", "c": "y"}
    h = analyze(protocol, gts, dets, NAMES, class_groups=groups)["hoiem"]
    assert h["types"] == ["Cor", "Loc", "Sim", "Oth", "BG"]
    a = h["per_class"]["a"]
    npos = 3 if protocol == "ilsvrc" else 2
    assert a["npos"] == npos and a["N"][-1] == 8 * npos
    last = {t: a["counts"][t][-1] for t in h["types"]}
    assert last == ({"Cor": 2, "Loc": 2, "Sim": 1, "Oth": 1, "BG": 1} if protocol == "ilsvrc"
                    else {"Cor": 1, "Loc": 2, "Sim": 1, "Oth": 1, "BG": 1})
    k = h["factors"].index(1.0)   # the top npos detections
    top = {t: a["counts"][t][k] for t in h["types"]}
    assert sum(top.values()) == npos and top["Cor"] == (2 if protocol == "ilsvrc" else 1)
    assert sum(a["shares"][t][-1] for t in h["types"]) == pytest.approx(1.0)
    # no groups: no Sim bin, the similar-class box is Oth
    h = analyze(protocol, gts, dets, NAMES)["hoiem"]
    assert h["types"] == ["Cor", "Loc", "Oth", "BG"]
    assert h["per_class"]["a"]["counts"]["Oth"][-1] == 2


def test_groups_default_to_coco_supercategories():
    assert len(COCO_SUPERCATEGORIES) == 80 and len(set(COCO_SUPERCATEGORIES.values())) == 12
    gts = [_g([O1], [1])]
    dets = [_d([O1], [0.9], [1])]
    r = analyze("voc", gts, dets, ["cat", "dog", "car"])
    assert r["groups"] == {"cat": "animal", "dog": "animal", "car": "vehicle"}
    assert "Sim" in r["hoiem"]["types"] and "Sim" in r["coco_stack"]["types"]
    assert analyze("voc", gts, dets, ["cat", "blood cell"])["groups"] is None
    r = analyze("voc", gts, dets, ["cat", "blood cell"], class_groups={"cat": "animal"})
    assert r["groups"] == {"cat": "animal", "blood cell": "<blood cell>"}


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


def test_bad_input():
    import eval

    assert A.PROTOCOLS == eval.PROTOCOLS
    gts = [_g([O1], [1])]
    dets = [_d([O1], [0.9], [1])]
    with pytest.raises(A.EvalError, match="protocol"):
        analyze("map", gts, dets, ["a"])
    with pytest.raises(A.EvalError, match="unique"):
        analyze("voc", gts, dets, ["a", "a"])
    with pytest.raises(A.EvalError, match="image paths"):
        analyze("voc", gts, dets, ["a"], image_paths=["x.jpg", "y.jpg"])
    with pytest.raises(A.EvalError, match="label 2 is not a class"):
        analyze("voc", gts, [_d([O1], [0.9], [2])], ["a"])


# ----------------------------------------------------------------------------------------------
# the committed BCCD sample (the bundled model's test detections) and the report


def load_fixture():
    """tests/data/analysis: COCO instances + COCO results -> per-image arrays, image id order."""
    gt = json.loads((FIXTURE / "bccd_test_gt.json").read_text())
    res = json.loads((FIXTURE / "bccd_test_results.json").read_text())
    ids = [im["id"] for im in gt["images"]]
    row = {i: k for k, i in enumerate(ids)}
    g = [{"boxes": [], "labels": [], "difficult": [], "areas": []} for _ in ids]
    d = [{"boxes": [], "scores": [], "labels": []} for _ in ids]
    cat_ids = sorted(c["id"] for c in gt["categories"])
    lab = {c: k + 1 for k, c in enumerate(cat_ids)}
    for a in gt["annotations"]:
        x, y, w, h = a["bbox"]
        e = g[row[a["image_id"]]]
        e["boxes"].append([x, y, x + w, y + h]); e["labels"].append(lab[a["category_id"]])
        e["difficult"].append(bool(a.get("iscrowd", 0))); e["areas"].append(a["area"])
    for r in res:
        x, y, w, h = r["bbox"]
        e = d[row[r["image_id"]]]
        e["boxes"].append([x, y, x + w, y + h]); e["scores"].append(r["score"]); e["labels"].append(lab[r["category_id"]])
    gts = [{"boxes": np.array(e["boxes"], float).reshape(-1, 4), "labels": np.array(e["labels"], int),
            "difficult": np.array(e["difficult"], bool), "areas": np.array(e["areas"], float)} for e in g]
    dets = [{"boxes": np.array(e["boxes"], float).reshape(-1, 4), "scores": np.array(e["scores"], float),
             "labels": np.array(e["labels"], int)} for e in d]
    names = [c["name"] for c in sorted(gt["categories"], key=lambda c: c["id"])]
    return gts, dets, names, [im["file_name"] for im in gt["images"]]


def test_bccd_sample_tide_matches_recorded_tidecv():
    """Our dAP on the committed sample against the numbers tidecv printed for the same two files
    (tidecv_reference.json, made by the slow test below): within 0.1 AP points."""
    gts, dets, names, _ = load_fixture()
    ref = json.loads((FIXTURE / "tidecv_reference.json").read_text())
    r = analyze("coco", gts, dets, names, iou=0.5)
    assert abs(100 * r["tide"]["mAP"] - ref["AP"]) < 0.1
    for k in A.TIDE_MAIN:
        assert abs(100 * r["tide"]["dAP"][k] - ref["main"][k]) < 0.1, (k, r["tide"]["dAP"], ref["main"])
    for k in A.TIDE_SPECIAL:
        assert abs(100 * r["tide"]["special"][k] - ref["special"][k]) < 0.1, (k, r["tide"]["special"], ref["special"])
    # and the stack's C50 is COCOeval's AP50
    e = evaluate("coco", gts, dets, len(names), iou=0.5)
    _same([r["coco_stack"]["per_class"][n]["AP"]["C50"] for n in names], e["AP"])


def test_write_report(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gts, dets, names, _ = load_fixture()
    gts, dets = gts[:6], dets[:6]
    paths = []
    for i in range(6):   # small stand-in images: the crops only need pixels at the boxes
        p = tmp_path / "img" / f"{i}.png"
        p.parent.mkdir(exist_ok=True)
        plt.imsave(p, np.full((480, 640, 3), 0.2 + 0.1 * i))
        paths.append(str(p))
    monkeypatch.setattr(A, "GALLERY_SIZE", 3)   # fewer crops: a faster test
    r = analyze("voc", gts, dets, names, image_paths=paths)
    assert all(len(g["false_positives"]) <= 3 for g in r["gallery"].values())
    out = tmp_path / "report"
    written = write_report(r, str(out), names, gts=gts, dets=dets)
    assert all(Path(p).is_file() for p in written)
    got = {Path(p).name for p in written}
    assert {"analysis.json", "summary.txt", "hoiem_all.png", "coco_stack_all.png", "tide_all.png",
            "sensitivity.png", "confusion.png"} <= got
    assert any(g.startswith("gallery_") for g in got) and {f"tide_{n}.png" for n in names} <= got
    j = json.loads((out / "analysis.json").read_text())
    assert set(j["tide"]["dAP"]) == {"Cls", "Loc", "Both", "Dupe", "Bkg", "Miss"}
    assert all(0 <= v <= 1 for v in j["tide"]["dAP"].values())
    text = (out / "summary.txt").read_text().splitlines()
    assert text == summary_lines(r)
    for n in names:
        line = next(ln for ln in text if ln.startswith(n + " "))
        big = r["tide"]["per_class"][n]["largest"]
        assert (big or "none") in line
    # without image paths no gallery; every class shown with all_classes (figures stubbed: fast)
    for name in ("plot_hoiem", "plot_stack", "plot_tide", "plot_sensitivity", "plot_confusion"):
        monkeypatch.setattr(A.P, name, lambda *a, **k: a[-1] if isinstance(a[-1], str) else k.get("path"))
    monkeypatch.setattr(A.P, "plot_gallery", lambda *a, **k: pytest.fail("gallery without image paths"))
    written = write_report(analyze("voc", gts, dets, names), str(tmp_path / "r2"), names, all_classes=True)
    assert sum(Path(p).name.startswith("tide_") for p in written) == 1 + len(names)


# ----------------------------------------------------------------------------------------------
# slow: the tidecv package itself, in its own virtual environment

TIDECV_VENV = Path(os.environ.get("TIDECV_VENV", "/tmp/googlenet-det-tidecv-venv"))
# tidecv 1.0.1 (2020) is pure Python; first try it with today's numpy / matplotlib, then with pins
# from its time
TIDECV_INSTALLS = [["tidecv==1.0.1"],
                   ["tidecv==1.0.1", "numpy<2", "matplotlib<3.9", "pandas<2.2", "opencv-python-headless<4.9"]]
TIDECV_SCRIPT = r"""
import contextlib, io, json, sys
from importlib.metadata import version
from tidecv import TIDE, datasets
gt = datasets.COCO(sys.argv[1])
res = datasets.COCOResult(sys.argv[2])
tide = TIDE()
with contextlib.redirect_stdout(io.StringIO()):
    tide.evaluate(gt, res, mode=TIDE.BOX)
    tide.summarize()
name = next(iter(tide.runs))
out = {"AP": tide.runs[name].ap, "main": tide.get_main_errors()[name], "special": tide.get_special_errors()[name],
       "versions": {p: version(p) for p in ("tidecv", "numpy", "matplotlib", "pycocotools", "opencv-python")}}
print(json.dumps(out))
"""


def _tidecv_python():
    py = TIDECV_VENV / "bin" / "python"

    def works():
        return py.exists() and subprocess.run([str(py), "-c", "import tidecv"], capture_output=True, check=False).returncode == 0

    if works():
        return py
    if not py.exists():
        r = subprocess.run([sys.executable, "-m", "venv", str(TIDECV_VENV)], capture_output=True, text=True, check=False)
        if r.returncode:
            pytest.skip(f"cannot create a virtual environment for tidecv: {r.stderr.strip()[-300:]}")
    errors = []
    for pkgs in TIDECV_INSTALLS:
        r = subprocess.run([str(py), "-m", "pip", "install", "-q", *pkgs], capture_output=True, text=True, timeout=1800, check=False)
        if r.returncode == 0 and works():
            return py
        errors.append(r.stderr.strip()[-300:])
    pytest.skip("tidecv does not install here: " + " | ".join(errors))


@pytest.mark.slow
def test_tide_dap_agrees_with_tidecv(capsys):
    py = _tidecv_python()
    r = subprocess.run([str(py), "-c", TIDECV_SCRIPT, str(FIXTURE / "bccd_test_gt.json"),
                        str(FIXTURE / "bccd_test_results.json")], capture_output=True, text=True, timeout=1800, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    ref = json.loads(r.stdout.strip().splitlines()[-1])
    gts, dets, names, _ = load_fixture()
    ours = analyze("coco", gts, dets, names, iou=0.5)["tide"]
    rows = [("AP", 100 * ours["mAP"], ref["AP"])]
    rows += [(k, 100 * ours["dAP"][k], ref["main"][k]) for k in A.TIDE_MAIN]
    rows += [(k, 100 * ours["special"][k], ref["special"][k]) for k in A.TIDE_SPECIAL]
    with capsys.disabled():
        print(f"\ntidecv {ref['versions']}")
        for k, a, b in rows:
            print(f"  {k:<9} ours {a:7.3f}  tidecv {b:7.3f}  (AP points)")
    for k, a, b in rows:
        assert abs(a - b) < 0.1, (k, a, b)
