"""Classification accuracy: top-k accuracy and error from class scores, arrays in, numbers out.

``scores`` is ``(N, C)`` (probabilities or logits: only the ranking matters), ``labels`` is
``(N,)`` integer class indices in ``0..C-1``. With fewer than k classes, top-k counts every
image as correct (all classes are in the top k), as ILSVRC's top-5 would with 5 classes.
Ties are broken by class index (a stable sort), so the result is deterministic.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .errors import EvalError


def _check(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    if hasattr(scores, "detach"):
        scores = scores.detach().cpu().numpy()
    if hasattr(labels, "detach"):
        labels = labels.detach().cpu().numpy()
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels)
    if s.ndim != 2:
        raise EvalError(f"scores must be (N, C), got shape {s.shape}")
    if y.ndim != 1 or y.shape[0] != s.shape[0]:
        raise EvalError(f"labels must be (N,) with N = {s.shape[0]}, got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise EvalError(f"labels must be integers, got dtype {y.dtype}")
    if y.size and (y.min() < 0 or y.max() >= s.shape[1]):
        raise EvalError(f"labels must be in 0..{s.shape[1] - 1}, got {y.min()}..{y.max()}")
    if np.isnan(s).any():
        raise EvalError("scores contain NaN")
    return s, y.astype(np.int64)


def topk_correct(scores, labels, k: int) -> np.ndarray:
    """``(N,)`` bool: whether each image's label is among its ``k`` highest scores."""
    s, y = _check(scores, labels)
    if k < 1:
        raise EvalError(f"k must be >= 1, got {k}")
    if k >= s.shape[1]:
        return np.ones(len(y), dtype=bool)
    # rank = number of classes scored higher, plus equal-scored classes of lower index
    own = s[np.arange(len(y)), y][:, None]
    idx = np.arange(s.shape[1])[None, :]
    rank = (s > own).sum(1) + ((s == own) & (idx < y[:, None])).sum(1)
    return rank < k


def topk_accuracy(scores, labels, ks: Sequence[int] = (1, 5)) -> dict[str, float]:
    """``{"top1": ..., "top5": ...}`` accuracies in 0..1 (and ``"n"``, the image count)."""
    s, y = _check(scores, labels)
    out: dict[str, float] = {f"top{k}": float(topk_correct(s, y, k).mean()) if len(y) else float("nan") for k in ks}
    out["n"] = int(len(y))
    return out


def topk_error(scores, labels, ks: Sequence[int] = (1, 5)) -> dict[str, float]:
    """``{"top1_error": ..., "top5_error": ...}`` = 1 - accuracy (the paper's table 3 numbers)."""
    acc = topk_accuracy(scores, labels, ks)
    return {f"top{k}_error": 1.0 - acc[f"top{k}"] for k in ks} | {"n": acc["n"]}


def confusion_matrix(scores, labels) -> np.ndarray:
    """``(C, C)`` int64 counts, row = true class, column = top-1 prediction."""
    s, y = _check(scores, labels)
    c = s.shape[1]
    pred = s.argmax(1)
    return np.bincount(y * c + pred, minlength=c * c).reshape(c, c)


def per_class_accuracy(scores, labels) -> np.ndarray:
    """``(C,)`` top-1 accuracy of each true class (NaN for classes without images)."""
    cm = confusion_matrix(scores, labels)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.diag(cm) / cm.sum(1)


__all__ = ["topk_correct", "topk_accuracy", "topk_error", "confusion_matrix", "per_class_accuracy"]
