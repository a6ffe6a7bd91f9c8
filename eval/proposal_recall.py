"""Proposal quality, arrays in and numbers out: recall at IoU thresholds, average best overlap
(ABO per class, MABO = mean over classes, Uijlings et al. section 5.1) and the recall-vs-number-
of-proposals curve. Boxes are float (N, 4) ``x1, y1, x2, y2``, 0-based continuous.

A ground-truth box is *covered* at threshold t when some proposal overlaps it with IoU >= t.
Proposals are taken in the given (ranked) order; ``max_boxes`` looks at the first n only.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .errors import EvalError


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, M) IoU of boxes ``a`` (N, 4) and ``b`` (M, 4); zero-area boxes overlap nothing."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, inter / union, 0.0)
    return iou


def _check(name: str, boxes, i: int) -> np.ndarray:
    arr = np.asarray(boxes, np.float64)
    if arr.size == 0:
        return arr.reshape(0, 4)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise EvalError(f"{name}[{i}]: boxes must be (N, 4), got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise EvalError(f"{name}[{i}]: boxes contain NaN or infinity")
    return arr


def best_overlaps(gt_boxes, proposals, max_boxes: int | None = None) -> np.ndarray:
    """(G,) best IoU of each ground-truth box with the first ``max_boxes`` proposals (0 if none)."""
    gt = _check("gt_boxes", gt_boxes, 0)
    pr = _check("proposals", proposals, 0)
    if max_boxes is not None:
        pr = pr[:max_boxes]
    if len(gt) == 0:
        return np.zeros(0)
    if len(pr) == 0:
        return np.zeros(len(gt))
    return box_iou(gt, pr).max(axis=1)


def proposal_recall(
    gt_boxes: Sequence,
    gt_labels: Sequence,
    proposals: Sequence,
    num_classes: int,
    thresholds: Sequence[float] = (0.5, 0.7),
    max_boxes: int | None = None,
) -> dict:
    """Recall and best-overlap statistics of per-image ``proposals`` against the ground truth.

    gt_boxes[i]: (G_i, 4); gt_labels[i]: (G_i,) ints 1..num_classes; proposals[i]: (N_i, 4).
    Returns ``{"num_images", "num_gt", "boxes_per_image", "recall": {t: overall},
    "recall_per_class": [ {t: r} per class 1..C (None without ground truth) ],
    "abo": overall mean best overlap, "abo_per_class": [...], "mabo": mean of the per-class
    ABOs over classes with ground truth, "num_gt_per_class": [...]}`` (thresholds as strings).
    """
    if not (len(gt_boxes) == len(gt_labels) == len(proposals)):
        raise EvalError(f"gt_boxes, gt_labels and proposals must have one entry per image "
                        f"(got {len(gt_boxes)}, {len(gt_labels)}, {len(proposals)})")
    if not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise EvalError(f"num_classes must be a positive integer, got {num_classes!r}")
    for t in thresholds:
        if not 0.0 < float(t) <= 1.0:
            raise EvalError(f"IoU threshold {t}: must be in (0, 1]")
    best_all, lab_all, counts = [], [], []
    for i, (g, lab, p) in enumerate(zip(gt_boxes, gt_labels, proposals)):
        g = _check("gt_boxes", g, i)
        p = _check("proposals", p, i)
        lab = np.asarray(lab, np.int64).reshape(-1)
        if len(lab) != len(g):
            raise EvalError(f"gt_labels[{i}]: {len(lab)} labels for {len(g)} boxes")
        if len(lab) and (lab.min() < 1 or lab.max() > num_classes):
            raise EvalError(f"gt_labels[{i}]: labels must be in 1..{num_classes}, got {lab.min()}..{lab.max()}")
        if max_boxes is not None:
            p = p[:max_boxes]
        counts.append(len(p))
        best_all.append(best_overlaps(g, p))
        lab_all.append(lab)
    best = np.concatenate(best_all) if best_all else np.zeros(0)
    labels = np.concatenate(lab_all) if lab_all else np.zeros(0, np.int64)
    recall = {str(t): (float((best >= t).mean()) if len(best) else None) for t in thresholds}
    per_class, abo_pc, n_pc = [], [], []
    for c in range(1, num_classes + 1):
        m = labels == c
        n_pc.append(int(m.sum()))
        if m.any():
            per_class.append({str(t): float((best[m] >= t).mean()) for t in thresholds})
            abo_pc.append(float(best[m].mean()))
        else:
            per_class.append(None)
            abo_pc.append(None)
    valid = [a for a in abo_pc if a is not None]
    return {
        "num_images": len(proposals),
        "num_gt": int(len(best)),
        "boxes_per_image": float(np.mean(counts)) if counts else 0.0,
        "recall": recall,
        "recall_per_class": per_class,
        "num_gt_per_class": n_pc,
        "abo": float(best.mean()) if len(best) else None,
        "abo_per_class": abo_pc,
        "mabo": float(np.mean(valid)) if valid else None,
    }


def recall_curve(gt_boxes: Sequence, proposals: Sequence, counts: Sequence[int], threshold: float = 0.5) -> np.ndarray:
    """Recall at IoU ``threshold`` when only the first n proposals of each image are kept, for
    each n in ``counts`` (ground truth of all images pooled). Returns (len(counts),) floats."""
    counts = np.asarray(counts, np.int64)
    if len(gt_boxes) != len(proposals):
        raise EvalError(f"gt_boxes and proposals must have one entry per image ({len(gt_boxes)} != {len(proposals)})")
    hits = np.zeros(len(counts), np.int64)
    total = 0
    for i, (g, p) in enumerate(zip(gt_boxes, proposals)):
        g = _check("gt_boxes", g, i)
        p = _check("proposals", p, i)
        total += len(g)
        if len(g) == 0 or len(p) == 0:
            continue
        p = p[: int(counts.max())]
        # first proposal index that covers each gt box (len(p) if none)
        ok = box_iou(g, p) >= threshold
        first = np.where(ok.any(axis=1), ok.argmax(axis=1), np.iinfo(np.int64).max)
        hits += (first[None, :] < counts[:, None]).sum(axis=1)
    return hits / total if total else np.full(len(counts), np.nan)
