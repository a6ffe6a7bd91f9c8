"""eval.evaluate against simple devkit transcriptions, pycocotools, and hand-worked cases."""

import contextlib
import io
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eval import EvalError, evaluate
from eval.ap import ELEVEN_POINTS, ap_11_point, ap_all_point
from eval.detection import match_pairs

from .reference import reference_ilsvrc, reference_voc

C = 3
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def box(draw, min_size):
    # small integer grid: many overlaps, exact IoU ties and boxes at the ILSVRC small-box threshold
    x = draw(st.integers(0, 24))
    y = draw(st.integers(0, 24))
    w = draw(st.integers(min_size, 16))
    h = draw(st.integers(min_size, 16))
    return [x, y, x + w, y + h]


@st.composite
def scene(draw, distinct_scores=False, blacklist=False, difficult=True, inverted=False):
    """Images of ground truth and detections; ``inverted``: some detections with their corners
    swapped in x, y or both (x2 < x1 or y2 < y1), as real submissions hold them."""
    n_img = draw(st.integers(1, 4))
    gts, dets = [], []
    score_pool = iter(draw(st.permutations(list(range(1, 200)))))
    for _ in range(n_img):
        n = draw(st.integers(0, 5))
        boxes = [draw(box(1)) for _ in range(n)]
        labels = [draw(st.integers(1, C)) for _ in range(n)]
        diff = [draw(st.booleans()) and difficult and draw(st.booleans()) for _ in range(n)]
        g = {"boxes": np.array(boxes, float).reshape(-1, 4), "labels": np.array(labels, int), "difficult": np.array(diff, bool)}
        if blacklist:
            g["blacklist"] = set(draw(st.lists(st.integers(1, C), max_size=1)))
        gts.append(g)
        m = draw(st.integers(0, 8))
        dboxes = []
        for _ in range(m):
            if boxes and draw(st.booleans()):  # near a gt box: a jittered copy
                b = boxes[draw(st.integers(0, len(boxes) - 1))]
                dx = [draw(st.integers(-3, 3)) for _ in range(4)]
                nb = [b[0] + dx[0], b[1] + dx[1], b[2] + dx[2], b[3] + dx[3]]
                nb[2] = max(nb[2], nb[0])
                nb[3] = max(nb[3], nb[1])
                dboxes.append(nb)
            else:
                dboxes.append(draw(box(0)))
        if inverted:
            for b in dboxes:
                swap = draw(st.sampled_from(["", "", "x", "y", "xy"]))
                if "x" in swap:
                    b[0], b[2] = b[2], b[0]
                if "y" in swap:
                    b[1], b[3] = b[3], b[1]
        if distinct_scores:
            scores = [next(score_pool) / 200 for _ in range(m)]
        else:
            scores = [draw(st.integers(1, 6)) / 6 for _ in range(m)]  # ties on purpose
        dlabels = [draw(st.integers(1, C)) for _ in range(m)]
        dets.append({"boxes": np.array(dboxes, float).reshape(-1, 4), "scores": np.array(scores, float),
                     "labels": np.array(dlabels, int)})
    return gts, dets


def _same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert (math.isnan(x) and math.isnan(y)) or abs(x - y) < 1e-12, (a, b)


@SETTINGS
@given(scene(), st.sampled_from([0.5, 0.3, 0.7]))
def test_voc_matches_reference_loop(s, thr):
    gts, dets = s
    _same(evaluate("voc", gts, dets, C, iou=thr)["AP"], reference_voc(gts, dets, C, thr))
    _same(evaluate("voc07", gts, dets, C, iou=thr)["AP"], reference_voc(gts, dets, C, thr, eleven_point=True))


@SETTINGS
@given(scene(blacklist=True, difficult=False), st.sampled_from([0.5, 0.3, 0.7]))
def test_ilsvrc_matches_reference_loop(s, thr):
    gts, dets = s
    _same(evaluate("ilsvrc", gts, dets, C, iou=thr)["AP"], reference_ilsvrc(gts, dets, C, thr))


@SETTINGS
@given(scene(blacklist=True, inverted=True), st.sampled_from([0.5, 0.3]))
def test_inverted_detections_are_scored_as_the_devkits_loops(s, thr):
    # VOCevaldet.m / eval_detection.m keep an inverted box: iw = min(x2, gx2) - max(x1, gx1) + 1 is at
    # most its own width, so `if iw>0 & ih>0` never holds; it matches nothing, a false positive
    gts, dets = s
    _same(evaluate("voc", gts, dets, C, iou=thr)["AP"], reference_voc(gts, dets, C, thr))
    _same(evaluate("voc07", gts, dets, C, iou=thr)["AP"], reference_voc(gts, dets, C, thr, eleven_point=True))
    for g in gts:
        g["difficult"] = np.zeros(len(g["labels"]), bool)
    _same(evaluate("ilsvrc", gts, dets, C, iou=thr)["AP"], reference_ilsvrc(gts, dets, C, thr))


def test_inverted_detections_by_hand():
    # one class; gt A = [0, 0, 100, 100] (image 0), B = [0, 0, 50, 50] (image 1), D = [0, 0, 30, 30]
    # difficult (image 2). Ranked detections: 0.9 A exactly (TP), 0.8 B with both corners swapped
    # (inverted: matches nothing, FP; swapped back it would take B), 0.75 D swapped (voc: FP, not
    # ignored as a detection on a difficult box is), 0.7 B exactly (TP: B is still free), 0.6 on A
    # with x swapped (FP).
    gts = [{"boxes": np.array([[0, 0, 100, 100.0]]), "labels": np.array([1])},
           {"boxes": np.array([[0, 0, 50, 50.0]]), "labels": np.array([1])},
           {"boxes": np.array([[0, 0, 30, 30.0]]), "labels": np.array([1]), "difficult": np.array([True])}]
    dets = [{"boxes": np.array([[0, 0, 100, 100.0], [60, 0, 10, 100]]), "scores": np.array([0.9, 0.6]), "labels": np.array([1, 1])},
            {"boxes": np.array([[50, 50, 0, 0.0], [0, 0, 50, 50]]), "scores": np.array([0.8, 0.7]), "labels": np.array([1, 1])},
            {"boxes": np.array([[30, 30, 0, 0.0]]), "scores": np.array([0.75]), "labels": np.array([1])}]
    # voc: TP FP FP TP FP, npos 2: recall .5 .5 .5 1 1, precision 1 .5 1/3 .5 .4;
    # all-point: .5 * 1 + .5 * max(.5, .4) = .75; 11-point: (6 * 1 + 5 * .5) / 11 = 8.5 / 11
    r = evaluate("voc", gts, dets, 1)
    assert r["AP"] == [pytest.approx(0.75, abs=1e-12)] and r["num_tp"] == [2] and r["num_detections"] == [5]
    assert evaluate("voc07", gts, dets, 1)["AP"] == [pytest.approx(8.5 / 11, abs=1e-12)]
    # ilsvrc (no difficult flag: D counts, npos 3): TP FP FP TP FP: recall 1/3 1/3 1/3 2/3 2/3,
    # precision 1 .5 1/3 .5 .4: 1/3 * 1 + 1/3 * .5 = .5
    assert evaluate("ilsvrc", gts, dets, 1)["AP"] == [pytest.approx(0.5, abs=1e-12)]


def _pycocotools_directly(gts, dets):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images, anns, res = [], [], []
    for i, (g, d) in enumerate(zip(gts, dets)):
        images.append({"id": i + 1})
        for b, l, df in zip(g["boxes"].tolist(), g["labels"].tolist(), g["difficult"].tolist()):
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": l, "iscrowd": int(df),
                         "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]], "area": (b[2] - b[0]) * (b[3] - b[1])})
        for b, s, l in zip(d["boxes"].tolist(), d["scores"].tolist(), d["labels"].tolist()):
            res.append({"image_id": i + 1, "category_id": l, "score": s, "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]]})
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {"images": images, "annotations": anns, "categories": [{"id": c} for c in range(1, C + 1)]}
        gt.createIndex()
        dt = gt.loadRes(res)
        E = COCOeval(gt, dt, "bbox")
        E.evaluate()
        E.accumulate()
        E.summarize()
    return E


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scene())
def test_coco_equals_pycocotools(s):
    _coco_equals_pycocotools(s)


def _coco_equals_pycocotools(s):
    gts, dets = s
    if not any(len(d["scores"]) for d in dets):
        dets[0] = {"boxes": np.array([[0.0, 0, 5, 5]]), "scores": np.array([0.5]), "labels": np.array([1])}
    E = _pycocotools_directly(gts, dets)
    r = evaluate("coco", gts, dets, C)
    np.testing.assert_array_equal(list(r["stats"].values()), E.stats)
    assert r["mAP"] == E.stats[0]
    for k in range(C):
        p = E.eval["precision"][:, :, k, 0, -1]
        want = p[p > -1].mean() if (p > -1).any() else math.nan
        _same([r["AP"][k]], [want])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scene(inverted=True))
def test_coco_with_inverted_detections_equals_pycocotools(s):
    # loadRes: area = w * h, negative with one negative side: outside every area range, so an
    # unmatched one is ignored; with two, a false positive; either takes a maxDets slot
    _coco_equals_pycocotools(s)


@SETTINGS
@given(scene(distinct_scores=True), st.randoms(use_true_random=False), st.sampled_from(["voc", "voc07", "ilsvrc", "coco"]))
def test_detection_order_does_not_matter_with_distinct_scores(s, rnd, protocol):
    gts, dets = s
    shuffled = []
    for d in dets:
        p = list(range(len(d["scores"])))
        rnd.shuffle(p)
        shuffled.append({k: v[p] for k, v in d.items()})
    a = evaluate(protocol, gts, dets, C)["AP"]
    b = evaluate(protocol, gts, shuffled, C)["AP"]
    _same(a, b)


@SETTINGS
@given(scene(), st.lists(st.tuples(st.integers(0, 3), st.integers(0, 20), st.integers(1, 10), st.floats(0.01, 1.0)), max_size=10),
       st.sampled_from(["voc", "voc07", "ilsvrc", "coco"]))
def test_detections_of_an_absent_class_change_no_other_ap(s, extra, protocol):
    gts, dets = s
    n = C + 1  # class C+1 has no ground truth anywhere
    base = evaluate(protocol, gts, dets, n)["AP"]
    more = [dict(d) for d in dets]
    for img, x, w, sc in extra:
        i = img % len(more)
        more[i] = {"boxes": np.vstack([more[i]["boxes"], [[x, x, x + w, x + w]]]),
                   "scores": np.append(more[i]["scores"], sc), "labels": np.append(more[i]["labels"], n)}
    after = evaluate(protocol, gts, more, n)["AP"]
    _same(base[:C], after[:C])
    assert math.isnan(base[C]) and math.isnan(after[C])


def test_hand_worked_voc_case_with_difficult():
    gts = [{"boxes": np.array([[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50]], float),
            "labels": np.array([1, 1, 1]), "difficult": np.array([False, True, False])}]
    # ranked: hit box 0 (TP), hit difficult box (ignored), duplicate of box 0 (FP), miss (FP), hit box 2 (TP)
    dets = [{"boxes": np.array([[0, 0, 10, 10], [20, 20, 30, 30], [0, 0, 10, 9], [60, 60, 70, 70], [40, 40, 50, 50]], float),
             "scores": np.array([0.9, 0.8, 0.7, 0.6, 0.5]), "labels": np.array([1, 1, 1, 1, 1])}]
    r = evaluate("voc", gts, dets, 1)
    # rec/prec after the 4 counted detections: (.5, 1), (.5, .5), (.5, 1/3), (1, .5) -> .5*1 + .5*.5
    assert r["AP"] == [0.75] and r["npos"] == [2] and r["num_detections"] == [4] and r["num_tp"] == [2]
    r07 = evaluate("voc07", gts, dets, 1)
    assert r07["AP"][0] == pytest.approx((6 * 1 + 5 * 0.5) / 11)


def test_ilsvrc_small_box_threshold_and_best_unmatched_gt():
    # a 5x5 gt box: threshold min(.5, 25/225) = 1/9; a 9x5 detection covering it has IoU 25/45
    gts = [{"boxes": np.array([[0, 0, 5, 5]], float), "labels": np.array([1])}]
    dets = [{"boxes": np.array([[0, 0, 9, 5]], float), "scores": np.array([1.0]), "labels": np.array([1])}]
    assert evaluate("ilsvrc", gts, dets, 1)["AP"] == [1.0]
    dets[0]["boxes"] = np.array([[0, 0, 40, 5]], float)    # IoU 25/200 = .125 >= 1/9: still a hit
    assert evaluate("ilsvrc", gts, dets, 1)["AP"] == [1.0]
    assert evaluate("voc", gts, dets, 1)["AP"] == [0.0]     # voc: 0.5 for every box
    # two gts; the first detection overlaps both, best with A; the second overlaps only A.
    # ilsvrc: first takes A, second finds A taken -> FP.  voc gives the same here; now make the
    # second detection's best gt A while B is also above threshold: ilsvrc falls back to B, voc does not.
    gts = [{"boxes": np.array([[0, 0, 10, 10], [2, 0, 12, 10]], float), "labels": np.array([1, 1])}]
    dets = [{"boxes": np.array([[0, 0, 10, 10], [1, 0, 11, 10]], float), "scores": np.array([0.9, 0.8]), "labels": np.array([1, 1])}]
    assert evaluate("ilsvrc", gts, dets, 1)["AP"] == [1.0]
    assert evaluate("voc", gts, dets, 1)["AP"] == [0.5]


def test_ilsvrc_blacklist():
    gts = [{"boxes": np.array([[0, 0, 10, 10], [0, 0, 10, 10]], float), "labels": np.array([1, 2]), "blacklist": {2}},
           {"boxes": np.array([[0, 0, 10, 10]], float), "labels": np.array([2])}]
    dets = [{"boxes": np.array([[50, 50, 60, 60], [0, 0, 10, 10]], float), "scores": np.array([0.9, 0.8]), "labels": np.array([2, 1])},
            {"boxes": np.array([[0, 0, 10, 10]], float), "scores": np.array([0.5]), "labels": np.array([2])}]
    r = evaluate("ilsvrc", gts, dets, 2)
    # the blacklisted (image 0, class 2) false positive scored 0.9 would otherwise halve class 2's AP
    assert r["AP"] == [1.0, 1.0] and r["npos"] == [1, 1]
    assert evaluate("voc", gts, dets, 2)["AP"] == [1.0, 0.25]   # 2 positives, FP ranked first


def test_ap_formulas():
    rec = np.array([0.1, 0.2, 0.2, 0.5])
    prec = np.array([1.0, 1.0, 0.6, 0.5])
    assert ap_all_point(rec, prec) == pytest.approx(0.2 * 1.0 + 0.3 * 0.5)
    # MATLAB 0:0.1:1 -> 0.30000000000000004 at k=3 but exactly 1-0.3 at k=7
    assert ELEVEN_POINTS[3] == 3 * 0.1 and ELEVEN_POINTS[7] == 1.0 - 3 * 0.1
    assert ap_11_point(rec, prec) == pytest.approx((3 * 1.0 + 3 * 0.5) / 11)
    assert ap_11_point(np.zeros(0), np.zeros(0)) == 0.0


def test_no_detections_gives_zero_ap_and_empty_gt_class_is_nan():
    gts = [{"boxes": np.array([[0, 0, 10, 10]], float), "labels": np.array([1])}]
    dets = [{"boxes": np.zeros((0, 4)), "scores": np.zeros(0), "labels": np.zeros(0, int)}]
    for p in ("voc", "voc07", "ilsvrc", "coco"):
        r = evaluate(p, gts, dets, 2)
        assert r["AP"][0] == 0 and math.isnan(r["AP"][1]) and r["mAP"] == 0, p


@pytest.mark.parametrize("bad, match", [
    ({"boxes": [[0, 0, np.nan, 5]]}, "not finite"),
    ({"boxes": [[0, 0, np.inf, 5]]}, "not finite"),
    ({"labels": [4]}, "label 4 is not a class"),
    ({"labels": [0]}, "label 0 is not a class"),
    ({"scores": [np.nan]}, "score nan"),
    ({"scores": [0.1, 0.2]}, "1 boxes but 2 scores"),
])
def test_bad_detections_raise(bad, match):
    gts = [{"boxes": np.array([[0, 0, 10, 10]], float), "labels": np.array([1])}]
    d = {"boxes": np.array([[0, 0, 10, 10]], float), "scores": np.array([0.5]), "labels": np.array([1])}
    d.update({k: np.array(v) for k, v in bad.items()})
    with pytest.raises(EvalError, match=match):
        evaluate("voc", gts, [d], 3)


def test_bad_arguments_raise():
    gts = [{"boxes": np.zeros((0, 4)), "labels": np.zeros(0, int)}]
    with pytest.raises(EvalError, match="protocol 'map'"):
        evaluate("map", gts, gts, 1)
    with pytest.raises(EvalError, match="must be in"):
        evaluate("voc", gts, [{"boxes": np.zeros((0, 4)), "scores": [], "labels": []}], 1, iou=1.5)
    with pytest.raises(EvalError, match="must align"):
        evaluate("voc", gts, [], 1)
    with pytest.raises(EvalError, match=r"ground truth of image 0: box .* negative size"):
        evaluate("voc", [{"boxes": np.array([[3, 3, 1, 1.0]]), "labels": np.array([1])}],
                 [{"boxes": np.zeros((0, 4)), "scores": [], "labels": []}], 1)


def test_iou_exactly_at_threshold_is_a_hit():
    # devkits: `ovmax >= minoverlap`; IoU of [0,0,10,5] with [0,0,10,10] is exactly 0.5
    gts = [{"boxes": np.array([[0, 0, 10, 10]], float), "labels": np.array([1])}]
    dets = [{"boxes": np.array([[0, 0, 10, 5]], float), "scores": np.array([1.0]), "labels": np.array([1])}]
    assert evaluate("voc", gts, dets, 1)["AP"] == [1.0]
    assert evaluate("voc", gts, dets, 1, iou=0.500001)["AP"] == [0.0]
    # ilsvrc: a 40x40 gt has threshold min(.5, 1600/2500) = .5; a 40x20 detection inside: IoU .5
    gts[0]["boxes"] = np.array([[0, 0, 40, 40]], float)
    dets[0]["boxes"] = np.array([[0, 0, 40, 20]], float)
    assert evaluate("ilsvrc", gts, dets, 1)["AP"] == [1.0]
    assert evaluate("ilsvrc", gts, dets, 1, iou=0.500001)["AP"] == [0.0]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(scene(blacklist=True), st.sampled_from(["voc", "voc07", "ilsvrc"]), st.integers(1, 5))
def test_matching_in_image_chunks_changes_nothing(monkeypatch, s, protocol, chunk):
    import eval.detection as det

    gts, dets = s
    whole = evaluate(protocol, gts, dets, C)
    monkeypatch.setattr(det, "PAIR_CHUNK", chunk)   # a few pairs per chunk: many chunks
    assert len(det._image_chunks(det.flatten(gts, dets, C), C)) >= 1
    chunked = evaluate(protocol, gts, dets, C)
    monkeypatch.undo()
    _same(whole["AP"], chunked["AP"])
    assert whole["num_tp"] == chunked["num_tp"]


def test_match_pairs_is_the_one_kernel_by_hand():
    """eval.detection.match_pairs on hand-made pairs: voc lets each detection take its best object
    (the higher-ranked of two on one object wins, a difficult object makes its detection
    ignored); ilsvrc goes in rounds, so a detection takes the best object not yet matched."""
    # detections 0, 1, 2 (ranks 1, 0, 2); objects 0, 1 (1 difficult)
    pd, pg = np.array([0, 0, 1, 2]), np.array([0, 1, 0, 1])
    iou = np.array([0.6, 0.3, 0.9, 0.7])
    rank = np.array([1, 0, 2])
    state, gt = match_pairs("voc", pd, pg, iou, num_det=3, num_gt=2, rank=rank, thr=0.5,
                            g_diff=np.array([False, True]))
    assert state.tolist() == [0, 1, -1] and gt.tolist() == [-1, 0, -1]
    # ilsvrc: detection 1 (round 0) takes object 0; detection 0 (round 1) falls back to object 1
    pos = np.array([1, 0, 2])
    state, gt = match_pairs("ilsvrc", pd, pg, iou, num_det=3, num_gt=2, rank=rank, ok=iou >= 0.25, pos=pos)
    assert state.tolist() == [1, 1, 0] and gt.tolist() == [1, 0, -1]
    with pytest.raises(ValueError, match="protocol 'coco'"):
        match_pairs("coco", pd, pg, iou, num_det=3, num_gt=2, rank=rank)
