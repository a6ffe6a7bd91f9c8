"""Detection AP by the official protocols: ILSVRC DET (eval_detection.m), PASCAL VOC (VOCevaldet.m).

Inputs are per-image arrays (see :func:`eval.evaluate`); boxes are float (N, 4) ``x1, y1, x2, y2``
in continuous 0-based pixels with x2 exclusive, so ``w = x2 - x1`` is the devkits' inclusive
width ``xmax - xmin + 1`` and the plain IoU below equals the devkits' "+1" IoU.

Both protocols rank the detections of a class by descending confidence (stable: ties keep the
input order, as MATLAB's ``sort``), decide true/false positive per detection, and compute AP
(:mod:`eval.ap`). Matching is vectorised: every detection is paired with the ground truth of its
(image, class) once, IoUs are computed for all pairs in one go, and

- ``voc``: a detection's best-IoU ground truth does not depend on the others, so each detection
  takes its argmax; ``iou >= thr`` on a non-difficult box not taken by a higher-ranked detection
  is a TP, on a difficult box the detection is ignored (neither TP nor FP), else FP.
- ``ilsvrc``: a detection takes the best-IoU ground truth among those NOT yet matched whose own
  threshold ``min(thr, w*h / ((w+10)*(h+10)))`` it reaches, so the order matters. We run it in
  rounds: round r handles the r-th detection of every (image, class) group at once; the number
  of rounds is the largest group size, not the number of boxes. Blacklisted (image, class)
  pairs: their detections are dropped and their boxes do not count as positives. The ILSVRC
  devkit has no difficult flag, so ``difficult`` is not used by this protocol.

Inverted detection boxes (``x2 < x1`` or ``y2 < y1``: the devkits' width ``xmax - xmin + 1`` or
height at most 0) are kept, as both devkits keep them: the intersection width with any box is at
most the detection's own width (``min(x2, gx2) - max(x1, gx1) <= x2 - x1``), so the devkits'
``if iw>0 & ih>0`` never computes an overlap (nor ``ua``) for them; such a detection matches
nothing and is a false positive at its confidence. Inverted ground-truth boxes are an error.

One deliberate difference from VOCevaldet.m: when every detection of a class lands on
difficult boxes, the devkit's 11-point AP is NaN (its precision is 0/0); ours is 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .ap import ap_11_point, ap_all_point, precision_recall
from .errors import EvalError


@dataclass
class Flat:
    """All images' boxes in flat arrays (image index per row)."""

    g_img: np.ndarray      # (G,) int64
    g_box: np.ndarray      # (G, 4) float64
    g_lab: np.ndarray      # (G,) int64 1..C
    g_diff: np.ndarray     # (G,) bool
    g_black: np.ndarray    # (G,) bool: (image, class) blacklisted
    d_img: np.ndarray      # (D,) int64
    d_box: np.ndarray      # (D, 4) float64
    d_score: np.ndarray    # (D,) float64
    d_lab: np.ndarray      # (D,) int64
    d_black: np.ndarray    # (D,) bool


def _cat(parts, dtype, shape):
    return np.concatenate(parts).astype(dtype, copy=False) if parts else np.zeros(shape, dtype)


def _arr(x, dtype, shape, what):
    a = np.asarray(x if x is not None else np.zeros(shape), dtype=dtype)
    try:
        return a.reshape(shape)
    except ValueError:
        raise EvalError(f"{what}: expected shape {tuple('N' if s == -1 else s for s in shape)}, got {a.shape}") from None


def flatten(gts: list[dict], dets: list[dict], num_classes: int) -> Flat:
    """Validate and concatenate per-image dicts (EvalError names the image index and row)."""
    if len(gts) != len(dets):
        raise EvalError(f"{len(gts)} ground-truth images but {len(dets)} detection entries (they must align)")
    gi, gb, gl, gd, gk, di, db, ds, dl, dk = ([] for _ in range(10))
    for i, (g, d) in enumerate(zip(gts, dets)):
        boxes = _arr(g.get("boxes"), np.float64, (-1, 4), f"ground truth of image {i}: boxes")
        n = len(boxes)
        labels = _arr(g.get("labels"), np.int64, (-1,), f"ground truth of image {i}: labels")
        diff = g.get("difficult")
        diff = np.zeros(n, bool) if diff is None else _arr(diff, bool, (-1,), f"ground truth of image {i}: difficult")
        if len(labels) != n or len(diff) != n:
            raise EvalError(f"ground truth of image {i}: {n} boxes but {len(labels)} labels / {len(diff)} difficult flags")
        black = g.get("blacklist") or ()
        black_arr = np.array(sorted(int(c) for c in black), dtype=np.int64)
        gi.append(np.full(n, i, np.int64)); gb.append(boxes); gl.append(labels); gd.append(diff)
        gk.append(np.isin(labels, black_arr))
        dboxes = _arr(d.get("boxes"), np.float64, (-1, 4), f"detections of image {i}: boxes")
        m = len(dboxes)
        scores = _arr(d.get("scores"), np.float64, (-1,), f"detections of image {i}: scores")
        dlab = _arr(d.get("labels"), np.int64, (-1,), f"detections of image {i}: labels")
        if len(scores) != m or len(dlab) != m:
            raise EvalError(f"detections of image {i}: {m} boxes but {len(scores)} scores / {len(dlab)} labels")
        di.append(np.full(m, i, np.int64)); db.append(dboxes); ds.append(scores); dl.append(dlab)
        dk.append(np.isin(dlab, black_arr))
    f = Flat(_cat(gi, np.int64, (0,)), _cat(gb, np.float64, (0, 4)), _cat(gl, np.int64, (0,)),
             _cat(gd, bool, (0,)), _cat(gk, bool, (0,)),
             _cat(di, np.int64, (0,)), _cat(db, np.float64, (0, 4)), _cat(ds, np.float64, (0,)),
             _cat(dl, np.int64, (0,)), _cat(dk, bool, (0,)))
    _check_boxes(f.g_box, f.g_img, "ground truth")
    _check_boxes(f.d_box, f.d_img, "detections", inverted_ok=True)
    for lab, img, what in ((f.g_lab, f.g_img, "ground truth"), (f.d_lab, f.d_img, "detections")):
        bad = np.flatnonzero((lab < 1) | (lab > num_classes))
        if bad.size:
            raise EvalError(f"{what} of image {img[bad[0]]}: label {lab[bad[0]]} is not a class (1..{num_classes})")
    bad = np.flatnonzero(~np.isfinite(f.d_score))
    if bad.size:
        raise EvalError(f"detections of image {f.d_img[bad[0]]}: score {f.d_score[bad[0]]} is not a finite number")
    return f


def _check_boxes(b: np.ndarray, img: np.ndarray, what: str, inverted_ok: bool = False) -> None:
    """Boxes must be finite; inverted ones (negative width or height) are an error unless
    ``inverted_ok`` (detections: they match nothing, see the module's docstring)."""
    bad = np.flatnonzero(~np.isfinite(b).all(axis=1))
    if bad.size:
        raise EvalError(f"{what} of image {img[bad[0]]}: box {b[bad[0]].tolist()} is not finite")
    if inverted_ok:
        return
    bad = np.flatnonzero((b[:, 2] < b[:, 0]) | (b[:, 3] < b[:, 1]))
    if bad.size:
        raise EvalError(f"{what} of image {img[bad[0]]}: box {b[bad[0]].tolist()} has a negative size")


def _pairs(f: Flat, keep_d: np.ndarray, keep_g: np.ndarray, num_classes: int):
    """Every (detection, gt) pair of the same image and class, ordered by detection then gt index.

    Returns (pd, pg, iou) with IoU = -1 where the boxes do not overlap (the devkits only score
    overlaps with positive width and height; an inverted detection overlaps nothing).
    """
    C1 = num_classes + 1
    gidx = np.flatnonzero(keep_g)
    gkey = f.g_img[gidx] * C1 + f.g_lab[gidx]
    o = np.argsort(gkey, kind="stable")
    gidx, gkey = gidx[o], gkey[o]
    didx = np.flatnonzero(keep_d)
    dkey = f.d_img[didx] * C1 + f.d_lab[didx]
    start = np.searchsorted(gkey, dkey, "left")
    cnt = np.searchsorted(gkey, dkey, "right") - start
    P = int(cnt.sum())
    pd = np.repeat(didx, cnt)
    offs = np.arange(P) - np.repeat(np.cumsum(cnt) - cnt, cnt)
    pg = gidx[np.repeat(start, cnt) + offs]
    a, b = f.d_box[pd], f.g_box[pg]
    iw = np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0])
    ih = np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1])
    inter = iw * ih
    union = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1]) + (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where((iw > 0) & (ih > 0), inter / union, -1.0)
    return pd, pg, iou


def segment_first_argmax(seg: np.ndarray, values: np.ndarray, n: int):
    """Per segment id in 0..n-1 (``seg`` sorted ascending): (max value, index of its first occurrence).

    Empty segments get (-inf, -1). First occurrence = lowest position, i.e. the devkits' strict
    ``ov > ovmax`` scan keeps the earliest ground truth among equals.
    """
    best = np.full(n, -np.inf)
    arg = np.full(n, -1, np.int64)
    if seg.size == 0:
        return best, arg
    starts = np.flatnonzero(np.r_[True, seg[1:] != seg[:-1]])
    best[seg[starts]] = np.maximum.reduceat(values, starts)
    hit = values == best[seg]
    pos = np.flatnonzero(hit)
    first = np.unique(seg[pos], return_index=True)
    arg[first[0]] = pos[first[1]]
    return best, arg


def ranks(scores: np.ndarray) -> np.ndarray:
    """Rank of each detection in descending score, ties in input order (MATLAB's stable sort)."""
    o = np.argsort(-scores, kind="stable")
    r = np.empty(len(scores), np.int64)
    r[o] = np.arange(len(scores))
    return r


def group_positions(f: Flat, rank: np.ndarray, live: np.ndarray, num_classes: int) -> np.ndarray:
    """Position of each ``live`` detection among the live ones of its (image, class), by ``rank``
    (-1 for the others): the rounds of the order-dependent matchings."""
    C1 = num_classes + 1
    didx = np.flatnonzero(live)
    key = f.d_img[didx] * C1 + f.d_lab[didx]
    o = np.lexsort((rank[didx], key))
    sk = key[o]
    starts = np.r_[True, sk[1:] != sk[:-1]] if len(sk) else np.zeros(0, bool)
    gstart = np.maximum.accumulate(np.where(starts, np.arange(len(sk)), 0)) if len(sk) else np.zeros(0, np.int64)
    pos = np.full(len(f.d_box), -1, np.int64)
    pos[didx[o]] = np.arange(len(sk)) - gstart
    return pos


def rounds(pos_of_pair: np.ndarray):
    """Pairs bucketed by the position of their detection inside its (image, class): returns (the
    stable order of the pairs by round, the round bounds in that order); round r holds the r-th
    detection of every group (the order-dependent matchings, vectorised per round)."""
    po = np.argsort(pos_of_pair, kind="stable")
    bounds = np.searchsorted(pos_of_pair[po], np.arange(pos_of_pair.max() + 2 if pos_of_pair.size else 1))
    return po, bounds


def match_pairs(protocol: str, pd: np.ndarray, pg: np.ndarray, iou: np.ndarray, *, num_det: int, num_gt: int,
                rank: np.ndarray, thr: float | None = None, g_diff: np.ndarray | None = None,
                ok: np.ndarray | None = None, pos: np.ndarray | None = None):
    """THE matching kernel of the devkit protocols, on same-image same-class (detection, ground
    truth) pairs ``pd``, ``pg`` (ordered by detection, then ground truth) with their ``iou``; used
    by :func:`match_voc`, :func:`match_ilsvrc` and :mod:`eval.analysis`.

    - ``"voc"`` (VOCevaldet.m): each detection's best-IoU object (first among equals); at
      ``iou >= thr`` a difficult object (``g_diff``) makes the detection ignored, else the
      highest-``rank``ed such detection of an object takes it, the others are duplicates.
    - ``"ilsvrc"`` (eval_detection.m): in rounds of ``pos`` (see :func:`group_positions`), each
      detection takes the best-IoU object not yet matched among its pairs that qualify (``ok``:
      the pair reaches the object's own threshold).

    Returns (state (num_det,) int8: 1 true positive, 0 false positive, -1 ignored; gt (num_det,)
    int64: the object a true positive took, else -1)."""
    state = np.zeros(num_det, np.int8)
    gt = np.full(num_det, -1, np.int64)
    if protocol == "voc":
        ovmax, arg = segment_first_argmax(pd, iou, num_det)
        jmax = np.full(num_det, -1, np.int64)
        jmax[arg >= 0] = pg[arg[arg >= 0]]
        hit = (arg >= 0) & (ovmax >= thr)
        ignored = np.zeros(num_det, bool)
        ignored[hit] = g_diff[jmax[hit]]
        cand = np.flatnonzero(hit & ~ignored)
        # the highest-ranked candidate of each gt box takes it; the rest are duplicates (FP)
        cand = cand[np.lexsort((rank[cand], jmax[cand]))]
        firsts = cand[np.unique(jmax[cand], return_index=True)[1]]
        state[firsts] = 1
        gt[firsts] = jmax[firsts]
        state[ignored] = -1
        return state, gt
    if protocol != "ilsvrc":
        raise ValueError(f"match_pairs: protocol {protocol!r} (voc or ilsvrc)")
    po, bounds = rounds(pos[pd])
    pd, pg, iou, ok = pd[po], pg[po], iou[po], ok[po]
    matched = np.zeros(num_gt, bool)
    for r in range(len(bounds) - 1):  # rounds, not boxes: each round is vectorised over groups
        s, e = bounds[r], bounds[r + 1]
        if s == e:
            continue
        rpd, rpg = pd[s:e], pg[s:e]
        val = np.where(ok[s:e] & ~matched[rpg], iou[s:e], -np.inf)
        uniq, seg = np.unique(rpd, return_inverse=True)
        best, arg = segment_first_argmax(seg, val, len(uniq))
        got = np.isfinite(best)
        matched[rpg[arg[got]]] = True
        state[uniq[got]] = 1
        gt[uniq[got]] = rpg[arg[got]]
    return state, gt


def match_voc(f: Flat, num_classes: int, iou_thr: float):
    """VOCevaldet.m: returns (tp (D,) bool, ignored (D,) bool)."""
    D = len(f.d_box)
    pd, pg, iou = _pairs(f, np.ones(D, bool), np.ones(len(f.g_box), bool), num_classes)
    state, _ = match_pairs("voc", pd, pg, iou, num_det=D, num_gt=len(f.g_box), rank=ranks(f.d_score),
                           thr=iou_thr, g_diff=f.g_diff)
    return state == 1, state == -1


def ilsvrc_thresholds(boxes: np.ndarray, iou_thr: float) -> np.ndarray:
    """Per gt box threshold min(iou_thr, w*h / ((w+10)*(h+10))), w = x2 - x1 (inclusive width)."""
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    return np.minimum(iou_thr, (w * h) / ((w + 10.0) * (h + 10.0)))


def match_ilsvrc(f: Flat, num_classes: int, iou_thr: float):
    """eval_detection.m: returns (tp (D,) bool, ignored (D,) bool = blacklisted)."""
    D = len(f.d_box)
    keep_d = ~f.d_black
    pd, pg, iou = _pairs(f, keep_d, ~f.g_black, num_classes)
    rank = ranks(f.d_score)
    ok = iou >= ilsvrc_thresholds(f.g_box, iou_thr)[pg]
    state, _ = match_pairs("ilsvrc", pd, pg, iou, num_det=D, num_gt=len(f.g_box), rank=rank, ok=ok,
                           pos=group_positions(f, rank, keep_d, num_classes))
    return state == 1, f.d_black.copy()


def average_precision(f: Flat, tp: np.ndarray, ignored: np.ndarray, num_classes: int, eleven_point: bool,
                      count_gt: np.ndarray):
    """Per class (AP, npos, recall curve, precision curve); AP nan for classes without positives."""
    npos = np.bincount(f.g_lab[count_gt], minlength=num_classes + 1)[1:]
    keep = np.flatnonzero(~ignored)
    o = keep[np.lexsort((ranks(f.d_score)[keep], f.d_lab[keep]))]
    labs = f.d_lab[o]
    bounds = np.searchsorted(labs, np.arange(1, num_classes + 2))
    aps, curves = [], []
    for c in range(num_classes):
        hits = tp[o[bounds[c]:bounds[c + 1]]]
        rec, prec = precision_recall(hits, int(npos[c]))
        if npos[c] == 0:
            aps.append(float("nan"))
        else:
            aps.append(ap_11_point(rec, prec) if eleven_point else ap_all_point(rec, prec))
        curves.append((rec, prec))
    return aps, npos, curves


# Matching is independent per image, so the images are matched in chunks that bound the number
# of (detection, gt) pairs held at once (crowded scenes: 100 detections x 50 boxes per image).
PAIR_CHUNK = 4_000_000


def _image_chunks(f: Flat, num_classes: int):
    """Contiguous image ranges -> (det slice, gt slice) with about PAIR_CHUNK pairs each."""
    n_img = int(max(f.d_img.max(initial=-1), f.g_img.max(initial=-1))) + 1
    if n_img == 0:
        return [(slice(0, 0), slice(0, 0))]
    C1 = num_classes + 1
    nd = np.bincount(f.d_img * C1 + f.d_lab, minlength=n_img * C1)
    ng = np.bincount(f.g_img * C1 + f.g_lab, minlength=n_img * C1)
    per_img = (nd * ng).reshape(n_img, C1).sum(axis=1)
    chunk_of = np.cumsum(per_img) // max(PAIR_CHUNK, 1)
    cuts = np.flatnonzero(np.r_[True, chunk_of[1:] != chunk_of[:-1], True])  # image index starts + end
    out = []
    for a, b in zip(cuts[:-1], cuts[1:]):
        ds, de = np.searchsorted(f.d_img, [a, b])
        gs, ge = np.searchsorted(f.g_img, [a, b])
        out.append((slice(ds, de), slice(gs, ge)))
    return out


def _sub(f: Flat, d: slice, g: slice) -> Flat:
    return Flat(f.g_img[g], f.g_box[g], f.g_lab[g], f.g_diff[g], f.g_black[g],
                f.d_img[d], f.d_box[d], f.d_score[d], f.d_lab[d], f.d_black[d])


def evaluate_voc_style(gts, dets, num_classes: int, protocol: str, iou: float | None = None) -> dict:
    """``voc07`` / ``voc`` / ``ilsvrc`` AP. Returns the dict documented in :func:`eval.evaluate`."""
    thr = 0.5 if iou is None else float(iou)
    f = flatten(gts, dets, num_classes)
    match = match_ilsvrc if protocol == "ilsvrc" else match_voc
    tp = np.zeros(len(f.d_box), bool)
    ignored = np.zeros(len(f.d_box), bool)
    for d, g in _image_chunks(f, num_classes):
        # within a chunk, ties in score keep input order: the same order as over all images
        tp[d], ignored[d] = match(_sub(f, d, g), num_classes, thr)
    count_gt = ~f.g_black if protocol == "ilsvrc" else ~f.g_diff
    aps, npos, curves = average_precision(f, tp, ignored, num_classes, protocol == "voc07", count_gt)
    ndet = np.bincount(f.d_lab[~ignored], minlength=num_classes + 1)[1:]
    ntp = np.bincount(f.d_lab[tp], minlength=num_classes + 1)[1:]
    return {"AP": aps, "npos": npos.tolist(), "num_detections": ndet.tolist(), "num_tp": ntp.tolist(),
            "curves": curves, "iou": thr}
