"""Speed of `eval-map --protocol voc` against pycocotools COCOeval, on the same synthetic set.

5,000 images, 200 classes, 100 detections per image (500,000 detections; about 40% of them
jittered copies of one of the ~5 ground-truth boxes per image). Both sides start from the same
two files on disk (COCO instances JSON, COCO results JSON) and end with the numbers:

- ours:  `eval-map --protocol voc --ground-truth gt.json --detections dets.json` (the CLI's
         main(), in this process: reading, validation, matching, AP, the printed table);
- COCOeval: COCO(gt.json), loadRes(dets.json), evaluate(), accumulate() (bbox, its defaults).

Also reported: our in-memory `eval.evaluate("voc", ...)` alone. Prints the ratio measured in
this one run. Takes a few minutes (COCOeval is the slow side). Options: --images N --seed S.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def make_set(n_images: int, n_classes: int, dets_per_image: int, seed: int):
    rng = np.random.default_rng(seed)
    images, anns, results = [], [], []
    W, H = 640, 480
    for i in range(1, n_images + 1):
        images.append({"id": i, "file_name": f"{i:06d}.jpg", "width": W, "height": H})
        n = int(rng.integers(1, 10))
        xy = rng.uniform(0, [W - 40, H - 40], size=(n, 2))
        wh = rng.uniform(20, 300, size=(n, 2))
        wh = np.minimum(wh, [W, H] - xy)
        cls = rng.integers(1, n_classes + 1, size=n)
        for b0, b1, c in zip(xy, wh, cls):
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": int(c), "iscrowd": 0,
                         "bbox": [float(b0[0]), float(b0[1]), float(b1[0]), float(b1[1])], "area": float(b1[0] * b1[1])})
        m = dets_per_image
        near = rng.random(m) < 0.4
        pick = rng.integers(0, n, size=m)
        dxy = np.where(near[:, None], xy[pick] + rng.normal(0, 8, (m, 2)), rng.uniform(0, [W - 40, H - 40], (m, 2)))
        dwh = np.where(near[:, None], wh[pick] * rng.uniform(0.8, 1.2, (m, 2)), rng.uniform(10, 300, (m, 2)))
        dcls = np.where(near & (rng.random(m) < 0.8), cls[pick], rng.integers(1, n_classes + 1, size=m))
        score = rng.random(m)
        for b0, b1, c, s in zip(dxy, dwh, dcls, score):
            results.append({"image_id": i, "category_id": int(c), "bbox": [float(b0[0]), float(b0[1]), float(b1[0]), float(b1[1])],
                            "score": float(s)})
    cats = [{"id": c, "name": f"c{c:03d}"} for c in range(1, n_classes + 1)]
    return {"images": images, "annotations": anns, "categories": cats}, results


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=5000)
    p.add_argument("--classes", type=int, default=200)
    p.add_argument("--dets", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from detector.cli.eval_map import main as eval_map
    from detector.io.datasets import ground_truth
    from detector.io.datasets.ground_truth import read_ground_truth
    from detector.io.detections import read_detections
    from eval import evaluate

    gt, res = make_set(a.images, a.classes, a.dets, a.seed)
    with tempfile.TemporaryDirectory() as tmp:
        gt_path, det_path = os.path.join(tmp, "gt.json"), os.path.join(tmp, "dets.json")
        with open(gt_path, "w") as f:
            json.dump(gt, f)
        with open(det_path, "w") as f:
            json.dump(res, f)
        print(f"synthetic set: {a.images} images, {a.classes} classes, {len(gt['annotations'])} gt boxes, "
              f"{len(res)} detections", flush=True)

        t = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()) as table:
            rc = eval_map(["--protocol", "voc", "--ground-truth", gt_path, "--detections", det_path])
        t_ours = time.perf_counter() - t
        assert rc == 0
        mAP = [ln for ln in table.getvalue().splitlines() if ln.startswith("mAP")][0]
        print(f"eval-map --protocol voc (files -> table): {t_ours:8.2f} s   {mAP.split('(')[0].strip()}", flush=True)

        g = read_ground_truth(gt_path)
        d = read_detections(det_path, g)
        gts = ground_truth(g)
        t = time.perf_counter()
        evaluate("voc", gts, d, len(g.classes))
        t_core = time.perf_counter() - t
        print(f"eval.evaluate('voc') in memory:           {t_core:8.2f} s", flush=True)

        t = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            cg = COCO(gt_path)
            cd = cg.loadRes(det_path)
            E = COCOeval(cg, cd, "bbox")
            E.evaluate()
            E.accumulate()
        t_coco = time.perf_counter() - t
        print(f"pycocotools COCOeval (files -> accumulate): {t_coco:6.2f} s", flush=True)
    print(f"ratio COCOeval / eval-map voc: {t_coco / t_ours:.1f}x  (target >= 5x); "
          f"COCOeval / in-memory evaluate: {t_coco / t_core:.1f}x")


if __name__ == "__main__":
    main()
