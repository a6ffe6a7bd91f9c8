"""Metrics only, arrays in and numbers out: ILSVRC DET, PASCAL VOC, COCO AP, proposal recall,
classification accuracy. Imports nothing of ours.

Detection AP: :func:`evaluate` (protocols ``ilsvrc``, ``voc07``, ``voc``, ``coco``; see
:mod:`eval.detection`, :mod:`eval.coco`, :mod:`eval.ap`), precision-recall figures in
:mod:`eval.plots` (Figures: ``detector.io.figures`` writes them).
"""

from __future__ import annotations

import math

import numpy as np

from .coco import evaluate_coco
from .detection import evaluate_voc_style, flatten
from .errors import EvalError

PROTOCOLS = ("ilsvrc", "voc07", "voc", "coco")


def evaluate(protocol: str, gts: list[dict], dets: list[dict], num_classes: int, iou: float | None = None,
             return_curves: bool = False) -> dict:
    """Detection AP of ``dets`` against ``gts`` by ``protocol``.

    ``gts[i]``: ``{"boxes": (N, 4) float xyxy 0-based continuous, "labels": (N,) int 1..C,
    "difficult": (N,) bool (optional), "blacklist": set of labels (optional, ilsvrc)}``.
    ``dets[i]``: ``{"boxes": (M, 4), "scores": (M,), "labels": (M,)}``, aligned with ``gts``.
    ``iou`` replaces 0.5 in every protocol (``ilsvrc``: min(iou, wh/((w+10)(h+10))) per box;
    ``coco``: the one IoU threshold instead of 0.50:0.95).

    Returns ``{"protocol", "mAP", "median_AP", "AP": [C floats, nan for classes with no ground
    truth], "npos": [C ints], "iou"}`` plus, for ilsvrc/voc07/voc, ``num_detections`` and
    ``num_tp`` per class, for coco ``stats`` (its 12 numbers by name) and ``summary`` (its
    printed table). ``mAP`` and ``median_AP`` are over the classes with ground truth (coco:
    ``mAP`` = COCOeval's first number). ``return_curves=True`` adds ``curves``: per class
    (recall, precision) arrays (numpy, not JSON).
    """
    if protocol not in PROTOCOLS:
        raise EvalError(f"protocol {protocol!r}: unknown (use one of {', '.join(PROTOCOLS)})")
    if not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise EvalError(f"num_classes must be a positive integer, got {num_classes!r}")
    if iou is not None and not (0.0 < float(iou) <= 1.0):
        raise EvalError(f"IoU threshold {iou}: must be in (0, 1]")
    if protocol == "coco":

        f = flatten(gts, dets, int(num_classes))   # same validation as the other protocols
        out = evaluate_coco(gts, dets, int(num_classes), iou)
        out["npos"] = np.bincount(f.g_lab[~f.g_diff], minlength=num_classes + 1)[1:].tolist()
        mAP = out["stats"]["AP"]
    else:

        out = evaluate_voc_style(gts, dets, int(num_classes), protocol, iou)
        mAP = None
    valid = [a for a in out["AP"] if not math.isnan(a)]
    if mAP is None:
        mAP = float(np.mean(valid)) if valid else float("nan")
    result = {"protocol": protocol, "mAP": float(mAP),
              "median_AP": float(np.median(valid)) if valid else float("nan")}
    curves = out.pop("curves")
    result.update(out)
    if return_curves:
        result["curves"] = curves
    return result


__all__ = ["evaluate", "EvalError", "PROTOCOLS"]

# error analysis (Hoiem, COCO analyze, TIDE; see eval.analysis), figures in eval.analysis_plots
# (written by detector.io.figures.write_report)
from .analysis import COCO_SUPERCATEGORIES, analyze, summary_lines  # noqa: E402

__all__ += ["analyze", "summary_lines", "COCO_SUPERCATEGORIES"]
