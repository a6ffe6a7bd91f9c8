"""Seconds per image by stage of the two detector kinds, in one run, on the same images with
the same cached proposals and the same number of members; the ratio of their network time.

1. BCCD (needs ../shared/data/bccd and the bundled models): the first ``--images`` (20) test
   images, R-CNN (detector/assets/bccd_rcnn.pt: warp, network) against the fast kind
   (detector/assets/bccd_fast.pt: trunk, pooling + head); both: proposals (the cache's
   recorded selective-search time), post-processing. Per-image figures are the mean over
   images 2..N after one warm-up image, which is reported apart.
2. The paper's setting, where the gain is largest: ``--paper-images`` (2) images of 500x375,
   GoogLeNet (the paper's network, untrained weights), 1 member, 2,000 proposals; R-CNN warps
   at 224, the fast kind runs at the image's own shorter side (375) and at 600 (tap inception4e,
   its default).

Prints a table and the ratios (R-CNN warp + network over fast trunk + head).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from backbone.config import apply_overrides  # noqa: E402
from detector.config import DetectorConfig  # noqa: E402
from detector.io.datasets import load_dataset  # noqa: E402
from detector.io.images import load_image  # noqa: E402
from detector.kinds import kind_of  # noqa: E402
from detector.model import Detector  # noqa: E402
from detector.proposal_cache import ensure_proposals  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ASSETS = os.path.join(ROOT, "detector", "assets")
BCCD = os.environ.get("BCCD", os.path.join(os.path.dirname(ROOT), "shared", "data", "bccd"))


def _stages(det: Detector, images, proposals, seconds) -> list[dict]:
    rows = []
    for img, props, s in zip(images, proposals, seconds):
        d = det(img, proposals=props)
        row = {k: v for k, v in d.seconds.items() if k not in ("load", "proposals")}
        row["proposals"] = float(s)
        rows.append(row)
    return rows


def _mean(rows: list[dict]) -> dict:
    keys = rows[0].keys()
    return {k: float(np.mean([r[k] for r in rows])) for k in keys}


def _net(row: dict) -> float:
    return sum(row.get(k, 0.0) for k in ("warp", "network", "trunk", "head"))


def _fmt(name: str, row: dict) -> str:
    parts = ", ".join(f"{k} {v:.3f}" for k, v in row.items())
    return f"  {name:<28} {parts}  | networks {_net(row):.3f} s"


def bench_bccd(n: int) -> None:
    rcnn_path, fast_path = os.path.join(ASSETS, "bccd_rcnn.pt"), os.path.join(ASSETS, "bccd_fast.pt")
    if not (os.path.isdir(BCCD) and os.path.isfile(rcnn_path) and os.path.isfile(fast_path)):
        print(f"BCCD part skipped (needs {BCCD}, {rcnn_path} and {fast_path})")
        return
    rcnn = Detector.from_checkpoint(rcnn_path)
    fast = Detector.from_checkpoint(fast_path)
    members = min(len(rcnn.ensemble.members), len(fast.ensemble.members))
    rcnn, fast = rcnn.configured(members=members), fast.configured(members=members)
    cfg = rcnn.cfg
    ds = load_dataset(replace(cfg.data, root=BCCD), "test")
    ds.records = ds.records[:n]
    props, secs = ensure_proposals(ds, cfg.proposals, with_seconds=True)
    if fast.cfg.proposals != cfg.proposals:
        print("note: the two bundled models use different proposal settings; both get R-CNN's here")
    images = [load_image(r.path) for r in ds.records]
    print(f"BCCD test, first {n} images, {members} member(s) each, "
          f"{np.mean([len(p) for p in props]):.0f} proposals per image (cached selective search)")
    results = {}
    for name, det in (("rcnn", rcnn), ("fast", fast)):
        rows = _stages(det, images, props, secs)
        results[name] = rows
        print(_fmt(f"{name}: first image", rows[0]))
        print(_fmt(f"{name}: mean of images 2-{n}", _mean(rows[1:])))
    r, f = _mean(results["rcnn"][1:]), _mean(results["fast"][1:])
    print(f"  ratio (R-CNN warp + network) / (fast trunk + head): {_net(r) / _net(f):.1f}x")
    print(f"  end to end without proposals: R-CNN {sum(r.values()) - r['proposals']:.3f} s, "
          f"fast {sum(f.values()) - f['proposals']:.3f} s per image")


def bench_paper(n: int, proposals: int) -> None:
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (375, 500, 3), dtype=np.uint8) for _ in range(n)]
    boxes = []
    for _ in images:
        xy = rng.uniform(0, [450, 330], (proposals, 2))
        wh = rng.uniform(20, 300, (proposals, 2))
        boxes.append(np.concatenate([xy, np.minimum(xy + wh, [500, 375])], 1).astype(np.float32))
    base = ["model.arch=googlenet", "model.members=1", "model.aux_logits=false", "test.max_proposals=5000",
            "test.batch_size=128", "test.score_thr=0.05"]
    print(f"paper setting: {n} images of 500x375, GoogLeNet (untrained), 1 member, {proposals} proposals")
    rows = {}
    cfg = apply_overrides(DetectorConfig(), base + ["model.kind=rcnn", "model.rcnn.input_size=224"])
    det = Detector(cfg, [f"c{i}" for i in range(200)], [kind_of(cfg).build_member(cfg, 200, 0, inference=True)])
    rows["rcnn @224"] = _mean(_stages(det, images, boxes, [0.0] * n))
    for side in (375, 600):
        cfg = apply_overrides(DetectorConfig(), base + ["model.rcnn=null", "model.kind=fast",
                                                         f"model.fast.min_side={side}"])
        det = Detector(cfg, [f"c{i}" for i in range(200)], [kind_of(cfg).build_member(cfg, 200, 0, inference=True)])
        _stages(det, images[:1], boxes[:1], [0.0])  # warm-up
        rows[f"fast @{side}"] = _mean(_stages(det, images, boxes, [0.0] * n))
    for name, row in rows.items():
        print(_fmt(name, row))
    for side in (375, 600):
        print(f"  ratio R-CNN / fast @{side}: {_net(rows['rcnn @224']) / _net(rows[f'fast @{side}']):.0f}x")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=20, help="BCCD test images (default 20)")
    p.add_argument("--paper-images", type=int, default=2, help="500x375 images at the paper's setting (default 2)")
    p.add_argument("--proposals", type=int, default=2000, help="proposals per image at the paper's setting")
    p.add_argument("--skip-paper", action="store_true")
    p.add_argument("--skip-bccd", action="store_true")
    args = p.parse_args()
    torch.manual_seed(0)
    t0 = time.time()
    if not args.skip_bccd:
        bench_bccd(max(2, args.images))
    if not args.skip_paper:
        bench_paper(args.paper_images, args.proposals)
    print(f"({time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
