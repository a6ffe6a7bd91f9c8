"""Why a detector fails: error analysis for every protocol of :func:`eval.evaluate` (ilsvrc, voc07,
voc, coco). Arrays in, numbers out (:func:`analyze`); figures, ``analysis.json`` and a text summary
out (:func:`report_figures`, :func:`summary_lines`; ``detector.io.figures.write_report`` writes them).

One matching pass serves every breakdown. The (detection, ground truth) pairs of each image are
formed once and their IoUs computed once, in the protocol's own arithmetic (plain IoU on our
x2-exclusive boxes for the devkit protocols, which is the devkits' "+1" IoU, as
:mod:`eval.detection`; pycocotools' ``[x, y, w, h]`` arithmetic for coco, crowd boxes by
intersection over detection area, as COCOeval). Each detection's overlaps are reduced to the few
numbers the breakdowns need, and the protocol's own matching (VOCevaldet.m, eval_detection.m,
COCOeval's evaluateImg) runs on the same-class pairs at each threshold the analysis needs: the
protocol's ``t`` (``iou``, else 0.5; ilsvrc: min(t, wh/((w+10)(h+10))) per box), 0.75, 0.5, 0.1
(and 0.50:0.95 for coco without ``iou``). AP is the protocol's: VOC all-point (voc, ilsvrc),
11-point (voc07), COCO's 101-point (coco).

Inverted detections (``x2 < x1`` or ``y2 < y1``, kept as :mod:`eval.detection` and
:mod:`eval.coco` keep them) overlap nothing: the same false positives (or, coco with one negative
side, the same ignored detections) as in the protocol's AP.

What the protocol ignores counts nowhere: detections that land on difficult (voc), crowd
(coco: difficult = iscrowd, as :mod:`eval.coco`) or blacklisted (ilsvrc) ground truth, ilsvrc's
blacklisted detections and coco's detections past the 100 best per image and class; such ground
truth is no object to find, and overlaps with it do not classify errors.

The breakdowns (``result`` keys):

- ``hoiem`` (Hoiem, Chodpathumwan, Dai 2012, "Diagnosing error in object detectors"): the ranked
  detections of a class are correct (``Cor``, a true positive at ``t``) or false positives of one
  type, tested in this order: ``Loc`` (an object of its class at IoU >= 0.1: poorly localised,
  0.1 <= IoU < t, or a duplicate of a matched object), ``Sim`` (IoU >= 0.1 with an object of
  another class of its group; only with groups), ``Oth`` (IoU >= 0.1 with any other object),
  ``BG``. Shares among the top N detections for N = 0.25..8 times the number of objects
  (``factors``); over all classes the counts of each class's top ``k * npos`` are pooled.
- ``coco_stack`` (COCO analyze, and mmdetection's coco_error_analysis.py): precision-recall curves
  ``C75``, ``C50`` (the protocol's AP at 0.75 and 0.5), ``Loc`` (at IoU 0.1), ``Sim`` (``Loc``
  after false positives on objects of a similar class are removed: objects of the other classes
  of the group become crowd regions of this class, reached at intersection / detection area >=
  0.1), ``Oth`` (the same with every other class), ``BG`` (precision 1 up to ``Oth``'s recall),
  ``FN`` (1). Areas under each (``AP``); ``all`` = the mean over classes with objects.
- ``tide`` (Bolya et al. 2020, the ``tidecv`` package's rules): each false positive at ``t`` is
  tested in order for ``Bkg`` (no object in its image), ``Loc`` (its best same-class object at
  0.1 <= IoU <= t), ``Cls`` (an other-class object at IoU >= t), ``Dupe`` (a matched object of its
  class at IoU >= t), ``Bkg`` (IoU <= 0.1 with every object), else ``Both``; objects neither
  matched nor the target of an unmatched-object Cls/Loc error are ``Miss``. ``dAP[X]`` = mAP after
  fixing every error of type X alone minus mAP (not below 0): Cls/Loc errors become true
  positives (only the highest-scoring one per object; Cls in the object's class), the others are
  removed, a fixed Miss removes the object. ``special``: ``FalsePos`` (every false positive
  removed), ``FalseNeg`` (every missed object removed). Fractions of 1, like mAP.
- ``sensitivity``: AP per object-size range (COCO's small / medium / large on ground-truth area,
  ``areas`` when given, else the box area) and per aspect-ratio bin (w / h), applied as COCOeval
  applies area ranges: objects outside are ignored (not counted, detections on them ignored),
  unmatched detections outside are ignored; bounds inclusive. coco re-runs COCOeval's matching per
  range (so the numbers are COCOeval's ``areaRng`` results), the devkit protocols apply the range
  to their one matching. Plain AP at the protocol's thresholds (coco without ``iou``: 0.50:0.95).
- ``confusion``: detections at or above their class's best-F1 score, by the class of the object
  they hit (a true positive; else the best other-class object at IoU >= t; else ``background``),
  and the objects none of them found (``missed``). ``f1``: per class the score threshold that
  maximises F1 at ``t``. ``gallery``: per class the highest-scoring false positives and the
  missed objects (largest first), with image paths when given.

Where we knowingly differ from the tools we follow: ``coco_stack["all"]`` is the mean over classes
with objects (mmdetection also averages classes without, as zeros) and only the all-area stack is
made; against tidecv, ties in score keep the protocol's ranking (tidecv pushes the errors before
the true positives when it fixes, which reorders unrelated ties), coco keeps COCOeval's 100 best
per image and class (tidecv: 100 per image), detections the protocol ignores are no errors, and
coco's recall grid is COCOeval's ``linspace`` (tidecv: k / 100). On the committed BCCD sample the
largest difference is 0.006 AP points (tests/eval/analysis/test_tide.py).
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import EvalError
from .hoiem import HOIEM_TYPES, hoiem_breakdown
from .json_safe import json_safe
from .matching import BACKGROUND_IOU, COCO_IOU_THRS, Scene, _mean
from .report import lowest_ap_classes, report_figures, safe_name, summary_lines
from .sensitivity import (
    ASPECT_BINS,
    SIZE_RANGES,
    confusion_matrix,
    f1_thresholds,
    gallery_items,
    sensitivity_breakdown,
)
from .stack import STACK_TYPES, coco_stack
from .tide import TIDE_MAIN, TIDE_SPECIAL, tide_breakdown

PROTOCOLS = ("ilsvrc", "voc07", "voc", "coco")   # eval.PROTOCOLS (eval/__init__ imports this package)

COCO_SUPERCATEGORIES = {
    "person": "person",
    **dict.fromkeys(["bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat"], "vehicle"),
    **dict.fromkeys(["traffic light", "fire hydrant", "stop sign", "parking meter", "bench"], "outdoor"),
    **dict.fromkeys(["bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe"], "animal"),
    **dict.fromkeys(["backpack", "umbrella", "handbag", "tie", "suitcase"], "accessory"),
    **dict.fromkeys(["frisbee", "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove",
                     "skateboard", "surfboard", "tennis racket"], "sports"),
    **dict.fromkeys(["bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl"], "kitchen"),
    **dict.fromkeys(["banana", "apple", "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut",
                     "cake"], "food"),
    **dict.fromkeys(["chair", "couch", "potted plant", "bed", "dining table", "toilet"], "furniture"),
    **dict.fromkeys(["tv", "laptop", "mouse", "remote", "keyboard", "cell phone"], "electronic"),
    **dict.fromkeys(["microwave", "oven", "toaster", "sink", "refrigerator"], "appliance"),
    **dict.fromkeys(["book", "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush"], "indoor"),
}
"""The 80 COCO class names -> their supercategory (instances_val2017.json's ``categories``)."""


def analyze(protocol: str, gts: list[dict], dets: list[dict], classes: list[str], iou: float | None = None,
            class_groups: dict[str, str] | None = None, image_paths: list[str] | None = None) -> dict:
    """Error analysis of ``dets`` against ``gts`` by ``protocol`` (inputs as :func:`eval.evaluate`,
    ``classes`` the C names of labels 1..C). ``class_groups``: class name -> group name for
    "similar" classes (default: :data:`COCO_SUPERCATEGORIES` when every class is a COCO class,
    else none, and then there is no Sim bin). ``image_paths`` (one per image) go into the gallery.

    Returns a JSON-safe dict (nan -> None): ``protocol``, ``iou`` (t), ``classes``, ``npos``,
    ``AP`` / ``mAP`` (the protocol's, as :func:`eval.evaluate` with the same ``iou``), ``groups``,
    ``hoiem``, ``coco_stack``, ``tide`` (``tide["dAP"]``: Cls, Loc, Both, Dupe, Bkg, Miss over all
    classes, fractions of 1), ``sensitivity``, ``f1``, ``confusion``, ``gallery``. See the module
    docstring for each."""
    if protocol not in PROTOCOLS:
        raise EvalError(f"protocol {protocol!r}: unknown (use one of {', '.join(PROTOCOLS)})")
    classes = [str(c) for c in classes]
    if not classes:
        raise EvalError("classes: at least one class name is needed")
    if len(set(classes)) != len(classes):
        raise EvalError("classes: names must be unique")
    if iou is not None and not (0.0 < float(iou) <= 1.0):
        raise EvalError(f"IoU threshold {iou}: must be in (0, 1]")
    if image_paths is not None and len(image_paths) != len(gts):
        raise EvalError(f"{len(image_paths)} image paths for {len(gts)} images")
    C = len(classes)
    t = 0.5 if iou is None else float(iou)
    groups = _groups(classes, class_groups)
    group_of = None
    if groups is not None:
        ids = {g: i for i, g in enumerate(sorted(set(groups.values())))}
        group_of = np.array([-1] + [ids[groups[c]] for c in classes], np.int64)
    sc = Scene(protocol, gts, dets, C, t, group_of)

    # the protocol's thresholds: its own AP (coco without iou: 0.50:0.95), t, the stack's
    own = [float(x) for x in COCO_IOU_THRS] if (protocol == "coco" and iou is None) else [t]
    states = {}
    for thr in dict.fromkeys(own + [t, 0.75, 0.5, BACKGROUND_IOU]):
        states[thr] = sc.match(thr)
    if protocol == "coco":
        per_t = [sc.aps(states[thr][0], sc.npos, curves=True)[1] for thr in own]
        AP = [math.nan if sc.npos[c] == 0 else float(np.stack([q[c] for q in per_t]).ravel().mean())
              for c in range(C)]
    else:
        AP = sc.aps(states[t][0], sc.npos)
    state_t, gt_t = states[t]

    has_groups = groups is not None
    hoiem, hoiem_code = hoiem_breakdown(sc, state_t, classes, has_groups)
    stack, _ = coco_stack(sc, states, classes, has_groups)
    tide, tide_err = tide_breakdown(sc, state_t, gt_t, classes)
    sens = sensitivity_breakdown(sc, state_t, gt_t, own, classes)
    f1, thr_of_class = f1_thresholds(sc, state_t, classes)
    result = {
        "protocol": protocol, "iou": t, "iou_protocol": ("0.50:0.95" if (protocol == "coco" and iou is None) else t),
        "classes": classes, "num_images": sc.n_img, "num_detections": int((~sc.d_drop).sum()),
        "npos": sc.npos.tolist(), "AP": AP, "mAP": _mean(AP), "groups": groups,
        "hoiem": hoiem, "coco_stack": stack, "tide": tide, "sensitivity": sens, "f1": f1,
        "confusion": confusion_matrix(sc, state_t, gt_t, thr_of_class, classes),
        "gallery": gallery_items(sc, state_t, gt_t, hoiem_code, tide_err, classes, image_paths),
    }
    return json_safe(result)


def _groups(classes, class_groups):
    if class_groups is None:
        if all(c in COCO_SUPERCATEGORIES for c in classes):
            class_groups = COCO_SUPERCATEGORIES
        else:
            return None
    if not isinstance(class_groups, dict):
        raise EvalError("class_groups: expected a mapping of class name -> group name")
    # a class the mapping does not name is a group of its own
    return {c: str(class_groups[c]) if c in class_groups else f"<{c}>" for c in classes}


__all__ = [
    "ASPECT_BINS",
    "COCO_SUPERCATEGORIES",
    "HOIEM_TYPES",
    "PROTOCOLS",
    "SIZE_RANGES",
    "STACK_TYPES",
    "TIDE_MAIN",
    "TIDE_SPECIAL",
    "EvalError",
    "analyze",
    "lowest_ap_classes",
    "report_figures",
    "safe_name",
    "summary_lines",
]
