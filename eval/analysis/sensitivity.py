"""AP per object size and aspect ratio, best-F1 thresholds, the confusion matrix and the gallery
of false positives and missed objects, see :mod:`eval.analysis`."""

from __future__ import annotations

import math

import numpy as np

from .hoiem import HOIEM_TYPES
from .matching import Scene, _in_range, _mean
from .tide import TIDE_MAIN

SIZE_RANGES = {"small": (0.0, 32.0 ** 2), "medium": (32.0 ** 2, 96.0 ** 2), "large": (96.0 ** 2, 1e5 ** 2)}
ASPECT_BINS = {"extra-tall": (0.0, 0.5), "tall": (0.5, 0.75), "square": (0.75, 4 / 3),
               "wide": (4 / 3, 2.0), "extra-wide": (2.0, math.inf)}
GALLERY_SIZE = 12


def sensitivity_breakdown(sc: Scene, state_t, gt_t, thrs, classes):
    """AP per size range and aspect-ratio bin at the protocol's thresholds."""
    out = {}
    for what, ranges, gv, dv in (("size", SIZE_RANGES, sc.g_area, sc.d_area),
                                 ("aspect", ASPECT_BINS, sc.g_aspect, sc.d_aspect)):
        entry = {"ranges": {k: [lo, (hi if math.isfinite(hi) else None)] for k, (lo, hi) in ranges.items()},
                 "mAP": {}, "npos": {}, "per_class": {name: {} for name in classes}}
        for rname, (lo, hi) in ranges.items():
            g_in = _in_range(gv, lo, hi)
            d_in = _in_range(dv, lo, hi)
            npos = np.bincount(sc.f.g_lab[sc.g_count & g_in], minlength=sc.C + 1)[1:]
            if sc.protocol == "coco":
                per_t = []
                for thr in thrs:
                    st, _ = sc.match(thr, ~g_in, ~d_in)
                    per_t.append(sc.aps(st, npos, curves=True)[1])
                aps = [math.nan if npos[c] == 0 else float(np.stack([q[c] for q in per_t]).ravel().mean())
                       for c in range(sc.C)]
            else:
                st = state_t.copy()
                tp = st == 1
                st[tp & ~np.append(g_in, True)[gt_t]] = -1
                st[(st == 0) & ~d_in] = -1
                aps = sc.aps(st, npos)
            entry["mAP"][rname] = _mean(aps)
            entry["npos"][rname] = int(npos.sum())
            for c, name in enumerate(classes):
                entry["per_class"][name][rname] = aps[c]
        out[what] = entry
    return out


def f1_thresholds(sc: Scene, state, classes):
    """Per class the score threshold (keep detections scoring >= it) that maximises F1 at t."""
    o, bounds = sc.order()
    out, thr = {}, np.full(sc.C + 1, np.inf)
    for c, name in enumerate(classes):
        idx = o[bounds[c]:bounds[c + 1]]
        idx = idx[state[idx] >= 0]
        npos = int(sc.npos[c])
        hits = state[idx] == 1
        if npos == 0 or not hits.any():
            out[name] = {"score": None, "f1": 0.0, "precision": 0.0, "recall": 0.0}
            continue
        tp = np.cumsum(hits)
        k = np.arange(1, len(hits) + 1)
        s = sc.f.d_score[idx]
        last = np.r_[s[1:] != s[:-1], True]          # a cut can only fall between different scores
        p, r = tp / k, tp / npos
        f1 = np.where(last, 2 * p * r / np.maximum(p + r, 1e-300), -1.0)
        i = int(np.argmax(f1))
        thr[c + 1] = s[i]
        out[name] = {"score": float(s[i]), "f1": float(f1[i]), "precision": float(p[i]), "recall": float(r[i])}
    return out, thr


def confusion_matrix(sc: Scene, state, gt, thr_of_class, classes):
    f, C = sc.f, sc.C
    on = (state >= 0) & (f.d_score >= thr_of_class[f.d_lab])
    M = np.zeros((C + 1, C + 1), np.int64)          # rows: object class + background; cols: detected class + missed
    tp = on & (state == 1)
    np.add.at(M, (f.d_lab[tp] - 1, f.d_lab[tp] - 1), 1)
    fp = on & (state == 0)
    hit = fp & (sc.fg_other_gt >= 0)
    np.add.at(M, (f.g_lab[sc.fg_other_gt[hit]] - 1, f.d_lab[hit] - 1), 1)
    bg = fp & ~hit
    np.add.at(M, (np.full(int(bg.sum()), C), f.d_lab[bg] - 1), 1)
    found = np.zeros(sc.G, bool)
    found[gt[tp]] = True
    found[sc.fg_other_gt[hit]] = True
    miss = sc.g_count & ~found
    np.add.at(M, (f.g_lab[miss] - 1, np.full(int(miss.sum()), C)), 1)
    return {"rows": list(classes) + ["background"], "columns": list(classes) + ["missed"],
            "matrix": M.tolist(),
            "score_thresholds": [None if not math.isfinite(x) else float(x) for x in thr_of_class[1:]],
            "note": "detections scoring >= their class's best-F1 threshold; rows: the object they hit "
                    "(background: none at IoU >= t), columns: their class; 'missed': objects none found"}


def gallery_items(sc: Scene, state, gt, hoiem_code, tide_err, classes, image_paths):
    f = sc.f
    used = np.zeros(sc.G, bool)
    used[gt[state == 1]] = True
    best_iou = np.zeros(sc.G)
    live = state[sc.sp_d] >= 0
    np.maximum.at(best_iou, sc.sp_g[live], sc.sp_plain[live])
    out = {}
    o, bounds = sc.order()
    gm = np.flatnonzero(sc.g_count & ~used)
    gm = gm[np.lexsort((-sc.g_area[gm], f.g_lab[gm]))]          # by class, largest first
    gb = np.searchsorted(f.g_lab[gm], np.arange(1, sc.C + 2))
    for c, name in enumerate(classes):
        fps = o[bounds[c]:bounds[c + 1]]
        fps = fps[state[fps] == 0][:GALLERY_SIZE]
        miss = gm[gb[c]:gb[c + 1]][:GALLERY_SIZE]
        out[name] = {
            "false_positives": [{"image": int(f.d_img[i]), "path": image_path(image_paths, f.d_img[i]),
                                 "box": f.d_box[i].tolist(), "score": float(f.d_score[i]),
                                 "hoiem": HOIEM_TYPES[hoiem_code[i]] if hoiem_code[i] >= 0 else None,
                                 "tide": TIDE_MAIN[tide_err[i]] if tide_err[i] >= 0 else None} for i in fps],
            "missed": [{"image": int(f.g_img[j]), "path": image_path(image_paths, f.g_img[j]),
                        "box": f.g_box[j].tolist(), "best_iou": float(best_iou[j])} for j in miss]}
    return out


def image_path(paths, i):
    """The path of image ``i`` (None without paths)."""
    return None if paths is None else str(paths[int(i)])
