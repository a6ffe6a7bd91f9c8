"""Figures of :mod:`eval.analysis`, as matplotlib Figures from :mod:`eval.figures` (writing them is
``detector.io.figures``'s job). Each takes the JSON-safe entries :func:`eval.analysis.analyze`
returns and returns one Figure; titles name the class and the biggest error type, every axis is
labelled."""

from __future__ import annotations

import math
import os
import warnings

import numpy as np

from .figures import colormap, subplots

# one colour per error type, shared by every figure
COLOURS = {"Cor": "#f2f2f2", "C75": "#ffffff", "C50": "#c9d9ea", "Loc": "#4f83bd", "Sim": "#c04f4c",
           "Oth": "#5ce661", "BG": "#8063a3", "Bkg": "#8063a3", "FN": "#ff9900", "Miss": "#ff9900",
           "Cls": "#c04f4c", "Both": "#9e9e9e", "Dupe": "#2b6e8f", "FalsePos": "#555555", "FalseNeg": "#bbbbbb"}
NAMES = {"Cor": "correct", "Loc": "localisation", "Sim": "similar class", "Oth": "other class", "BG": "background",
         "C75": "AP at IoU .75", "C50": "AP at IoU .50", "FN": "false negatives", "Cls": "classification",
         "Both": "cls + loc", "Dupe": "duplicate", "Bkg": "background", "Miss": "missed",
         "FalsePos": "all false positives", "FalseNeg": "all false negatives"}

#: images with more pixels than this are not decoded for the gallery (its tile says so): the
#: 120 MP of ``detector.io.images.MAX_PIXELS`` (eval/ imports nothing of ours, see
#: tests/test_layering.py, so the number is repeated here; ``$GOOGLENET_DET_MAX_PIXELS`` does
#: not move it). Pillow's own check (2 x ``Image.MAX_IMAGE_PIXELS`` = 179 MP) is higher.
GALLERY_MAX_PIXELS = 120_000_000


def _done(fig):
    fig.tight_layout()
    return fig


def plot_hoiem(entry: dict, factors: list[float], title: str):
    """Stacked areas: the share of each type among the top N detections, N / npos on a log axis."""
    types = list(entry["shares"])
    x = np.asarray(factors)
    ys = np.array([entry["shares"][t] for t in types])
    fig, ax = subplots(figsize=(9, 5))
    ax.stackplot(x, ys, colors=[COLOURS[t] for t in types], edgecolor="black", linewidth=0.4,
                 labels=[f"{t}: {NAMES[t]}" for t in types])
    ax.set_xscale("log", base=2)
    ticks = [0.25, 0.5, 1, 2, 4, 8]
    ax.set_xticks(ticks)
    ax.set_xticklabels(["1/4", "1/2", "1", "2", "4", "8"])
    ax.set_xlim(x[0], x[-1])
    ax.set_ylim(0, 1)
    ax.set_xlabel(f"top N detections, N as a multiple of the number of objects ({entry['npos']})")
    ax.set_ylabel("share of the top N detections")
    big = entry.get("largest")
    ax.set_title(f"{title}\nHoiem false positives; biggest error at N = objects: "
                 f"{NAMES.get(big, 'none') if big else 'none'}", fontsize=10)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    return _done(fig)


def plot_stack(entry: dict, recall: list[float], title: str):
    """COCO analyze's precision-recall stack: each band is what fixing one more error type adds."""
    types = list(entry["precision"])
    rs = np.asarray(recall)
    fig, ax = subplots(figsize=(9, 5))
    prev = np.zeros(len(rs))
    for t in types:
        cur = np.asarray(entry["precision"][t], dtype=float)
        ap = entry["AP"][t]
        ax.plot(rs, cur, color="black", lw=0.5)
        ax.fill_between(rs, prev, cur, color=COLOURS[t], label=f"[{_f(ap)}] {t}: {NAMES[t]}")
        prev = np.maximum(prev, cur)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.0)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    big = entry.get("largest")
    ax.set_title(f"{title}\nCOCO-style PR stack; biggest gain: {big + ' (' + NAMES[big] + ')' if big else 'none'}",
                 fontsize=10)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, title="[area] curve")
    return _done(fig)


def plot_tide(entry: dict, title: str):
    """Horizontal bars: TIDE's dAP per main error type, and the two special ones apart."""
    main = list(entry["dAP"])
    special = list(entry.get("special", {}))
    names = main + special
    vals = [entry["dAP"][n] for n in main] + [entry["special"][n] for n in special]
    fig, ax = subplots(figsize=(7, 4.5))
    y = np.arange(len(names))[::-1]
    ax.barh(y, vals, color=[COLOURS[n] for n in names], edgecolor="black", linewidth=0.5)
    for yy, v in zip(y, vals):
        ax.text(v, yy, f" {v:.4f}", va="center", fontsize=8)
    ax.set_yticks(y)
    ax.set_yticklabels([f"{n} ({NAMES[n]})" for n in names], fontsize=8)
    if special:
        ax.axhline(y[len(main) - 1] - 0.5, color="0.5", lw=0.8, ls="--")
    ax.set_xlim(0, max(vals + [1e-3]) * 1.25)
    ax.set_xlabel("dAP: AP gained by fixing the error type (fraction of 1, like mAP)")
    big = entry.get("largest")
    ap = entry.get("mAP", entry.get("AP"))
    ax.set_title(f"{title}\nTIDE errors, AP {_f(ap)}; biggest: {big + ' (' + NAMES[big] + ')' if big else 'none'}",
                 fontsize=10)
    return _done(fig)


def plot_sensitivity(result: dict, subjects: list[str]):
    """Grouped bars: AP per object-size range and per aspect-ratio bin, for each subject."""
    sens = result["sensitivity"]
    fig, axes = subplots(1, 2, figsize=(12, 4.8), gridspec_kw={"width_ratios": [3, 5]})
    cmap = colormap("tab10")
    worst = None
    for ax, what, xlabel in ((axes[0], "size", "object size (COCO area ranges)"),
                             (axes[1], "aspect", "object aspect ratio w / h")):
        e = sens[what]
        bins = list(e["ranges"])
        w = 0.8 / max(len(subjects), 1)
        for k, s in enumerate(subjects):
            vals = [e["mAP"][b] if s == "all" else e["per_class"][s][b] for b in bins]
            vals = [math.nan if v is None else v for v in vals]
            x = np.arange(len(bins)) - 0.4 + w * (k + 0.5)
            ax.bar(x, np.nan_to_num(vals), w, color=cmap(k % 10), label="all classes" if s == "all" else s)
        ax.set_xticks(np.arange(len(bins)))
        ax.set_xticklabels([f"{b}\n({e['npos'][b]} obj.)" for b in bins], fontsize=8)
        ax.set_ylim(0, 1)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("AP")
        valid = {b: e["mAP"][b] for b in bins if e["mAP"][b] is not None}
        if valid:
            b = min(valid, key=lambda k: valid[k])
            if worst is None or valid[b] < worst[1]:
                worst = (f"{what} {b}", valid[b])
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"AP per object size and aspect ratio ({result['protocol']}, IoU {result['iou_protocol']}); "
                 f"weakest for all classes: {worst[0] + ' (AP ' + _f(worst[1]) + ')' if worst else 'none'}",
                 fontsize=10)
    return _done(fig)


def plot_confusion(conf: dict, title: str):
    """Heatmap of the confusion matrix, each row normalised; counts written when it is small."""
    M = np.asarray(conf["matrix"], dtype=float)
    rows, cols = conf["rows"], conf["columns"]
    n = len(rows)
    size = min(max(5.0, 0.45 * n + 2.5), 30)
    fig, ax = subplots(figsize=(size + 1, size))
    with np.errstate(invalid="ignore", divide="ignore"):
        Mn = M / np.maximum(M.sum(axis=1, keepdims=True), 1)
    im = ax.imshow(Mn, cmap="Blues", vmin=0, vmax=1)
    if n <= 30:
        for i in range(n):
            for j in range(n):
                if M[i, j]:
                    ax.text(j, i, f"{int(M[i, j])}", ha="center", va="center", fontsize=7,
                            color="white" if Mn[i, j] > 0.5 else "black")
    fs = 8 if n <= 30 else 4
    ax.set_xticks(range(n))
    ax.set_xticklabels(cols, rotation=90, fontsize=fs)
    ax.set_yticks(range(n))
    ax.set_yticklabels(rows, fontsize=fs)
    ax.set_xlabel("detected class (missed: objects no detection found)")
    ax.set_ylabel("object hit (background: none)")
    off = M[:-1, :-1].copy()
    np.fill_diagonal(off, 0)
    if off.any():
        i, j = np.unravel_index(np.argmax(off), off.shape)
        worst = f"{rows[i]} detected as {cols[j]} ({int(off[i, j])})"
    else:
        worst = "none between classes"
    ax.set_title(f"{title}\nrow-normalised, at each class's best-F1 score; top confusion: {worst}", fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of the row")
    return _done(fig)


def plot_gallery(false_positives: list[dict], missed: list[dict], name: str, classes: list[str],
                 gts=None, dets=None, score_thr=None, per_row: int = 6):
    """Image crops: the highest-scoring false positives (red) and the missed objects (green), the
    other objects (thin green) and detections (thin orange, at or above ``score_thr``) around them
    when ``gts`` / ``dets`` are given. An image that cannot be read, or has more than
    :data:`GALLERY_MAX_PIXELS`, leaves its tile empty with a title saying why; returns None when
    no image could be read."""
    # matplotlib on first use only (import time)
    from matplotlib.patches import Rectangle

    items = [("fp", it) for it in false_positives if it.get("path")] + [("miss", it) for it in missed if it.get("path")]
    if not items:
        return None
    n_fp = sum(1 for k, _ in items if k == "fp")
    n_miss = len(items) - n_fp
    rows_fp = math.ceil(n_fp / per_row)
    rows_miss = math.ceil(n_miss / per_row)
    nrows = max(rows_fp + rows_miss, 1)
    fig, axes = subplots(nrows, per_row, figsize=(2.3 * per_row, 2.5 * nrows + 0.6), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    cache = {}
    drawn = 0
    for k, (kind, it) in enumerate(items):
        idx = k if kind == "fp" else (k - n_fp)
        r = (idx // per_row) + (0 if kind == "fp" else rows_fp)
        ax = axes[r, idx % per_row]
        img = _read(it["path"], cache)
        if isinstance(img, str):
            ax.set_title(img, fontsize=7)
            continue
        drawn += 1
        x1, y1, x2, y2 = it["box"]
        w, h = x2 - x1, y2 - y1
        lx, hx, ly, hy = min(x1, x2), max(x1, x2), min(y1, y2), max(y1, y2)   # an inverted box too
        m = 0.5 * max(hx - lx, hy - ly, 8)
        H, W = img.shape[:2]
        cx1, cy1 = int(max(0, math.floor(lx - m))), int(max(0, math.floor(ly - m)))
        cx2, cy2 = int(min(W, math.ceil(hx + m))), int(min(H, math.ceil(hy + m)))
        if cx2 <= cx1 or cy2 <= cy1:
            ax.set_title("box outside the image", fontsize=7)
            continue
        ax.imshow(img[cy1:cy2, cx1:cx2], extent=(cx1, cx2, cy2, cy1))
        i = it["image"]
        if gts is not None:
            for b in np.asarray(gts[i].get("boxes", np.zeros((0, 4))), float).reshape(-1, 4):
                ax.add_patch(Rectangle((b[0], b[1]), b[2] - b[0], b[3] - b[1], fill=False, ec="#33cc33", lw=0.7))
        if dets is not None and kind == "miss":
            d = dets[i]
            sc = np.asarray(d.get("scores", []), float).reshape(-1)
            for b, s in zip(np.asarray(d.get("boxes", np.zeros((0, 4))), float).reshape(-1, 4), sc):
                if score_thr is None or s >= score_thr:
                    ax.add_patch(Rectangle((b[0], b[1]), b[2] - b[0], b[3] - b[1], fill=False, ec="#ff9900", lw=0.7))
        ec = "#ff2222" if kind == "fp" else "#00ff00"
        ax.add_patch(Rectangle((x1, y1), w, h, fill=False, ec=ec, lw=2))
        ax.set_xlim(cx1, cx2)
        ax.set_ylim(cy2, cy1)
        if kind == "fp":
            ax.set_title(f"FP {it['score']:.2f} {it.get('hoiem') or ''}/{it.get('tide') or ''}"
                         + (" inverted" if w < 0 or h < 0 else ""), fontsize=8)
        else:
            ax.set_title(f"missed, best IoU {it['best_iou']:.2f}", fontsize=8)
        ax.text(0.02, 0.02, os.path.basename(it["path"]), transform=ax.transAxes, fontsize=5, color="white",
                bbox={"facecolor": "black", "alpha": 0.5, "pad": 1, "lw": 0})
    if drawn == 0:
        return None
    fig.suptitle(f"{name}: top {n_fp} false positives (red; type Hoiem/TIDE) and {n_miss} missed objects "
                 f"(green, largest first)", fontsize=10)
    return _done(fig)


def _read(path, cache) -> np.ndarray | str:
    """The image at ``path`` as an (H, W, 3) uint8 RGB array, EXIF orientation applied (as
    ``detector.io.images.load_image`` reads it, so the boxes fit), or why not (a short title)."""
    if path not in cache:
        cache[path] = _decode(path)
    return cache[path]


def _decode(path) -> np.ndarray | str:
    # Pillow on first use only, like matplotlib (import time)
    from PIL import Image, ImageOps

    if not os.path.isfile(path):        # missing, a folder, or a FIFO (opening one would hang)
        return "(no such image file)" if not os.path.exists(path) else "(not an image file)"
    try:
        with warnings.catch_warnings():
            # Pillow's DecompressionBombWarning: the size is checked against our limit first
            warnings.simplefilter("ignore")
            with Image.open(path) as img:
                w, h = img.size
                if w * h > GALLERY_MAX_PIXELS:
                    return f"(image too large: {w}x{h})"
                img.load()
                img = ImageOps.exif_transpose(img) or img
                return np.asarray(img.convert("RGB"))
    except Image.DecompressionBombError:    # Pillow's own limit (2 x Image.MAX_IMAGE_PIXELS)
        return "(image too large)"
    except MemoryError:
        return "(image too large for memory)"
    except (OSError, ValueError, SyntaxError, EOFError):
        return "(unreadable image)"


def _f(x):
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"
