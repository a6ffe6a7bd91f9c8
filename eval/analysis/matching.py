"""The one matching pass of :mod:`eval.analysis`: flat arrays (:func:`eval.detection.flatten`),
what the protocol counts, every (detection, ground truth) pair of an image once with its IoUs in
the protocol's arithmetic, the per-detection reductions the breakdowns need, and the protocol's
own matching at any threshold (voc / ilsvrc through :func:`eval.detection.match_pairs`, the
kernel :func:`eval.evaluate` uses; coco: COCOeval's evaluateImg) and AP."""

from __future__ import annotations

import itertools
import math

import numpy as np

from ..ap import ap_11_point, ap_all_point, precision_recall
from ..detection import (
    flatten,
    group_positions,
    ilsvrc_thresholds,
    match_pairs,
    ranks,
    rounds,
    segment_first_argmax,
)
from ..errors import EvalError

BACKGROUND_IOU = 0.1          # Hoiem's and TIDE's background threshold, COCO analyze's Loc IoU
COCO_MAX_DETS = 100           # COCOeval's maxDets[-1]: detections per image and class
COCO_REC_THRS = np.linspace(.0, 1.00, int(np.round((1.00 - .0) / .01)) + 1)   # COCOeval's recThrs
COCO_IOU_THRS = np.linspace(.5, 0.95, int(np.round((0.95 - .5) / .05)) + 1, endpoint=True)
ALL_RANGE = (0.0, 1e5 ** 2)
PAIR_CHUNK = 2_000_000        # (detection, ground truth) pairs held at once


class Scene:
    """Everything the breakdowns share. Detections are ``D`` rows, ground truth ``G`` rows (see
    :class:`eval.detection.Flat`); per-detection reductions over the pairs of its image."""

    def __init__(self, protocol: str, gts, dets, num_classes: int, t: float, group_of: np.ndarray | None):
        f = flatten(gts, dets, num_classes)
        self.f, self.protocol, self.C, self.t = f, protocol, num_classes, t
        self.D, self.G = len(f.d_box), len(f.g_box)
        self.n_img = len(gts)
        self.rank = ranks(f.d_score)
        self.group_of = group_of                         # (C+1,) group id per label, or None
        # ground truth the protocol does not count, detections it drops
        if protocol == "ilsvrc":
            self.g_ign = f.g_black.copy()
            self.d_drop = f.d_black.copy()
        elif protocol == "coco":
            self.g_ign = f.g_diff.copy()                 # iscrowd
            self.pos = self._group_pos(np.ones(self.D, bool))
            self.d_drop = self.pos >= COCO_MAX_DETS      # COCOeval keeps the 100 best per image and class
        else:
            self.g_ign = f.g_diff.copy()
            self.d_drop = np.zeros(self.D, bool)
        self.g_count = ~self.g_ign
        # rank of each live detection inside its (image, class): the rounds of the ordered matchings
        if protocol == "ilsvrc":
            self.pos = self._group_pos(~f.d_black)
        self.npos = np.bincount(f.g_lab[self.g_count], minlength=num_classes + 1)[1:]
        # areas as COCOeval sees them: the file's segment area when given, else w * h
        areas = []
        for i, (g, n) in enumerate(zip(gts, np.bincount(f.g_img, minlength=self.n_img))):
            a = g.get("areas")
            a = np.full(n, np.nan) if a is None else np.asarray(a, np.float64).reshape(-1)
            if len(a) != n:
                raise EvalError(f"ground truth of image {i}: {n} boxes but {len(a)} areas")
            areas.append(a)
        g_area = np.concatenate(areas) if areas else np.zeros(0)
        gw, gh = f.g_box[:, 2] - f.g_box[:, 0], f.g_box[:, 3] - f.g_box[:, 1]
        dw, dh = f.d_box[:, 2] - f.d_box[:, 0], f.d_box[:, 3] - f.d_box[:, 1]
        self.g_area = np.where(np.isnan(g_area), gw * gh, g_area)
        self.d_area = dw * dh
        with np.errstate(divide="ignore", invalid="ignore"):
            self.g_aspect = np.where(gh > 0, gw / gh, np.inf)
            self.d_aspect = np.where(dh > 0, dw / dh, np.inf)
        self.g_thr = ilsvrc_thresholds(f.g_box, t) if protocol == "ilsvrc" else np.full(self.G, t)
        self.img_has_obj = np.bincount(f.g_img[self.g_count], minlength=self.n_img) > 0
        self._pair_pass()

    # -- pairs ---------------------------------------------------------------------------------

    def _chunks(self):
        f = self.f
        nd = np.bincount(f.d_img, minlength=self.n_img)
        ng = np.bincount(f.g_img, minlength=self.n_img)
        chunk_of = np.cumsum(nd * ng) // PAIR_CHUNK
        cuts = np.flatnonzero(np.r_[True, chunk_of[1:] != chunk_of[:-1], True]) if self.n_img else np.array([0, 0])
        d_first = np.r_[0, np.cumsum(nd)]
        g_first = np.r_[0, np.cumsum(ng)]
        for a, b in itertools.pairwise(cuts):
            yield d_first[a], d_first[b], g_first, ng

    def _overlapping(self, pd, pg):
        """The pairs whose boxes overlap (positive intersection width and height; the devkits and
        pycocotools score no other), with (matching IoU, plain IoU, intersection / detection
        area), in the protocol's arithmetic. Matching IoU: what eval.detection / COCOeval compare
        with the threshold (coco: crowd objects by intersection over detection area). Pairs
        that do not overlap change no matching and no reduction below, so they are dropped
        first, on the x extent alone."""
        b = self._boxes
        if self.protocol == "coco":
            # pycocotools bbIou on [x, y, w, h] with w = x2 - x1, as eval.coco.to_coco writes them
            ax, bx = b["dx1"][pd], b["gx1"][pg]
            iw = np.minimum(b["dw"][pd] + ax, b["gw"][pg] + bx) - np.maximum(ax, bx)
            k = np.flatnonzero(iw > 0)
            pd, pg, iw = pd[k], pg[k], iw[k]
            ay, by = b["dy1"][pd], b["gy1"][pg]
            ih = np.minimum(b["dh"][pd] + ay, b["gh"][pg] + by) - np.maximum(ay, by)
        else:
            # eval.detection._pairs, expression for expression
            iw = np.minimum(b["dx2"][pd], b["gx2"][pg]) - np.maximum(b["dx1"][pd], b["gx1"][pg])
            k = np.flatnonzero(iw > 0)
            pd, pg, iw = pd[k], pg[k], iw[k]
            ih = np.minimum(b["dy2"][pd], b["gy2"][pg]) - np.maximum(b["dy1"][pd], b["gy1"][pg])
        k = np.flatnonzero(ih > 0)
        pd, pg, iw, ih = pd[k], pg[k], iw[k], ih[k]
        inter = iw * ih
        da = b["da"][pd]
        plain = inter / (da + b["ga"][pg] - inter)
        cio = inter / da
        match = np.where(self.f.g_diff[pg], cio, plain) if self.protocol == "coco" else plain
        return pd, pg, match, plain, cio

    def _pair_pass(self):
        """Every (detection, ground truth) pair of the same image, once: keep the same-class pairs
        for the matchings, reduce the rest to per-detection numbers."""
        f, D = self.f, self.D
        col = lambda a, k: np.ascontiguousarray(a[:, k])
        self._boxes = b = {"dx1": col(f.d_box, 0), "dy1": col(f.d_box, 1), "dx2": col(f.d_box, 2),
                           "dy2": col(f.d_box, 3), "gx1": col(f.g_box, 0), "gy1": col(f.g_box, 1),
                           "gx2": col(f.g_box, 2), "gy2": col(f.g_box, 3)}
        b["dw"], b["dh"] = b["dx2"] - b["dx1"], b["dy2"] - b["dy1"]
        b["gw"], b["gh"] = b["gx2"] - b["gx1"], b["gy2"] - b["gy1"]
        b["da"], b["ga"] = b["dw"] * b["dh"], b["gw"] * b["gh"]
        neg = -np.inf
        self.ms = np.zeros(D)                 # best IoU with a counted object of its class
        self.ms_gt = np.full(D, -1, np.int64)  # ... that object (first among equals)
        self.fg_other_gt = np.full(D, -1, np.int64)   # best other-class counted object at IoU >= its threshold
        self.max_any = np.zeros(D)            # best IoU with any counted object
        self.max_other = np.zeros(D)          # best IoU with a counted object of another class
        self.max_sim = np.zeros(D)            # ... of another class of its group
        self.crowd_other = np.zeros(D)        # best intersection / detection area, objects of other classes
        self.crowd_sim = np.zeros(D)          # ... of other classes of its group
        sp = []
        for ds, de, g_first, ng in self._chunks():
            if de == ds:
                continue
            didx = np.arange(ds, de)
            img = f.d_img[didx]
            cnt = ng[img]
            P = int(cnt.sum())
            if P == 0:
                continue
            pd = np.repeat(didx, cnt)
            pg = np.arange(P) + np.repeat(g_first[img] - (np.cumsum(cnt) - cnt), cnt)
            pd, pg, match, plain, cio = self._overlapping(pd, pg)
            if pd.size == 0:
                continue
            same = f.g_lab[pg] == f.d_lab[pd]
            counted = self.g_count[pg]
            seg = pd - ds
            n = de - ds
            sl = slice(ds, de)
            best, arg = segment_first_argmax(seg, np.where(same & counted, plain, neg), n)
            ok = np.isfinite(best)
            self.ms[sl] = np.where(ok, best, 0.0)
            self.ms_gt[sl] = np.where(ok, pg[np.maximum(arg, 0)], -1)
            other = ~same
            oc = other & counted
            fg = match >= self.g_thr[pg]
            best, arg = segment_first_argmax(seg, np.where(oc & fg, plain, neg), n)
            ok = np.isfinite(best)
            self.fg_other_gt[sl] = np.where(ok, pg[np.maximum(arg, 0)], -1)
            self.max_any[sl] = _segmax(seg, np.where(counted, plain, 0.0), n)
            self.max_other[sl] = _segmax(seg, np.where(oc, plain, 0.0), n)
            self.crowd_other[sl] = _segmax(seg, np.where(other, cio, 0.0), n)
            if self.group_of is not None:
                sim = other & (self.group_of[f.g_lab[pg]] == self.group_of[f.d_lab[pd]])
                self.max_sim[sl] = _segmax(seg, np.where(sim & counted, plain, 0.0), n)
                self.crowd_sim[sl] = _segmax(seg, np.where(sim, cio, 0.0), n)
            sp.append((pd[same], pg[same], match[same], plain[same]))
        if sp:
            self.sp_d, self.sp_g, self.sp_iou, self.sp_plain = (np.concatenate(x) for x in zip(*sp))
        else:
            self.sp_d = self.sp_g = np.zeros(0, np.int64)
            self.sp_iou = self.sp_plain = np.zeros(0)

    def _group_pos(self, live: np.ndarray) -> np.ndarray:
        """Position of each live detection among the live ones of its (image, class), by rank."""
        return group_positions(self.f, self.rank, live, self.C)

    # -- the protocols' matchings on the shared same-class pairs ----------------------------------

    def match(self, thr: float, g_out: np.ndarray | None = None, d_out: np.ndarray | None = None):
        """The protocol's matching at IoU ``thr``. Returns (state (D,) int8: 1 true positive,
        0 false positive, -1 not counted; gt (D,) int64: the object a true positive took, -1).
        ``g_out`` / ``d_out`` (coco only): objects / detections outside a size or aspect range."""
        if self.protocol == "coco":
            return self._match_coco(thr, g_out, d_out)
        if self.protocol == "ilsvrc":
            return self._match_ilsvrc(thr)
        return self._match_voc(thr)

    def _match_voc(self, thr):
        """VOCevaldet.m, as eval.detection.match_voc (the same kernel): each detection's best
        same-class object."""
        return match_pairs("voc", self.sp_d, self.sp_g, self.sp_iou, num_det=self.D, num_gt=self.G,
                           rank=self.rank, thr=thr, g_diff=self.f.g_diff)

    def _match_ilsvrc(self, thr):
        """eval_detection.m, as eval.detection.match_ilsvrc (the same kernel): the best-IoU object
        not yet matched among those whose own threshold min(thr, wh/((w+10)(h+10))) the detection
        reaches."""
        f = self.f
        keep = ~f.d_black[self.sp_d] & ~f.g_black[self.sp_g]
        pd, pg, iou = self.sp_d[keep], self.sp_g[keep], self.sp_iou[keep]
        ok = iou >= ilsvrc_thresholds(f.g_box, thr)[pg]
        state, gt = match_pairs("ilsvrc", pd, pg, iou, num_det=self.D, num_gt=self.G, rank=self.rank,
                                ok=ok, pos=self.pos)
        state[f.d_black] = -1
        return state, gt

    def _match_coco(self, thr, g_out=None, d_out=None):
        """COCOeval.evaluateImg: detections by score take the best-IoU object not yet matched
        (crowd objects stay available), objects it ignores only when no counted one qualifies,
        the last among equal IoUs; a detection on an ignored object is ignored, and so is an
        unmatched one outside the range."""
        f, D = self.f, self.D
        crowd = f.g_diff
        if g_out is None:   # COCOeval's "all" range
            g_out = ~_in_range(self.g_area, *ALL_RANGE)
            d_out = ~_in_range(self.d_area, *ALL_RANGE)
        g_ig = crowd | g_out
        live = ~self.d_drop
        keep = live[self.sp_d]
        pd, pg, iou = self.sp_d[keep], self.sp_g[keep], self.sp_iou[keep]
        o = np.lexsort((pg, g_ig[pg], pd))          # COCOeval: objects it ignores go last (stable)
        pd, pg, iou = pd[o], pg[o], iou[o]
        po, bounds = rounds(self.pos[pd])
        pd, pg, iou = pd[po], pg[po], iou[po]
        q_all = iou >= min(thr, 1 - 1e-10)
        matched = np.zeros(self.G, bool)
        gt = np.full(D, -1, np.int64)
        for r in range(len(bounds) - 1):
            s, e = bounds[r], bounds[r + 1]
            if s == e:
                continue
            rpd, rpg = pd[s:e], pg[s:e]
            q = q_all[s:e] & ~(matched[rpg] & ~crowd[rpg])
            if not q.any():
                continue
            uniq, seg = np.unique(rpd, return_inverse=True)
            reg = q & ~g_ig[rpg]
            has_reg = np.bincount(seg, weights=reg.astype(np.float64), minlength=len(uniq)) > 0
            cand = q & (reg | ~has_reg[seg])
            best, arg = _segment_last_argmax(seg, np.where(cand, iou[s:e], -np.inf), len(uniq))
            got = np.isfinite(best)
            m = rpg[arg[got]]
            matched[m] = True
            gt[uniq[got]] = m
        state = np.zeros(D, np.int8)
        hit = gt >= 0
        state[hit] = np.where(g_ig[gt[hit]], -1, 1)
        if d_out is not None:
            state[~hit & d_out] = -1
        state[self.d_drop] = -1
        gt[state != 1] = -1
        return state, gt

    # -- AP ------------------------------------------------------------------------------------

    def order(self, labels: np.ndarray | None = None):
        """Detections sorted by (label, rank) and each class's slice bounds (cached for the
        detections' own labels)."""
        if labels is None and getattr(self, "_order", None) is not None:
            return self._order
        lab = self.f.d_lab if labels is None else labels
        o = np.argsort(lab * max(self.D, 1) + self.rank, kind="stable")
        out = o, np.searchsorted(lab[o], np.arange(1, self.C + 2))
        if labels is None:
            self._order = out
        return out

    def aps(self, state, npos, order=None, curves=False):
        """Per class AP by the protocol (nan where npos is 0); with ``curves`` also each class's
        101-point interpolated precision (COCOeval's sampling of the precision envelope)."""
        o, bounds = self.order() if order is None else order
        kind = {"voc07": "11", "coco": "coco"}.get(self.protocol, "all")
        out, qs = [], []
        ranked = state[o]
        for c in range(self.C):
            s = ranked[bounds[c]:bounds[c + 1]]
            hits = s[s >= 0] == 1
            n = int(npos[c])
            if n == 0:
                out.append(math.nan)
                qs.append(None)
                continue
            q = _coco_q(hits, n) if (kind == "coco" or curves) else None
            if kind == "coco":
                out.append(float(q.mean()))
            else:
                rec, prec = precision_recall(hits, n)
                out.append(ap_11_point(rec, prec) if kind == "11" else ap_all_point(rec, prec))
            qs.append(q)
        return (out, qs) if curves else out


def _segmax(seg: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """Per segment id 0..n-1 (``seg`` in contiguous runs): the maximum, 0 for empty segments."""
    out = np.zeros(n)
    if seg.size:
        starts = np.flatnonzero(np.r_[True, seg[1:] != seg[:-1]])
        out[seg[starts]] = np.maximum.reduceat(values, starts)
    return out


def _segment_last_argmax(seg, values, n):
    """As eval.detection.segment_first_argmax, the last occurrence of the maximum (COCOeval's
    ``ious < iou: continue`` keeps the last object among equal IoUs)."""
    best, arg = segment_first_argmax(seg[::-1], values[::-1], n)
    return best, np.where(arg >= 0, len(seg) - 1 - arg, -1)


def _coco_q(hits: np.ndarray, npos: int) -> np.ndarray:
    """COCOeval.accumulate for one class: precision at the 101 recall thresholds."""
    tp = np.cumsum(hits).astype(float)
    fp = np.cumsum(~hits).astype(float)
    nd = len(tp)
    rc = tp / npos
    pr = tp / (fp + tp + np.spacing(1))
    q = np.zeros(len(COCO_REC_THRS))
    if nd:
        pr = np.maximum.accumulate(pr[::-1])[::-1]
        inds = np.searchsorted(rc, COCO_REC_THRS, side="left")
        ok = inds < nd
        q[ok] = pr[inds[ok]]
    return q


def _mean(values) -> float:
    v = [x for x in values if x is not None and not math.isnan(x)]
    return float(np.mean(v)) if v else math.nan


def _in_range(values, lo, hi):
    return ~((values < lo) | (values > hi))
