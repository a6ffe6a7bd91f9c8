"""Why a detector fails: error analysis for every protocol of :func:`eval.evaluate` (ilsvrc, voc07,
voc, coco). Arrays in, numbers out (:func:`analyze`); figures, ``analysis.json`` and a text summary
out (:func:`write_report`, :func:`summary_lines`).

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
largest difference is 0.006 AP points (tests/eval/test_analysis.py).
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re

import numpy as np

from . import analysis_plots as P
from .ap import ELEVEN_POINTS, ap_11_point, ap_all_point, precision_recall
from .detection import _ranks, _segment_first_argmax, flatten, ilsvrc_thresholds
from .errors import EvalError

PROTOCOLS = ("ilsvrc", "voc07", "voc", "coco")   # eval.PROTOCOLS (eval/__init__ imports this module)
BACKGROUND_IOU = 0.1          # Hoiem's and TIDE's background threshold, COCO analyze's Loc IoU
COCO_MAX_DETS = 100           # COCOeval's maxDets[-1]: detections per image and class
COCO_REC_THRS = np.linspace(.0, 1.00, int(np.round((1.00 - .0) / .01)) + 1)   # COCOeval's recThrs
COCO_IOU_THRS = np.linspace(.5, 0.95, int(np.round((0.95 - .5) / .05)) + 1, endpoint=True)
SIZE_RANGES = {"small": (0.0, 32.0 ** 2), "medium": (32.0 ** 2, 96.0 ** 2), "large": (96.0 ** 2, 1e5 ** 2)}
ALL_RANGE = (0.0, 1e5 ** 2)
ASPECT_BINS = {"extra-tall": (0.0, 0.5), "tall": (0.5, 0.75), "square": (0.75, 4 / 3),
               "wide": (4 / 3, 2.0), "extra-wide": (2.0, math.inf)}
HOIEM_FACTORS = 2.0 ** np.linspace(-2, 3, 21)       # N / npos from 0.25 to 8, as Hoiem's plots
HOIEM_TYPES = ("Cor", "Loc", "Sim", "Oth", "BG")
STACK_TYPES = ("C75", "C50", "Loc", "Sim", "Oth", "BG", "FN")
TIDE_MAIN = ("Cls", "Loc", "Both", "Dupe", "Bkg", "Miss")
TIDE_SPECIAL = ("FalsePos", "FalseNeg")
GALLERY_SIZE = 12
PAIR_CHUNK = 2_000_000        # (detection, ground truth) pairs held at once

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


# ----------------------------------------------------------------------------------------------
# the scene: flat arrays, what counts, the pairs and their reductions (the one matching pass)


class _Scene:
    """Everything the breakdowns share. Detections are ``D`` rows, ground truth ``G`` rows (see
    :class:`eval.detection.Flat`); per-detection reductions over the pairs of its image."""

    def __init__(self, protocol: str, gts, dets, num_classes: int, t: float, group_of: np.ndarray | None):
        f = flatten(gts, dets, num_classes)
        self.f, self.protocol, self.C, self.t = f, protocol, num_classes, t
        self.D, self.G = len(f.d_box), len(f.g_box)
        self.n_img = len(gts)
        self.rank = _ranks(f.d_score)
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
            best, arg = _segment_first_argmax(seg, np.where(same & counted, plain, neg), n)
            ok = np.isfinite(best)
            self.ms[sl] = np.where(ok, best, 0.0)
            self.ms_gt[sl] = np.where(ok, pg[np.maximum(arg, 0)], -1)
            other = ~same
            oc = other & counted
            fg = match >= self.g_thr[pg]
            best, arg = _segment_first_argmax(seg, np.where(oc & fg, plain, neg), n)
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
        f = self.f
        C1 = self.C + 1
        didx = np.flatnonzero(live)
        key = f.d_img[didx] * C1 + f.d_lab[didx]
        o = np.lexsort((self.rank[didx], key))
        sk = key[o]
        starts = np.r_[True, sk[1:] != sk[:-1]] if len(sk) else np.zeros(0, bool)
        gstart = np.maximum.accumulate(np.where(starts, np.arange(len(sk)), 0)) if len(sk) else np.zeros(0, np.int64)
        pos = np.full(self.D, -1, np.int64)
        pos[didx[o]] = np.arange(len(sk)) - gstart
        return pos

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
        """VOCevaldet.m, as eval.detection.match_voc: each detection's best same-class object."""
        f, D = self.f, self.D
        pd, pg, iou = self.sp_d, self.sp_g, self.sp_iou
        ovmax, arg = _segment_first_argmax(pd, iou, D)
        jmax = np.full(D, -1, np.int64)
        jmax[arg >= 0] = pg[arg[arg >= 0]]
        hit = (arg >= 0) & (ovmax >= thr)
        ignored = np.zeros(D, bool)
        ignored[hit] = f.g_diff[jmax[hit]]
        cand = np.flatnonzero(hit & ~ignored)
        cand = cand[np.lexsort((self.rank[cand], jmax[cand]))]
        firsts = np.unique(jmax[cand], return_index=True)[1]
        state = np.zeros(D, np.int8)
        gt = np.full(D, -1, np.int64)
        state[cand[firsts]] = 1
        gt[cand[firsts]] = jmax[cand[firsts]]
        state[ignored] = -1
        return state, gt

    def _rounds(self, pd):
        """Pairs bucketed by the rank of their detection inside its (image, class): round r holds
        the r-th detection of every group (the order-dependent matchings, vectorised per round)."""
        pr = self.pos[pd]
        po = np.argsort(pr, kind="stable")
        bounds = np.searchsorted(pr[po], np.arange(pr.max() + 2 if pr.size else 1))
        return po, bounds

    def _match_ilsvrc(self, thr):
        """eval_detection.m, as eval.detection.match_ilsvrc: the best-IoU object not yet matched
        among those whose own threshold min(thr, wh/((w+10)(h+10))) the detection reaches."""
        f, D = self.f, self.D
        live = ~f.d_black
        keep = live[self.sp_d] & ~f.g_black[self.sp_g]
        pd, pg, iou = self.sp_d[keep], self.sp_g[keep], self.sp_iou[keep]
        ok_thr = iou >= ilsvrc_thresholds(f.g_box, thr)[pg]
        po, bounds = self._rounds(pd)
        pd, pg, iou, ok_thr = pd[po], pg[po], iou[po], ok_thr[po]
        matched = np.zeros(self.G, bool)
        state = np.zeros(D, np.int8)
        gt = np.full(D, -1, np.int64)
        for r in range(len(bounds) - 1):
            s, e = bounds[r], bounds[r + 1]
            if s == e:
                continue
            rpd, rpg = pd[s:e], pg[s:e]
            val = np.where(ok_thr[s:e] & ~matched[rpg], iou[s:e], -np.inf)
            uniq, seg = np.unique(rpd, return_inverse=True)
            best, arg = _segment_first_argmax(seg, val, len(uniq))
            got = np.isfinite(best)
            matched[rpg[arg[got]]] = True
            state[uniq[got]] = 1
            gt[uniq[got]] = rpg[arg[got]]
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
        po, bounds = self._rounds(pd)
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
    """As eval.detection._segment_first_argmax, the last occurrence of the maximum (COCOeval's
    ``ious < iou: continue`` keeps the last object among equal IoUs)."""
    best, arg = _segment_first_argmax(seg[::-1], values[::-1], n)
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


# ----------------------------------------------------------------------------------------------
# the breakdowns


def _hoiem(sc: _Scene, state, classes, has_groups):
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


def _stack(sc: _Scene, states, classes, has_groups):
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


def _tide(sc: _Scene, state, gt, classes):
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


def _in_range(values, lo, hi):
    return ~((values < lo) | (values > hi))


def _sensitivity(sc: _Scene, state_t, gt_t, thrs, classes):
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


def _f1(sc: _Scene, state, classes):
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


def _confusion(sc: _Scene, state, gt, thr_of_class, classes):
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


def _gallery(sc: _Scene, state, gt, hoiem_code, tide_err, classes, image_paths):
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
            "false_positives": [{"image": int(f.d_img[i]), "path": _path(image_paths, f.d_img[i]),
                                 "box": f.d_box[i].tolist(), "score": float(f.d_score[i]),
                                 "hoiem": HOIEM_TYPES[hoiem_code[i]] if hoiem_code[i] >= 0 else None,
                                 "tide": TIDE_MAIN[tide_err[i]] if tide_err[i] >= 0 else None} for i in fps],
            "missed": [{"image": int(f.g_img[j]), "path": _path(image_paths, f.g_img[j]),
                        "box": f.g_box[j].tolist(), "best_iou": float(best_iou[j])} for j in miss]}
    return out


def _path(paths, i):
    return None if paths is None else str(paths[int(i)])


# ----------------------------------------------------------------------------------------------
# the API


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
    sc = _Scene(protocol, gts, dets, C, t, group_of)

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
    hoiem, hoiem_code = _hoiem(sc, state_t, classes, has_groups)
    stack, _ = _stack(sc, states, classes, has_groups)
    tide, tide_err = _tide(sc, state_t, gt_t, classes)
    sens = _sensitivity(sc, state_t, gt_t, own, classes)
    f1, thr_of_class = _f1(sc, state_t, classes)
    result = {
        "protocol": protocol, "iou": t, "iou_protocol": ("0.50:0.95" if (protocol == "coco" and iou is None) else t),
        "classes": classes, "num_images": sc.n_img, "num_detections": int((~sc.d_drop).sum()),
        "npos": sc.npos.tolist(), "AP": AP, "mAP": _mean(AP), "groups": groups,
        "hoiem": hoiem, "coco_stack": stack, "tide": tide, "sensitivity": sens, "f1": f1,
        "confusion": _confusion(sc, state_t, gt_t, thr_of_class, classes),
        "gallery": _gallery(sc, state_t, gt_t, hoiem_code, tide_err, classes, image_paths),
    }
    return _json_safe(result)


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


def _json_safe(x):
    if isinstance(x, dict):
        return {str(k): _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        if x and all(type(v) is float or type(v) is int for v in x):   # the long lists: no recursion
            return [v if (type(v) is int or math.isfinite(v)) else None for v in x]
        return [_json_safe(v) for v in x]
    if isinstance(x, np.ndarray):
        return _json_safe(x.tolist())
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return None if not math.isfinite(float(x)) else float(x)
    return x


def lowest_ap_classes(result: dict, k: int = 5) -> list[str]:
    """The ``k`` classes with ground truth and the lowest AP (ties in class order)."""
    valid = [(a, i) for i, a in enumerate(result["AP"]) if a is not None]
    return [result["classes"][i] for a, i in sorted(valid)[:k]]


def summary_lines(result: dict) -> list[str]:
    """A short text summary: mAP, then a table of TIDE's dAP per error type for all classes and for
    each class (fractions of 1, like mAP), with each row's largest error type and Hoiem's false
    positive shares among its first npos detections."""
    tide, hoiem = result["tide"], result["hoiem"]
    t = result["iou"]
    n_valid = sum(1 for a in result["AP"] if a is not None)
    lines = [(f"error analysis ({result['protocol']}, IoU {result['iou_protocol']}): mAP {_fmt(result['mAP'])} "
              f"over {n_valid} classes with ground truth; errors at IoU {t:g} (mAP there {_fmt(tide['mAP'])})"),
             ("TIDE dAP: AP gained by fixing each error type alone (fractions of 1, like mAP); "
              "Hoiem: false-positive types among the top npos detections")]
    width = max([len(c) for c in result["classes"]] + [len("all classes")])
    lines.append(f"{'class':<{width}}  {'AP@' + format(t, 'g'):>6}" + "".join(f"{n:>8}" for n in TIDE_MAIN)
                 + "".join(f"{n:>10}" for n in TIDE_SPECIAL) + "  largest (dAP)    Hoiem")

    def row(name, ap, d, h):
        big = d["largest"]
        err = f"{big} ({_fmt(d['dAP'][big])})" if big else "none"
        fps = (h or {}).get("fp_shares_at_npos", {})
        hs = " ".join(f"{k} {100 * v:.0f}%" for k, v in sorted(fps.items(), key=lambda kv: -kv[1]) if v > 0)
        return (f"{name:<{width}}  {_fmt(ap)}" + "".join(f"  {_fmt(d['dAP'][n])}" for n in TIDE_MAIN)
                + "".join(f"    {_fmt(d['special'][n])}" for n in TIDE_SPECIAL) + f"  {err:<15}  {hs or '-'}")

    lines.append(row("all classes", tide["mAP"], tide, hoiem["all"]))
    for c, name in enumerate(result["classes"]):
        pc = tide["per_class"].get(name)
        if pc is None:
            lines.append(f"{name:<{width}}       -  (no ground truth)")
        else:
            lines.append(row(name, pc["AP"], pc, hoiem["per_class"].get(name)))
    return lines


def _fmt(x):
    return "   nan" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4f}"


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "class"


def write_report(result: dict, out_dir: str, classes: list[str], all_classes: bool = False,
                 image_paths: list[str] | None = None, gts: list[dict] | None = None,
                 dets: list[dict] | None = None) -> list[str]:
    """Write ``analysis.json`` (every number of ``result``), ``summary.txt`` and the figures to
    ``out_dir``: for all classes together and the 5 lowest-AP classes (``all_classes``: every class
    with ground truth) a Hoiem false-positive plot, a COCO PR stack and a TIDE dAP chart; one
    sensitivity chart and one confusion matrix; a gallery per shown class when image paths are
    known (``image_paths``, else those in ``result``); ``gts`` / ``dets`` (as given to
    :func:`analyze`) add the objects and detections around each gallery crop. Returns the paths."""
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    p = os.path.join(out_dir, "analysis.json")
    tmp = p + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(result, fh, indent=1, allow_nan=False)
    os.replace(tmp, p)
    paths.append(p)
    p = os.path.join(out_dir, "summary.txt")
    with open(p, "w") as fh:
        fh.write("\n".join(summary_lines(result)) + "\n")
    paths.append(p)
    classes = list(classes)
    shown = [c for c in classes if c in result["tide"]["per_class"]] if all_classes else lowest_ap_classes(result, 5)
    label = f"{result['protocol']}, IoU {result['iou']:g}"
    for subject in ["all"] + shown:
        fname = "all" if subject == "all" else _safe_name(subject)
        title = "all classes" if subject == "all" else subject
        h = result["hoiem"]["all"] if subject == "all" else result["hoiem"]["per_class"][subject]
        paths.append(P.plot_hoiem(h, result["hoiem"]["factors"], f"{title} ({label})",
                                  os.path.join(out_dir, f"hoiem_{fname}.png")))
        s = result["coco_stack"]["all"] if subject == "all" else result["coco_stack"]["per_class"][subject]
        paths.append(P.plot_stack(s, result["coco_stack"]["recall"], f"{title} ({result['protocol']})",
                                  os.path.join(out_dir, f"coco_stack_{fname}.png")))
        td = result["tide"] if subject == "all" else result["tide"]["per_class"][subject]
        paths.append(P.plot_tide(td, f"{title} ({label})", os.path.join(out_dir, f"tide_{fname}.png")))
    paths.append(P.plot_sensitivity(result, ["all"] + shown, os.path.join(out_dir, "sensitivity.png")))
    paths.append(P.plot_confusion(result["confusion"], f"confusion ({label})", os.path.join(out_dir, "confusion.png")))
    for name in shown:
        g = result["gallery"].get(name)
        if not g:
            continue
        items_fp = [dict(it, path=_path(image_paths, it["image"]) if image_paths is not None else it["path"])
                    for it in g["false_positives"]]
        items_miss = [dict(it, path=_path(image_paths, it["image"]) if image_paths is not None else it["path"])
                      for it in g["missed"]]
        if not any(it["path"] for it in items_fp + items_miss):
            continue
        p = P.plot_gallery(items_fp, items_miss, name, classes, os.path.join(out_dir, f"gallery_{_safe_name(name)}.png"),
                           gts=gts, dets=dets, score_thr=result["f1"].get(name, {}).get("score"))
        if p:
            paths.append(p)
    return paths


__all__ = [
    "ASPECT_BINS",
    "COCO_SUPERCATEGORIES",
    "HOIEM_TYPES",
    "SIZE_RANGES",
    "STACK_TYPES",
    "TIDE_MAIN",
    "TIDE_SPECIAL",
    "analyze",
    "lowest_ap_classes",
    "summary_lines",
    "write_report",
]
