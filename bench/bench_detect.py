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

3. ``detect`` end to end with image decode (issue 23), BCCD test images 2..``--images`` after one
   warm-up: (a) the bundled fast model, 2 members, selective search computed LIVE (not the
   cache) against (b) ``--onepass CKPT`` (default detector/assets/bccd_onepass.pt; the row is
   skipped with a note when it does not exist): seconds per image, the stage split
   (Detections.seconds: load = decode, proposals, trunk, head, postprocess), the ratio (a)/(b).
4. Images/s over a folder of ``--folder-images`` (72) BCCD test images, the bundled fast model
   with cached proposals: the per-image loop (decode in the loop, one image per trunk call)
   against the batched path ``detect FOLDER`` / ``eval-map --split`` take with ``--batch``
   (4) and ``--read-workers`` (1) (decoded ahead, several images per trunk call); their
   defaults are whichever measured faster (``detector.model.DETECT_BATCH``,
   ``detector.io.image_stream.READ_WORKERS``).

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
from detector.io.image_stream import READ_WORKERS, read_images  # noqa: E402
from detector.io.images import load_image  # noqa: E402
from detector.kinds import kind_of  # noqa: E402
from detector.model import DETECT_BATCH, Detector  # noqa: E402
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


STAGES = ("load", "proposals", "trunk", "head", "warp", "network", "postprocess")


def _end_to_end(det: Detector, paths: list[str]) -> list[dict]:
    """detect's work per image (decode, proposals as the model makes them, scoring): stage
    seconds and the wall ``total``."""
    rows = []
    for p in paths:
        t0 = time.perf_counter()
        image = load_image(p)
        t_load = time.perf_counter() - t0
        d = det(image)
        total = time.perf_counter() - t0
        row = {k: d.seconds[k] for k in STAGES if k in d.seconds}
        row["load"] = t_load
        row["total"] = total
        rows.append(row)
    return rows


def _stage_line(name: str, row: dict) -> str:
    parts = ", ".join(f"{k} {row[k]:.3f}" for k in STAGES if k in row)
    return f"  {name:<34} {row['total']:.3f} s/image ({parts})"


def bench_end_to_end(n: int, onepass: str | None) -> None:
    fast_path = os.path.join(ASSETS, "bccd_fast.pt")
    if not (os.path.isdir(BCCD) and os.path.isfile(fast_path)):
        print(f"end-to-end part skipped (needs {BCCD} and {fast_path})")
        return
    ds = load_dataset(replace(Detector.from_checkpoint(fast_path).cfg.data, root=BCCD), "test")
    paths = [r.path for r in ds.records[:n]]
    print(f"detect end to end with image decode, BCCD test images 2-{n} after one warm-up, 2 members each")
    fast = Detector.from_checkpoint(fast_path, members=2)
    rows = {}
    a = _end_to_end(fast, paths)
    rows["a"] = _mean(a[1:])
    print(_stage_line("(a) fast, selective search live", rows["a"]))
    if not onepass or not os.path.isfile(onepass):
        print(f"  (b) one-pass row skipped: no checkpoint at {onepass} (give --onepass CKPT)")
        return
    one = Detector.from_checkpoint(onepass)
    one = one.configured(members=min(2, len(one.ensemble.members)))
    b = _end_to_end(one, paths)
    rows["b"] = _mean(b[1:])
    print(_stage_line(f"(b) {os.path.basename(onepass)}", rows["b"]))
    print(f"  ratio (a)/(b): {rows['a']['total'] / rows['b']['total']:.2f}x")


def _folder_run(det: Detector, paths, props, batch: int, workers: int) -> float:
    """Seconds for the folder: decoded by ``workers`` processes, ``batch`` images per call."""
    t0 = time.perf_counter()
    pending = []
    for r in read_images(paths, workers=workers):
        pending.append((r.image, props[r.index]))
        if len(pending) >= batch:
            det.detect_batch([p[0] for p in pending], [p[1] for p in pending])
            pending.clear()
    if pending:
        det.detect_batch([p[0] for p in pending], [p[1] for p in pending])
    return time.perf_counter() - t0


def bench_folder(n: int, batch: int, workers: int, onepass: str | None = None) -> None:
    fast_path = os.path.join(ASSETS, "bccd_fast.pt")
    if not (os.path.isdir(BCCD) and os.path.isfile(fast_path)):
        print(f"folder part skipped (needs {BCCD} and {fast_path})")
        return
    det = Detector.from_checkpoint(fast_path)
    ds = load_dataset(replace(det.cfg.data, root=BCCD), "test")
    ds.records = ds.records[:n]
    props = ensure_proposals(ds, det.cfg.proposals)
    props = [props[i] for i in range(len(ds.records))]
    paths = [r.path for r in ds.records]
    print(f"folder of {n} BCCD test images, bundled fast model ({len(det.ensemble.members)} members), cached "
          f"proposals, torch threads {torch.get_num_threads()}")
    det.detect_batch([load_image(paths[0])], [props[0]])  # warm-up
    settings = [("per-image loop (batch 1, decode in the loop)", 1, 0),
                (f"batched / prefetch (batch {batch}, {workers} read worker(s))", batch, workers)]
    secs = {name: [] for name, _, _ in settings}
    for _ in range(2):  # alternated, the faster of two runs each: a shared machine's noise
        for name, b, w in settings:
            secs[name].append(_folder_run(det, paths, props, b, w))
    base = min(secs[settings[0][0]])
    for name, _, _ in settings:
        s = min(secs[name])
        print(f"  {name:<52} {n / s:.2f} images/s ({s:.1f} s; {base / s:.2f}x)")
    if onepass and os.path.isfile(onepass):  # its own proposals: nothing cached, the trunk once per image
        one = Detector.from_checkpoint(onepass)
        one(load_image(paths[0]))  # warm-up
        s = min(_folder_run(one, paths, [None] * n, 1, 0) for _ in range(2))
        print(f"  {os.path.basename(onepass) + ' (its own proposals, per image)':<52} {n / s:.2f} images/s ({s:.1f} s; "
              f"{base / s:.2f}x)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=20, help="BCCD test images (default 20)")
    p.add_argument("--paper-images", type=int, default=2, help="500x375 images at the paper's setting (default 2)")
    p.add_argument("--proposals", type=int, default=2000, help="proposals per image at the paper's setting")
    p.add_argument("--skip-paper", action="store_true")
    p.add_argument("--skip-bccd", action="store_true")
    p.add_argument("--onepass", default=os.path.join(ASSETS, "bccd_onepass.pt"),
                   help="one-pass detector checkpoint for the end-to-end row (default: the bundled one when it exists)")
    p.add_argument("--folder-images", type=int, default=72, help="BCCD test images of the folder row (default 72)")
    p.add_argument("--batch", type=int, default=4, help="images per trunk call of the folder row's batched path "
                   f"(default 4; detect's default is {DETECT_BATCH})")
    p.add_argument("--read-workers", type=int, default=1, help="decoding processes of the folder row's batched path "
                   f"(default 1; detect's default is {READ_WORKERS})")
    p.add_argument("--skip-end-to-end", action="store_true")
    p.add_argument("--skip-folder", action="store_true")
    args = p.parse_args()
    torch.manual_seed(0)
    t0 = time.time()
    if not args.skip_bccd:
        bench_bccd(max(2, args.images))
    if not args.skip_paper:
        bench_paper(args.paper_images, args.proposals)
    if not args.skip_end_to_end:
        bench_end_to_end(max(2, args.images), args.onepass)
    if not args.skip_folder:
        bench_folder(max(1, args.folder_images), args.batch, args.read_workers, args.onepass)
    print(f"({time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
