"""Proposal engines on BCCD, measured in one run: boxes/image, recall@0.5 per class, MABO,
seconds/image, and time ratios.

Engines, run image by image in turn (so a change of machine load hits all of them alike):
  ours fast            R-CNN fast mode (HSV+Lab, k 50/100, 500 px working width)
  ours fast 2x         the paper's superpixel size x2 (k 100/200)
  ours single          one strategy (HSV, k 100, C+T+S+F), like the package's one strategy
  ours @cv-fast        configured as OpenCV's switchToSelectiveSearchFast() defaults (preset
                       opencv_fast: HSV+Lab, k 150/300/450, min size 100, sigma 0.8, C+T+S+F
                       and T+S+F; full image, no resize, no small boxes dropped)
  ours @cv-fast 2x     the same with k doubled (300/600/900, min size still 100), as the
                       OpenCV fast 2x row (base_k = inc_k = 300)
  2x + MultiBox        ours fast 2x plus the top 200 MultiBox boxes (with --multibox CKPT)
  selectivesearch      the PyPI package at its README settings (scale 500, sigma 0.9, min
                       size 10), 500 px working width; slow, so on the first --package-images
  OpenCV fast          ximgproc switchToSelectiveSearchFast (and k doubled), in a separate
                       virtual environment this script creates (opencv-contrib-python-headless
                       overwrites cv2, so it is never a dependency of the package)

    python bench/bench_proposals.py [--images 30] [--package-images 5] [--multibox CKPT] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# OpenCV fast with k doubled: switchToSelectiveSearchFast(base_k=300, inc_k=300) runs
# k = 300, 600, 900 (min size stays at createGraphSegmentation's 100)
CV_FAST_2X_KS = (300, 600, 900)

OPENCV_WORKER = r"""
import json, sys, time
import cv2
cv2.setNumThreads(1)
for line in sys.stdin:
    req = json.loads(line)
    im = cv2.imread(req["path"])
    ss = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()
    ss.setBaseImage(im)
    ss.switchToSelectiveSearchFast(base_k=req["k"], inc_k=req["k"], sigma=0.8)
    t = time.perf_counter()
    rects = ss.process()
    dt = time.perf_counter() - t
    boxes = [[int(x), int(y), int(x + w), int(y + h)] for x, y, w, h in rects]
    print(json.dumps({"boxes": boxes, "seconds": dt}), flush=True)
"""


def opencv_python(venv: Path) -> str | None:
    """The bench venv's python with opencv-contrib (created on first use), or None."""
    py = venv / "bin" / "python"
    check = [str(py), "-c", "import cv2; cv2.ximgproc.segmentation.createSelectiveSearchSegmentation"]
    if py.exists() and subprocess.call(check, stderr=subprocess.DEVNULL) == 0:
        return str(py)
    print(f"creating {venv} with opencv-contrib-python-headless ...", file=sys.stderr, flush=True)
    try:
        subprocess.check_call([sys.executable, "-m", "venv", str(venv)])
        subprocess.check_call([str(py), "-m", "pip", "install", "-q", "opencv-contrib-python-headless", "numpy"])
    except (subprocess.CalledProcessError, OSError) as e:
        print(f"OpenCV comparison skipped: could not create the venv ({e})", file=sys.stderr)
        return None
    return str(py) if subprocess.call(check, stderr=subprocess.DEVNULL) == 0 else None


class OpenCVWorker:
    def __init__(self, python: str):
        self.p = subprocess.Popen([python, "-c", OPENCV_WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def __call__(self, path: str, k: int):
        self.p.stdin.write(json.dumps({"path": path, "k": k}) + "\n")
        self.p.stdin.flush()
        r = json.loads(self.p.stdout.readline())
        return np.asarray(r["boxes"], np.float32).reshape(-1, 4), r["seconds"]

    def close(self):
        self.p.stdin.close()
        self.p.wait()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-root", default=os.environ.get("SHARED_DATA", str(ROOT.parent / "shared" / "data")) + "/bccd")
    ap.add_argument("--split", default="test")
    ap.add_argument("--images", type=int, default=30, help="first N images of the split (default 30)")
    ap.add_argument("--package-images", type=int, default=5, help="images for the slow selectivesearch package")
    ap.add_argument("--multibox", help="MultiBox checkpoint: adds the 2x + MultiBox top 200 row")
    ap.add_argument("--no-opencv", action="store_true")
    ap.add_argument("--opencv-venv", default=os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "googlenet-det", "bench-venv-opencv"))
    ap.add_argument("--json", help="write the results as JSON")
    args = ap.parse_args()
    if not os.path.isdir(args.data_root):
        print(f"bench_proposals: skipped, no BCCD at {args.data_root}")
        return 0

    import warnings

    from detector.config import DataConfig
    from detector.io.datasets import load_dataset
    from detector.io.images import load_image
    from eval.proposal_recall import proposal_recall
    from proposals.pipeline import merge_boxes
    from proposals.selective_search import selective_search

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = load_dataset(DataConfig(format="voc", root=args.data_root), args.split)
    records = ds.records[: args.images]
    engines = {
        "ours fast": lambda im, p: selective_search(im, "fast", 1.0),
        "ours fast 2x": lambda im, p: selective_search(im, "fast", 2.0),
        "ours single": lambda im, p: selective_search(im, "single", 1.0),
        # OpenCV's settings exactly (see the opencv_fast preset): every k with min size 100
        "ours @cv-fast": lambda im, p: selective_search(im, "opencv_fast", 1.0, working_width=0, min_box_width=0),
        "ours @cv-fast 2x": lambda im, p: selective_search(im, "opencv_fast", 1.0, working_width=0, min_box_width=0,
                                                           ks=CV_FAST_2X_KS),
    }
    mb = None
    if args.multibox:
        from proposals.multibox import load_multibox, predict

        mb = load_multibox(args.multibox)
    cv = None
    if not args.no_opencv:
        py = opencv_python(Path(args.opencv_venv))
        cv = OpenCVWorker(py) if py else None
    selective_search(load_image(records[0].path)[:100, :100])  # numba: load compiled code before timing

    names = list(engines) + (["2x + MultiBox"] if mb else []) + (["OpenCV fast", "OpenCV fast 2x"] if cv else []) \
        + ["selectivesearch"]
    boxes = {n: [] for n in names}
    secs = {n: [] for n in names}
    for i, rec in enumerate(records):
        im = load_image(rec.path)
        for n, fn in engines.items():
            t = time.perf_counter()
            boxes[n].append(fn(im, rec.path))
            secs[n].append(time.perf_counter() - t)
        if mb:
            t = time.perf_counter()
            mbb = predict(mb, [im], top_k=200)[0][0]
            boxes["2x + MultiBox"].append(merge_boxes(mbb, boxes["ours fast 2x"][-1], 0.95))
            secs["2x + MultiBox"].append(secs["ours fast 2x"][-1] + time.perf_counter() - t)
        if cv:
            for n, k in (("OpenCV fast", 150), ("OpenCV fast 2x", 300)):
                b, s = cv(rec.path, k)
                boxes[n].append(b)
                secs[n].append(s)
        if i < args.package_images:
            t = time.perf_counter()
            boxes["selectivesearch"].append(selective_search(im, backend="selectivesearch"))
            secs["selectivesearch"].append(time.perf_counter() - t)
        print(f"  image {i + 1}/{len(records)}", file=sys.stderr, flush=True)
    if cv:
        cv.close()

    rows = {}
    for n in names:
        recs = records[: len(boxes[n])]
        r = proposal_recall([x.boxes for x in recs], [x.labels for x in recs], boxes[n], len(ds.classes))
        rows[n] = {"images": len(recs), "boxes_per_image": r["boxes_per_image"],
                   "recall@0.5": {c: (pc["0.5"] if pc else None) for c, pc in zip(ds.classes, r["recall_per_class"])},
                   "recall@0.5_all": r["recall"]["0.5"], "recall@0.7_all": r["recall"]["0.7"],
                   "mabo": r["mabo"], "seconds_per_image": float(np.mean(secs[n]))}
    cls = list(ds.classes)
    print(f"BCCD {args.split}, first {len(records)} images (selectivesearch package: first {len(boxes['selectivesearch'])})")
    head = f"{'engine':<18}{'imgs':>5}{'boxes/img':>10}" + "".join(f"{'R@.5 ' + c[:8]:>15}" for c in cls) + \
        f"{'R@.5 all':>10}{'R@.7 all':>10}{'MABO':>7}{'s/img':>8}"
    print(head)
    for n, r in rows.items():
        print(f"{n:<18}{r['images']:>5}{r['boxes_per_image']:>10.0f}" +
              "".join(f"{r['recall@0.5'][c]:>15.3f}" if r['recall@0.5'][c] is not None else f"{'-':>15}" for c in cls) +
              f"{r['recall@0.5_all']:>10.3f}{r['recall@0.7_all']:>10.3f}{r['mabo']:>7.3f}{r['seconds_per_image']:>8.2f}")

    def ratio(a, b, n=None):
        sa, sb = secs[a][:n], secs[b][:n]
        return float(np.sum(sb) / np.sum(sa))

    ratios = {}
    npk = len(secs["selectivesearch"])
    ratios["selectivesearch / ours fast (same images)"] = ratio("ours fast", "selectivesearch", npk)
    ratios["selectivesearch / ours single (same images)"] = ratio("ours single", "selectivesearch", npk)
    ratios["ours fast / ours fast 2x"] = ratio("ours fast 2x", "ours fast")
    if cv:
        ratios["OpenCV fast / ours @cv-fast"] = ratio("ours @cv-fast", "OpenCV fast")
        ratios["OpenCV fast 2x / ours @cv-fast 2x"] = ratio("ours @cv-fast 2x", "OpenCV fast 2x")
        ratios["OpenCV fast / ours fast"] = ratio("ours fast", "OpenCV fast")
    cut = 1 - rows["ours fast 2x"]["boxes_per_image"] / rows["ours fast"]["boxes_per_image"]
    print(f"2x superpixels cut our boxes by {100 * cut:.0f}%")
    for k, v in ratios.items():
        print(f"time ratio {k}: {v:.1f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "ratios": ratios, "box_cut_2x": cut}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
