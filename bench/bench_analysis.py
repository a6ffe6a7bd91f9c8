"""Speed of the error analysis (`eval.analysis.analyze`) against the plain evaluation it explains.

The synthetic set of bench_eval.py (5,000 images, 200 classes, 100 detections per image: 500,000
detections), in memory. Timed in this one run: `eval.evaluate(protocol, ...)` (the numbers
eval-map prints), `eval.analysis.analyze(protocol, ...)` (every number of the analysis: Hoiem,
COCO stack, TIDE dAP, sensitivity, confusion, F1, gallery lists), and apart from both
`write_report` (analysis.json and the figures for all classes and the 5 lowest-AP ones).
Target: analyze under 3x evaluate. Options: --protocol (voc), --images N, --seed S, --no-figures.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)


def to_arrays(gt: dict, results: list[dict]):
    """bench_eval's COCO dicts -> per-image arrays for eval.evaluate (x2 = x + w)."""
    row = {im["id"]: k for k, im in enumerate(gt["images"])}
    n = len(row)
    gb, gl, db, ds, dl = ([[] for _ in range(n)] for _ in range(5))
    for a in gt["annotations"]:
        x, y, w, h = a["bbox"]
        k = row[a["image_id"]]
        gb[k].append([x, y, x + w, y + h])
        gl[k].append(a["category_id"])
    for r in results:
        x, y, w, h = r["bbox"]
        k = row[r["image_id"]]
        db[k].append([x, y, x + w, y + h])
        ds[k].append(r["score"])
        dl[k].append(r["category_id"])
    gts = [{"boxes": np.array(b, float).reshape(-1, 4), "labels": np.array(lab, int),
            "difficult": np.zeros(len(lab), bool)} for b, lab in zip(gb, gl)]
    dets = [{"boxes": np.array(b, float).reshape(-1, 4), "scores": np.array(s, float), "labels": np.array(lab, int)}
            for b, s, lab in zip(db, ds, dl)]
    return gts, dets


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--protocol", default="voc", choices=["voc", "voc07", "ilsvrc", "coco"])
    p.add_argument("--images", type=int, default=5000)
    p.add_argument("--classes", type=int, default=200)
    p.add_argument("--dets", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-figures", action="store_true")
    a, _ = p.parse_known_args(argv)   # make bench passes the same argv to every script

    from bench_eval import make_set

    from eval import evaluate
    from detector.io.figures import write_report
    from eval.analysis import analyze

    gt, res = make_set(a.images, a.classes, a.dets, a.seed)
    gts, dets = to_arrays(gt, res)
    classes = [c["name"] for c in gt["categories"]]
    print(f"synthetic set: {a.images} images, {a.classes} classes, {len(gt['annotations'])} gt boxes, "
          f"{len(res)} detections; protocol {a.protocol}", flush=True)

    t = time.perf_counter()
    e = evaluate(a.protocol, gts, dets, len(classes))
    t_eval = time.perf_counter() - t
    print(f"eval.evaluate:          {t_eval:7.2f} s   mAP {e['mAP']:.4f}", flush=True)
    t = time.perf_counter()
    r = analyze(a.protocol, gts, dets, classes)
    t_ana = time.perf_counter() - t
    print(f"eval.analysis.analyze:  {t_ana:7.2f} s   mAP {r['mAP']:.4f}, TIDE dAP "
          + " ".join(f"{k} {v:.4f}" for k, v in r["tide"]["dAP"].items()), flush=True)
    if not a.no_figures:
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            paths = write_report(r, tmp, classes)
            t_fig = time.perf_counter() - t
        print(f"write_report (figures): {t_fig:7.2f} s   {len(paths)} files", flush=True)
    print(f"ratio analyze / evaluate ({a.protocol}): {t_ana / t_eval:.2f}x  (target < 3x)")


if __name__ == "__main__":
    main()
