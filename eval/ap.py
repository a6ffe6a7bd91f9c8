"""Average precision from a ranked list of true/false positives, as the devkits compute it.

``precision_recall(tp, npos)``: ``tp`` (D,) bool in descending-confidence order -> recall and
precision after each detection (VOCevaldet.m: ``rec = cumsum(tp) / npos``,
``prec = cumsum(tp) / (cumsum(tp) + cumsum(fp))``).

``ap_all_point``: VOCap.m (VOC2010+ and the ILSVRC devkit): the area under the precision
envelope, ``mpre(i) = max(mpre(i), mpre(i+1))`` from the right, summed where recall changes.

``ap_11_point``: VOC2007 (VOCevaldet.m before 2010): mean over t = 0:0.1:1 of the highest
precision at recall >= t (0 when none). The thresholds are MATLAB's ``0:0.1:1`` bit for bit
(its colon operator builds the first half as ``k*0.1`` and the second as ``1 - (10-k)*0.1``),
so a recall that lands exactly on a threshold is treated as the devkit treats it.
"""

from __future__ import annotations

import numpy as np


def precision_recall(tp: np.ndarray, npos: int) -> tuple[np.ndarray, np.ndarray]:
    """(recall, precision), each (D,) float64, for ranked hits ``tp`` (D,) bool and ``npos`` positives."""
    tp = np.asarray(tp, dtype=bool)
    ctp = np.cumsum(tp, dtype=np.float64)
    cfp = np.cumsum(~tp, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        rec = ctp / float(npos) if npos > 0 else np.full_like(ctp, np.nan)
        prec = ctp / np.maximum(ctp + cfp, np.finfo(np.float64).eps)
    return rec, prec


def ap_all_point(rec: np.ndarray, prec: np.ndarray) -> float:
    """VOCap.m: area under the monotone precision envelope. (D,) arrays -> float."""
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    i = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
    return float(np.sum((mrec[i] - mrec[i - 1]) * mpre[i]))


def _matlab_colon(a: float, d: float, b: float) -> np.ndarray:
    """MATLAB's ``a:d:b`` (first half a + k*d, second half b - (n-k)*d)."""
    n = int(np.floor((b - a) / d + 1e-10))
    k = np.arange(n + 1, dtype=np.float64)
    out = a + k * d
    second = k > n / 2
    out[second] = b - (n - k[second]) * d
    return out


ELEVEN_POINTS = _matlab_colon(0.0, 0.1, 1.0)


def ap_11_point(rec: np.ndarray, prec: np.ndarray) -> float:
    """VOC2007 11-point AP: mean over t in 0:0.1:1 of max(prec[rec >= t]) (0 if empty)."""
    rec = np.asarray(rec, dtype=np.float64)
    prec = np.asarray(prec, dtype=np.float64)
    if rec.size == 0:
        return 0.0
    # highest precision at recall >= t: a suffix maximum read at the first index with rec >= t
    # (recall is non-decreasing along the ranked list)
    suffix_max = np.maximum.accumulate(prec[::-1])[::-1]
    first = np.searchsorted(rec, ELEVEN_POINTS, side="left")
    p = np.where(first < rec.size, suffix_max[np.minimum(first, rec.size - 1)], 0.0)
    return float(np.sum(p) / 11.0)
