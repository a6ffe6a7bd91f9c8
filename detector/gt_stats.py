"""How much ground-truth boxes of one class overlap each other: the evidence for an NMS threshold.

``python -m detector.gt_stats --config configs/bccd.yaml --split trainval`` prints, for IoU
thresholds t, the share of boxes whose IoU with another box of their class in the same image
exceeds t: greedy per-class NMS at t can keep at most one box of such a pair.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch
from torchvision.ops import box_iou

from .cli.common import add_config_args, cli_main


def max_same_class_iou(records) -> np.ndarray:
    """Per ground-truth box, its largest IoU with another box of its class in its image."""
    out = []
    for r in records:
        boxes, labels = torch.as_tensor(r.boxes, dtype=torch.float32), torch.as_tensor(r.labels)
        for c in labels.unique():
            b = boxes[labels == c]
            if len(b) < 2:
                out.extend([0.0] * len(b))
                continue
            iou = box_iou(b, b)
            iou.fill_diagonal_(0)
            out.extend(iou.max(1).values.tolist())
    return np.asarray(out)


@cli_main
def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m detector.gt_stats", description=__doc__.split("\n\n")[0])
    add_config_args(p, required=True)
    p.add_argument("--split", default="trainval", help="dataset split (default trainval)")
    args = p.parse_args(argv)
    from .datasets import load_dataset
    from .schema import load_detector_config

    cfg = load_detector_config(args.config, args.overrides, args.data_root)
    ds = load_dataset(cfg.data, args.split)
    m = max_same_class_iou(ds.records)
    print(f"{args.split}: {len(m)} boxes")
    for t in (0.3, 0.4, 0.5, 0.6, 0.7):
        print(f"IoU with another box of the same class > {t}: {(m > t).mean():.1%}")
    return 0


if __name__ == "__main__":
    main()
