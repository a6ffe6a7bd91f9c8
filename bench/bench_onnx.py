"""onnxruntime against PyTorch for the networks of both bundled models, in one run on this CPU:
each model exported by ``export-model`` (into a temporary folder), then PyTorch and onnxruntime
take turns image by image on the same images with the same proposals (selective search,
computed once; R-CNN capped at ``--rcnn-proposals``, 300, since it warps every one), so load
changes hit both alike. Seconds per image are the networks' (fast: trunk + head; R-CNN: warp +
network), the mean over images 2..N after one warm-up image. Images: ``--images`` (6) BCCD
test images (../shared/data/bccd), else the bundled example and test-data images.

    python bench/bench_onnx.py [--images N] [--threads T]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from detector.cli.export_model import main as export_main  # noqa: E402
from detector.io.images import load_image  # noqa: E402
from detector.model import Detector  # noqa: E402
from detector.onnx import OnnxDetector  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ASSETS = os.path.join(ROOT, "detector", "assets")
BCCD = os.environ.get("BCCD", os.path.join(os.path.dirname(ROOT), "shared", "data", "bccd"))
NET = ("trunk", "head", "warp", "network")


def images(n: int) -> list[str]:
    split = os.path.join(BCCD, "ImageSets", "Main", "test.txt")
    if os.path.isfile(split):
        return [os.path.join(BCCD, "JPEGImages", f"{i}.jpg") for i in open(split).read().split()[:n]]
    return [os.path.join(ROOT, "examples", "BloodImage_00007.jpg"),
            os.path.join(ROOT, "tests", "data", "proposals", "BloodImage_00000.jpg")]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=6)
    ap.add_argument("--rcnn-proposals", type=int, default=300)
    ap.add_argument("--threads", type=int, default=0, help="torch and onnxruntime threads (0: their defaults)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    paths = images(args.images)
    print(f"{len(paths)} images, torch threads {torch.get_num_threads()}, onnxruntime threads "
          f"{args.threads or 'default'}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("bccd_fast.pt", "bccd_rcnn.pt"):
            ckpt, onnx_path = os.path.join(ASSETS, name), os.path.join(tmp, name.replace(".pt", ".onnx"))
            export_main(["--model", ckpt, "--out", onnx_path])
            pt, ox = Detector.from_checkpoint(ckpt, "cpu"), OnnxDetector(onnx_path, threads=args.threads)
            cap = None if pt.cfg.model.kind == "fast" else args.rcnn_proposals
            times = {"pytorch": [], "onnxruntime": []}
            for path in paths:
                image = load_image(path)
                props = pt.propose(image)[:cap]
                for label, det in (("pytorch", pt), ("onnxruntime", ox)):
                    d = det(image, proposals=props)
                    times[label].append(sum(v for k, v in d.seconds.items() if k in NET))
            mean = {k: float(np.mean(v[1:] if len(v) > 1 else v)) for k, v in times.items()}
            print(f"  {name:<14} networks s/image: pytorch {mean['pytorch']:.3f}, onnxruntime {mean['onnxruntime']:.3f}"
                  f"  | ratio pytorch / onnxruntime: {mean['pytorch'] / mean['onnxruntime']:.2f}x"
                  + (f" ({args.rcnn_proposals} proposals per image)" if cap else ""))


if __name__ == "__main__":
    main()
