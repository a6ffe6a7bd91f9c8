"""Post-processing shared by both detector kinds: region scores -> per-class detections
(optional class-specific box regression, score threshold, per-class NMS, a cap per image)."""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import batched_nms, clip_boxes_to_image, remove_small_boxes

from .boxes import decode_boxes
from .config import TestConfig


def postprocess(probs: Tensor, boxes: Tensor, deltas: Tensor | None, image_size: tuple[int, int], test: TestConfig):
    """Per-class detections from region scores.

    probs (N, C + 1) class probabilities; boxes (N, 4) the regions; deltas (N, C, 4) or None.
    Every (region, class) pair above ``test.score_thr`` is a candidate (with its class's
    regressed box when there is regression); greedy NMS per class at ``test.nms_iou``; the
    ``test.max_per_image`` best are kept. Returns boxes (K, 4), scores (K,), labels (K,) 1..C.
    """
    n, c1 = probs.shape
    num_classes = c1 - 1
    if n == 0:
        return torch.zeros((0, 4)), torch.zeros(0), torch.zeros(0, dtype=torch.int64)
    if deltas is not None:
        cand = decode_boxes(deltas.reshape(n * num_classes, 4), boxes.repeat_interleave(num_classes, 0))
        cand = clip_boxes_to_image(cand, image_size).view(n, num_classes, 4)
    else:
        cand = boxes[:, None, :].expand(n, num_classes, 4)
    scores = probs[:, 1:]
    labels = torch.arange(1, c1).expand(n, num_classes)
    keep = scores > test.score_thr
    cand, scores, labels = cand[keep], scores[keep], labels[keep]
    ok = remove_small_boxes(cand, 1e-2)
    cand, scores, labels = cand[ok], scores[ok], labels[ok]
    kept = batched_nms(cand, scores, labels, test.nms_iou)[: test.max_per_image]
    return cand[kept], scores[kept], labels[kept]
