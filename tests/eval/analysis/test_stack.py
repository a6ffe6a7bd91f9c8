"""eval.analysis.stack: the COCO stack against a transcription of mmdetection's coco_error_analysis."""

import contextlib
import copy
import io

import numpy as np
import pytest

from eval import analysis as A
from eval.analysis import analyze

from .common import NAMES, _to_coco


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
