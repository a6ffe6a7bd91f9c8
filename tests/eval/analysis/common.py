"""Shared by the tests of eval.analysis: scenes, the committed BCCD sample, comparisons."""

import contextlib
import io
import json
import math
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from ..test_detection_ap import scene

NAMES = ["a", "b", "c"]
FIXTURE = Path(__file__).resolve().parents[2] / "data" / "analysis"
SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
O1, O2, O3 = [0, 0, 10, 10], [100, 100, 110, 110], [200, 200, 210, 210]


def _same(a, b, what=""):
    assert len(a) == len(b), what
    for x, y in zip(a, b):
        x = math.nan if x is None else x
        y = math.nan if y is None else y
        assert (math.isnan(x) and math.isnan(y)) or abs(x - y) < 1e-12, (what, a, b)


def _g(boxes, labels, difficult=None):
    b = np.array(boxes, float).reshape(-1, 4)
    return {"boxes": b, "labels": np.array(labels, int), "difficult": np.zeros(len(b), bool) if difficult is None
            else np.array(difficult, bool)}


def _d(boxes, scores, labels):
    return {"boxes": np.array(boxes, float).reshape(-1, 4), "scores": np.array(scores, float),
            "labels": np.array(labels, int)}


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
