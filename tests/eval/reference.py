"""Deliberately simple per-box reference implementations, written from the devkit texts.

VOCevaldet.m (PASCAL VOC devkit) and eval_detection.m (ILSVRC DET devkit), transcribed loop for
loop with MATLAB's 1-based inclusive arithmetic replaced by our continuous boxes (the "+1"s
cancel: w_inclusive = xmax - xmin + 1 = x2 - x1). Slow on purpose: no numpy tricks, so a reviewer
can check them against the MATLAB line by line. Used only by the tests.
"""

import math


def _nanmax(a, b):  # MATLAB's max ignores NaN
    if math.isnan(a):
        return b
    if math.isnan(b):
        return a
    return max(a, b)


def voc_ap_all_point(rec, prec):
    """VOCap.m."""
    mrec = [0.0] + list(rec) + [1.0]
    mpre = [0.0] + list(prec) + [0.0]
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = _nanmax(mpre[i], mpre[i + 1])
    ap = 0.0
    for i in range(1, len(mrec)):
        if mrec[i] != mrec[i - 1]:
            ap += (mrec[i] - mrec[i - 1]) * mpre[i]
    return ap


def matlab_0_to_1_by_tenth():
    """MATLAB 0:0.1:1 (colon: first half k*0.1, second half 1 - (10-k)*0.1)."""
    return [k * 0.1 if k <= 5 else 1.0 - (10 - k) * 0.1 for k in range(11)]


def voc_ap_11_point(rec, prec):
    ap = 0.0
    for t in matlab_0_to_1_by_tenth():
        ps = [p for r, p in zip(rec, prec) if r >= t and not math.isnan(p)]
        ap += (max(ps) if ps else 0.0) / 11
    return ap


def _overlap(bb, bbgt):
    """IoU as the devkits compute it, or None when the boxes do not overlap (iw, ih <= 0)."""
    bi = [max(bb[0], bbgt[0]), max(bb[1], bbgt[1]), min(bb[2], bbgt[2]), min(bb[3], bbgt[3])]
    iw = bi[2] - bi[0]
    ih = bi[3] - bi[1]
    if iw > 0 and ih > 0:
        ua = (bb[2] - bb[0]) * (bb[3] - bb[1]) + (bbgt[2] - bbgt[0]) * (bbgt[3] - bbgt[1]) - iw * ih
        return iw * ih / ua
    return None


def _stable_desc(scores):
    return sorted(range(len(scores)), key=lambda d: -scores[d])


def reference_voc(gts, dets, num_classes, thr=0.5, eleven_point=False):
    """VOCevaldet.m, one class at a time."""
    aps = []
    for c in range(1, num_classes + 1):
        gt = []
        npos = 0
        for g in gts:
            boxes = [list(map(float, b)) for b, l in zip(g["boxes"], g["labels"]) if l == c]
            diff = [bool(d) for d, l in zip(g.get("difficult", [False] * len(g["labels"])), g["labels"]) if l == c]
            gt.append({"BB": boxes, "diff": diff, "det": [False] * len(boxes)})
            npos += sum(1 for d in diff if not d)
        ids, confidence, BB = [], [], []
        for i, d in enumerate(dets):
            for b, s, l in zip(d["boxes"], d["scores"], d["labels"]):
                if l == c:
                    ids.append(i)
                    confidence.append(float(s))
                    BB.append(list(map(float, b)))
        si = _stable_desc(confidence)
        nd = len(si)
        tp = [0] * nd
        fp = [0] * nd
        for d in range(nd):
            i = ids[si[d]]
            bb = BB[si[d]]
            ovmax = -math.inf
            jmax = -1
            for j, bbgt in enumerate(gt[i]["BB"]):
                ov = _overlap(bb, bbgt)
                if ov is not None and ov > ovmax:
                    ovmax = ov
                    jmax = j
            if ovmax >= thr:
                if not gt[i]["diff"][jmax]:
                    if not gt[i]["det"][jmax]:
                        tp[d] = 1
                        gt[i]["det"][jmax] = True
                    else:
                        fp[d] = 1
            else:
                fp[d] = 1
        if npos == 0:
            aps.append(math.nan)
            continue
        aps.append(_ap(tp, fp, npos, eleven_point))
    return aps


def _ap(tp, fp, npos, eleven_point):
    ctp = cfp = 0
    rec, prec = [], []
    for t, f in zip(tp, fp):
        ctp += t
        cfp += f
        rec.append(ctp / npos)
        prec.append(ctp / (ctp + cfp) if ctp + cfp > 0 else math.nan)
    return voc_ap_11_point(rec, prec) if eleven_point else voc_ap_all_point(rec, prec)


def reference_ilsvrc(gts, dets, num_classes, thr=0.5):
    """eval_detection.m: per image, detections by descending confidence take the best-IoU
    unmatched gt of their class whose own threshold they reach; blacklist skipped."""
    rows = []  # (label, score, tp) in the devkit's concatenation order
    npos = [0] * (num_classes + 1)
    for g, d in zip(gts, dets):
        black = set(g.get("blacklist", ()))
        gboxes = [list(map(float, b)) for b in g["boxes"]]
        glabels = [int(l) for l in g["labels"]]
        for l in glabels:
            if l not in black:
                npos[l] += 1
        gthr = []
        for b in gboxes:
            w = b[2] - b[0]
            h = b[3] - b[1]
            gthr.append(min(thr, (w * h) / ((w + 10) * (h + 10))))
        detected = [False] * len(gboxes)
        scores = [float(s) for s in d["scores"]]
        for j in _stable_desc(scores):
            c = int(d["labels"][j])
            if c in black:
                continue
            bb = list(map(float, d["boxes"][j]))
            ovmax = -math.inf
            kmax = -1
            for k in range(len(gboxes)):
                if glabels[k] != c or detected[k]:
                    continue
                ov = _overlap(bb, gboxes[k])
                if ov is not None and ov >= gthr[k] and ov > ovmax:
                    ovmax = ov
                    kmax = k
            if kmax >= 0:
                detected[kmax] = True
            rows.append((c, scores[j], 1 if kmax >= 0 else 0))
    aps = []
    for c in range(1, num_classes + 1):
        mine = [r for r in rows if r[0] == c]
        order = _stable_desc([r[1] for r in mine])
        tp = [mine[o][2] for o in order]
        fp = [1 - t for t in tp]
        aps.append(math.nan if npos[c] == 0 else _ap(tp, fp, npos[c], False))
    return aps
