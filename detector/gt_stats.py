"""How much ground-truth boxes of one class overlap each other: the evidence for an NMS threshold.

:func:`max_same_class_iou` gives, per ground-truth box, its largest IoU with another box of its
class in the same image; greedy per-class NMS at a threshold t can keep at most one box of a
pair above t. The command line is ``gt-stats`` (:mod:`detector.cli.gt_stats`).
"""

from __future__ import annotations

import numpy as np
import torch
from torchvision.ops import box_iou


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

