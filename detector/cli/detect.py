"""detect: find objects in images with a trained detector (default: the bundled BCCD model)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from backbone.errors import UserError

from .common import add_device_arg, cli_main, resolve_device


def draw(image, det, path: str) -> None:
    """Write ``image`` with labelled boxes to ``path`` (PNG/JPEG by extension)."""
    import cv2

    img = image[:, :, ::-1].copy()
    palette = [(0, 0, 255), (255, 128, 0), (0, 200, 0), (200, 0, 200), (0, 200, 200), (255, 0, 0), (128, 128, 0)]
    for b, s, l in sorted(zip(det.boxes, det.scores, det.labels), key=lambda t: t[1]):
        color = palette[(int(l) - 1) % len(palette)]
        x1, y1, x2, y2 = (int(round(v)) for v in b)
        cv2.rectangle(img, (x1, y1), (x2 - 1, y2 - 1), color, 2)
        text = f"{det.classes[int(l) - 1]} {s:.2f}"
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)
        ty = max(y1, th + 4)
        cv2.rectangle(img, (x1, ty - th - 4), (x1 + tw + 2, ty), color, -1)
        cv2.putText(img, text, (x1 + 1, ty - 3), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    if not cv2.imwrite(path, img):
        from backbone.errors import UserError
        raise UserError(f"cannot write {path}")


@cli_main
def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="detect",
        description="Detect objects: selective search / MultiBox proposals scored by an Inception ensemble.",
        epilog="example: detect examples/BloodImage_00007.jpg --out out/ --json out/detections.json",
    )
    p.add_argument("inputs", nargs="+", metavar="IMAGE_OR_FOLDER")
    p.add_argument("--model", help="detector checkpoint (default: the bundled BCCD model)")
    p.add_argument("--out", help="folder for the images with boxes drawn (PNG)")
    p.add_argument("--json", help="write the detections JSON (one object per image) to this file")
    p.add_argument("--score-thr", type=float, default=0.5,
                   help="minimum score (default 0.5, for boxes a person reads; eval-map --split uses the "
                        "config's test.score_thr, 0.05 in configs/bccd.yaml, as AP needs the low-score tail)")
    p.add_argument("--max-per-image", type=int, help="at most this many detections per image")
    p.add_argument("--timing", action="store_true",
                   help="print seconds per stage for each image: load, proposals, warp, network, postprocess")
    add_device_arg(p)
    args = p.parse_args(argv)

    from ..images import list_images, load_image
    from ..inference import Detector, resolve_model_path

    images = list_images(args.inputs)
    detector = Detector.from_checkpoint(resolve_model_path(args.model), resolve_device(args.device))
    if not 0.0 <= args.score_thr <= 1.0:
        raise UserError(f"--score-thr {args.score_thr}: must be between 0 and 1")
    detector.cfg.test.score_thr = args.score_thr
    if args.max_per_image is not None:
        detector.cfg.test.max_per_image = args.max_per_image
    if args.out:
        os.makedirs(args.out, exist_ok=True)
    results = []
    used = set()
    for path in images:
        t0 = time.perf_counter()
        image = load_image(path)
        t_load = time.perf_counter() - t0
        det = detector(image)
        det.seconds["load"] = t_load
        results.append(det.to_json(path))
        print(f"{path}: {len(det.boxes)} detections")
        if len(det.boxes):
            print(f"  {'label':<12}{'score':>7}  box (x1, y1, x2, y2)")
            for b, s, name in zip(det.boxes, det.scores, det.names):
                print(f"  {name:<12}{s:>7.3f}  {b[0]:.0f}, {b[1]:.0f}, {b[2]:.0f}, {b[3]:.0f}")
        if args.timing:
            print("  seconds: " + ", ".join(f"{k} {v:.3f}" for k, v in det.seconds.items()))
        if args.out:
            stem = os.path.splitext(os.path.basename(path))[0]
            name, k = stem, 1
            while name in used:  # two inputs with one name: never overwrite our own output
                k += 1
                name = f"{stem}_{k}"
            used.add(name)
            draw(image, det, os.path.join(args.out, name + ".png"))
    if args.json:
        d = os.path.dirname(os.path.abspath(args.json))
        os.makedirs(d, exist_ok=True)
        tmp = args.json + ".tmp"
        with open(tmp, "w") as f:
            json.dump(results, f, indent=1)
        os.replace(tmp, args.json)
        print(f"wrote {args.json}", file=sys.stderr)
    return 0
