"""COCO analyze's precision-recall stack (and mmdetection's coco_error_analysis.py), see
:mod:`eval.analysis`."""

from __future__ import annotations

import itertools
import math

import numpy as np

from ..ap import ELEVEN_POINTS
from .matching import BACKGROUND_IOU, COCO_REC_THRS, Scene, _mean

STACK_TYPES = ("C75", "C50", "Loc", "Sim", "Oth", "BG", "FN")


def coco_stack(sc: Scene, states, classes, has_groups):
    """COCO analyze's PR stack per class and over classes."""
    s01 = states[BACKGROUND_IOU][0]
    fp01 = s01 == 0
    variants = {"C75": states[0.75][0], "C50": states[0.5][0], "Loc": s01}
    if has_groups:
        v = s01.copy()
        v[fp01 & (sc.crowd_sim >= BACKGROUND_IOU)] = -1
        variants["Sim"] = v
    v = s01.copy()
    v[fp01 & (sc.crowd_other >= BACKGROUND_IOU)] = -1
    variants["Oth"] = v
    order = sc.order()
    aps, curves = {}, {}
    for k, st in variants.items():
        aps[k], curves[k] = sc.aps(st, sc.npos, order, curves=True)
    # BG: precision 1 wherever Oth reaches (mmdetection: ps[5] = ps[4] > 0); FN: 1 everywhere
    kind = {"voc07": "11", "coco": "coco"}.get(sc.protocol, "all")
    o, bounds = order
    aps["BG"], curves["BG"], aps["FN"], curves["FN"] = [], [], [], []
    for c in range(sc.C):
        if sc.npos[c] == 0:
            for k in ("BG", "FN"):
                aps[k].append(math.nan)
                curves[k].append(None)
            continue
        s = variants["Oth"][o[bounds[c]:bounds[c + 1]]]
        ntp = int((s == 1).sum())
        rmax = ntp / float(sc.npos[c])
        q = ((COCO_REC_THRS <= rmax) & (ntp > 0)).astype(float)
        curves["BG"].append(q)
        if kind == "coco":
            aps["BG"].append(float(q.mean()))
        elif kind == "11":
            aps["BG"].append(float(np.sum((ELEVEN_POINTS <= rmax) & (ntp > 0)) / 11.0))
        else:
            aps["BG"].append(rmax)
        aps["FN"].append(1.0)
        curves["FN"].append(np.ones(len(COCO_REC_THRS)))
    types = [t for t in STACK_TYPES if t in aps]
    per_class = {}
    for c, name in enumerate(classes):
        if sc.npos[c] == 0:
            continue
        per_class[name] = _stack_entry({t: aps[t][c] for t in types}, {t: curves[t][c] for t in types}, types)
    valid = [c for c in range(sc.C) if sc.npos[c] > 0]
    mean_ap = {t: _mean(aps[t][c] for c in valid) for t in types}
    mean_curve = {t: (np.mean([curves[t][c] for c in valid], axis=0) if valid else np.zeros(len(COCO_REC_THRS)))
                  for t in types}
    return {"types": types, "recall": COCO_REC_THRS.tolist(), "per_class": per_class,
            "all": _stack_entry(mean_ap, mean_curve, types)}, aps


def _stack_entry(aps, curves, types):
    gaps = {}
    for prev, t in itertools.pairwise(types[1:]):      # the band each error type adds above C50...
        gaps[t] = aps[t] - aps[prev]
    largest = max(gaps, key=lambda t: gaps[t]) if gaps and not any(math.isnan(v) for v in gaps.values()) else None
    return {"AP": dict(aps), "gain": gaps, "largest": largest,
            "precision": {t: np.round(curves[t], 6).tolist() for t in types}}
