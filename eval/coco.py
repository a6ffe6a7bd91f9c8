"""COCO AP: pycocotools' COCOeval on in-memory arrays (we do not rewrite it).

Ground truth ``difficult`` becomes COCO's ``iscrowd`` (COCO's own way of marking a region whose
detections are neither rewarded nor penalised); the COCO dataset reader maps it back the same
way. Boxes go to COCO's ``[x, y, w, h]`` with ``w = x2 - x1`` (continuous pixels, as COCO). The
ground truth's ``area`` (what COCOeval's small/medium/large ranges use) is ``gts[i]["areas"]``
when given (a COCO file's segment areas), else the box area, as ``COCO.loadRes`` makes it.
Images get ids 1..N in list order; labels 1..C are the category ids. An inverted detection
(``x2 < x1`` or ``y2 < y1``) goes in as ``loadRes`` reads it from a results file: a negative
``w`` or ``h`` and ``area = w * h``; COCOeval gives it IoU 0 with everything, ignores it when its
area is negative (outside every area range) and counts it a false positive when both sides are
negative, and either way it takes one of the ``maxDets`` slots.
"""

from __future__ import annotations

import contextlib
import io

import numpy as np

STAT_NAMES = ["AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large",
              "AR1", "AR10", "AR100", "AR_small", "AR_medium", "AR_large"]


def to_coco(gts: list[dict], dets: list[dict], num_classes: int):
    """Build pycocotools ``COCO`` objects (ground truth, results) from per-image arrays."""
    # pycocotools only for --protocol coco (import time)
    from pycocotools.coco import COCO

    images, anns, results = [], [], []
    aid = 0
    for i, (g, d) in enumerate(zip(gts, dets)):
        img_id = i + 1
        images.append({"id": img_id})
        boxes = np.asarray(g.get("boxes", np.zeros((0, 4))), np.float64).reshape(-1, 4)
        labels = np.asarray(g.get("labels", np.zeros(0)), np.int64).reshape(-1)
        diff = g.get("difficult")
        diff = np.zeros(len(boxes), bool) if diff is None else np.asarray(diff, bool).reshape(-1)
        wh = boxes[:, 2:] - boxes[:, :2]
        areas = g.get("areas")
        areas = wh.prod(axis=1) if areas is None else np.asarray(areas, np.float64).reshape(-1)
        for b, c, dd, w, h, a in zip(boxes.tolist(), labels.tolist(), diff.tolist(), wh[:, 0].tolist(),
                                     wh[:, 1].tolist(), areas.tolist()):
            aid += 1
            anns.append({"id": aid, "image_id": img_id, "category_id": int(c), "bbox": [b[0], b[1], w, h],
                         "area": a, "iscrowd": int(dd)})
        dboxes = np.asarray(d.get("boxes", np.zeros((0, 4))), np.float64).reshape(-1, 4)
        scores = np.asarray(d.get("scores", np.zeros(0)), np.float64).reshape(-1)
        dlab = np.asarray(d.get("labels", np.zeros(0)), np.int64).reshape(-1)
        for b, s, c in zip(dboxes.tolist(), scores.tolist(), dlab.tolist()):
            w, h = b[2] - b[0], b[3] - b[1]
            results.append({"image_id": img_id, "category_id": int(c), "bbox": [b[0], b[1], w, h],
                            "score": s, "area": w * h})
    cats = [{"id": c, "name": str(c)} for c in range(1, num_classes + 1)]
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {"images": images, "annotations": anns, "categories": cats}
        gt.createIndex()
        dt = COCO()
        dt.dataset = {"images": images, "annotations": [], "categories": cats}
        for k, r in enumerate(results):  # what COCO.loadRes does, which fails on an empty list
            r["id"] = k + 1
            r["iscrowd"] = 0
        dt.dataset["annotations"] = results
        dt.createIndex()
    return gt, dt


def evaluate_coco(gts: list[dict], dets: list[dict], num_classes: int, iou: float | None = None) -> dict:
    """COCOeval (bbox). ``iou`` None: the standard 0.50:0.95 thresholds and the 12 numbers; a value
    replaces the threshold list with that one IoU (then ``AP`` is the AP at it, and the stats
    that name another threshold are -1 as pycocotools reports absent entries)."""
    from pycocotools.cocoeval import COCOeval  # as above

    gt, dt = to_coco(gts, dets, num_classes)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        E = COCOeval(gt, dt, "bbox")
        if iou is not None:
            E.params.iouThrs = np.array([float(iou)])
        E.evaluate()
        E.accumulate()
        E.summarize()
    prec = E.eval["precision"]            # (T, R, K, A, M): iou thr, recall thr, class, area, maxdets
    aps, curves = [], []
    rec_thrs = np.asarray(E.params.recThrs)
    for k in range(num_classes):
        p = prec[:, :, k, 0, -1]
        v = p[p > -1]
        aps.append(float(v.mean()) if v.size else float("nan"))
        p0 = prec[0, :, k, 0, -1]
        curves.append((rec_thrs[p0 > -1], p0[p0 > -1]))
    return {"AP": aps, "stats": dict(zip(STAT_NAMES, [float(s) for s in E.stats])),
            "summary": out.getvalue().strip().splitlines()[-12:], "curves": curves,
            "iou": float(iou) if iou is not None else "0.50:0.95"}
