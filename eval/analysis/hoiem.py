"""Hoiem, Chodpathumwan, Dai 2012 ("Diagnosing error in object detectors"): the share of each
false-positive type among each class's top-ranked detections (see :mod:`eval.analysis`)."""

from __future__ import annotations

import numpy as np

from .matching import BACKGROUND_IOU, Scene

HOIEM_FACTORS = 2.0 ** np.linspace(-2, 3, 21)       # N / npos from 0.25 to 8, as Hoiem's plots
HOIEM_TYPES = ("Cor", "Loc", "Sim", "Oth", "BG")


def hoiem_breakdown(sc: Scene, state, classes, has_groups):
    """Shares of Cor / Loc / Sim / Oth / BG among each class's top-ranked counted detections."""
    code = np.full(sc.D, -1, np.int8)
    fp = state == 0
    code[state == 1] = 0
    loc = fp & (sc.ms >= BACKGROUND_IOU)
    sim = fp & ~loc & (sc.max_sim >= BACKGROUND_IOU) if has_groups else np.zeros(sc.D, bool)
    oth = fp & ~loc & ~sim & (sc.max_other >= BACKGROUND_IOU)
    code[loc], code[sim], code[oth] = 1, 2, 3
    code[fp & ~loc & ~sim & ~oth] = 4
    types = [t for t in HOIEM_TYPES if has_groups or t != "Sim"]
    o, bounds = sc.order()
    per_class, pooled, pooled_n = {}, np.zeros((len(HOIEM_FACTORS), 5)), np.zeros(len(HOIEM_FACTORS))
    for c, name in enumerate(classes):
        npos = int(sc.npos[c])
        cc = code[o[bounds[c]:bounds[c + 1]]]
        cc = cc[cc >= 0]
        if npos == 0:
            continue
        cum = np.zeros((len(cc) + 1, 5))
        if len(cc):
            cum[1:] = np.cumsum(np.eye(5)[cc], axis=0)
        N = np.maximum(np.rint(HOIEM_FACTORS * npos).astype(np.int64), 1)
        n = np.minimum(N, len(cc))
        counts = cum[n]                                   # (F, 5)
        pooled += counts
        pooled_n += n
        per_class[name] = _hoiem_entry(counts, n, N, types, npos, len(cc))
    total = int(sc.npos.sum())
    out = {"factors": HOIEM_FACTORS.tolist(), "types": types, "per_class": per_class,
           "all": _hoiem_entry(pooled, pooled_n, np.rint(HOIEM_FACTORS * total), types, total, None)}
    return out, code


def _hoiem_entry(counts, n, N, types, npos, ndet):
    idx = [HOIEM_TYPES.index(t) for t in types]
    with np.errstate(divide="ignore", invalid="ignore"):
        shares = np.where(n[:, None] > 0, counts / np.maximum(n[:, None], 1), 0.0)
    k1 = int(np.argmin(np.abs(HOIEM_FACTORS - 1.0)))     # N = npos: Hoiem's pie charts
    fp_counts = {t: float(counts[k1, i]) for t, i in zip(types, idx) if t != "Cor"}
    nfp = sum(fp_counts.values())
    largest = max(fp_counts, key=lambda t: fp_counts[t]) if nfp > 0 else None
    return {"npos": int(npos), "num_detections": ndet, "N": [int(x) for x in N],
            "counts": {t: counts[:, i].astype(int).tolist() for t, i in zip(types, idx)},
            "shares": {t: shares[:, i].tolist() for t, i in zip(types, idx)},
            "fp_shares_at_npos": {t: (v / nfp if nfp else 0.0) for t, v in fp_counts.items()},
            "largest": largest}
