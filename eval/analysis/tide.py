"""TIDE (Bolya et al. 2020, the ``tidecv`` package's rules): error types at t and the AP gained by
fixing each, see :mod:`eval.analysis`."""

from __future__ import annotations

import math

import numpy as np

from .matching import BACKGROUND_IOU, Scene, _mean

TIDE_MAIN = ("Cls", "Loc", "Both", "Dupe", "Bkg", "Miss")
TIDE_SPECIAL = ("FalsePos", "FalseNeg")


def tide_breakdown(sc: Scene, state, gt, classes):
    """TIDE's error types at t and the AP gained by fixing each (tidecv.quantify)."""
    f, D = sc.f, sc.D
    fp = state == 0
    used = np.zeros(sc.G, bool)
    used[gt[state == 1]] = True
    # a matched object of the detection's class at IoU >= its threshold (TIDE's Dupe test)
    keep = sc.g_count[sc.sp_g] & used[sc.sp_g] & (sc.sp_iou >= sc.g_thr[sc.sp_g])
    dupe_hit = np.zeros(D, bool)
    dupe_hit[sc.sp_d[keep]] = True
    err = np.full(D, -1, np.int8)                    # index into TIDE_MAIN
    no_obj = fp & ~sc.img_has_obj[f.d_img]
    loc_thr = np.append(sc.g_thr, sc.t)[sc.ms_gt]          # -1 (no object): t
    loc = fp & ~no_obj & (sc.ms >= BACKGROUND_IOU) & (sc.ms <= loc_thr)
    cls = fp & ~no_obj & ~loc & (sc.fg_other_gt >= 0)
    dupe = fp & ~no_obj & ~loc & ~cls & dupe_hit
    bkg = no_obj | (fp & ~loc & ~cls & ~dupe & (sc.max_any <= BACKGROUND_IOU))
    both = fp & ~loc & ~cls & ~dupe & ~bkg
    for i, m in ((0, cls), (1, loc), (2, both), (3, dupe), (4, bkg)):
        err[m] = i
    # tidecv's BestGTMatch: per still-unmatched object, the highest-scoring Cls or Loc error on it
    target = np.full(D, -1, np.int64)
    target[loc] = sc.ms_gt[loc]
    target[cls] = sc.fg_other_gt[cls]
    cand = np.flatnonzero((target >= 0) & ~np.append(used, True)[target])
    usable = np.zeros(sc.G, bool)
    usable[target[cand]] = True
    cand = cand[np.lexsort((sc.rank[cand], target[cand]))]
    best = np.zeros(D, bool)
    best[cand[np.unique(target[cand], return_index=True)[1]]] = True
    missed = sc.g_count & ~used & ~usable
    unfound = sc.g_count & ~used
    C = sc.C
    miss_c = np.bincount(f.g_lab[missed], minlength=C + 1)[1:]
    unfound_c = np.bincount(f.g_lab[unfound], minlength=C + 1)[1:]

    order = sc.order()
    base = sc.aps(state, sc.npos, order)
    fixed = {}
    for name in TIDE_MAIN + TIDE_SPECIAL:
        st, npos, o = state.copy(), sc.npos, order
        if name == "Cls":
            st[cls] = -1
            fix = cls & best
            st[fix] = 1
            lab = f.d_lab.copy()
            lab[fix] = f.g_lab[target[fix]]
            o = sc.order(lab)
        elif name == "Loc":
            st[loc] = -1
            st[loc & best] = 1
        elif name in ("Both", "Dupe", "Bkg"):
            st[err == TIDE_MAIN.index(name)] = -1
        elif name == "Miss":
            npos = sc.npos - miss_c
        elif name == "FalsePos":
            st[fp] = -1
        elif name == "FalseNeg":
            npos = sc.npos - unfound_c
        aps = sc.aps(st, np.maximum(npos, 0), o)
        # tidecv: a class left with no object keeps AP 0 while it has detections, else drops out
        for c in range(C):
            if sc.npos[c] > 0 and npos[c] <= 0:
                s = st[o[0][o[1][c]:o[1][c + 1]]]
                aps[c] = 0.0 if (s >= 0).any() else math.nan
        fixed[name] = aps
    valid = [c for c in range(C) if sc.npos[c] > 0]
    mAP = _mean(base[c] for c in valid)
    counts = {name: int((err == i).sum()) for i, name in enumerate(TIDE_MAIN[:5])}
    counts["Miss"] = int(missed.sum())

    def gain(n):
        after = _mean(fixed[n][c] for c in valid)
        if math.isnan(after) and valid:   # every class dropped out (only misses, no detections): perfect
            after = 1.0
        return max(after - mAP, 0.0) if not math.isnan(mAP) else math.nan

    out = {"iou": sc.t, "background_iou": BACKGROUND_IOU, "mAP": mAP,
           "dAP": {n: gain(n) for n in TIDE_MAIN}, "special": {n: gain(n) for n in TIDE_SPECIAL},
           "counts": counts, "per_class": {}}
    e = err >= 0
    per = np.bincount(err[e].astype(np.int64) * (C + 1) + f.d_lab[e], minlength=5 * (C + 1)).reshape(5, C + 1)
    for c, name in enumerate(classes):
        if sc.npos[c] == 0:
            continue
        # a class the fix leaves without objects or detections has nothing wrong left: AP 1
        d = {n: max((1.0 if math.isnan(fixed[n][c]) else fixed[n][c]) - base[c], 0.0) for n in TIDE_MAIN}
        cnt = {n: int(per[i, c + 1]) for i, n in enumerate(TIDE_MAIN[:5])}
        cnt["Miss"] = int(miss_c[c])
        out["per_class"][name] = {
            "AP": base[c], "dAP": d, "counts": cnt,
            "special": {n: max((1.0 if math.isnan(fixed[n][c]) else fixed[n][c]) - base[c], 0.0)
                        for n in TIDE_SPECIAL},
            "largest": _largest(d)}
    out["largest"] = _largest(out["dAP"])
    return out, err


def _largest(d: dict):
    """The key of the largest value, None when every value is 0."""
    k = max(d, key=lambda n: d[n])
    return k if d[k] > 0 else None
