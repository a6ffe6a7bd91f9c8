"""Selective search (Uijlings et al., IJCV 2013) as R-CNN runs it, with our own fast engine.

Pipeline per image (all of it vectorised numpy/OpenCV or numba, no per-pixel Python):

1. resize to the working width (R-CNN: 500 px; the 20 px minimum box size is at that scale);
2. per colour space (HSV, Lab, rgI, H, I) and Felzenszwalb k (min size = k unless the preset or
   the caller fixes it, sigma 0.8, both times ``superpixel_scale``; the paper's "superpixel size
   x2" is ``superpixel_scale=2``):
   the initial regions (:func:`felzenszwalb`, a numba port of Felzenszwalb & Huttenlocher's
   graph segmentation: 8-neighbour grid, joint Euclidean colour distance, counting sort);
3. region features kept incrementally: colour histograms (25 bins per channel), texture
   histograms (Gaussian derivatives, sigma 1, 8 orientations x 10 bins per channel), size,
   bounding box; all L1-normalised histograms, merged as size-weighted averages;
4. hierarchical grouping per similarity (any sum of colour / texture / size / fill): the most
   similar pair of neighbours is merged until one region is left (a heap with lazy deletion);
5. the boxes of every region of every strategy, ranked with R-CNN's pseudo-random ranking
   (each strategy's hierarchy position times a uniform random number), boxes smaller than
   ``min_box_width`` dropped, duplicates removed (first occurrence kept), scaled back to the
   original image.

Presets (R-CNN's ``fast`` mode is the default): see :data:`PRESETS`.
"""

from __future__ import annotations

import heapq
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import cv2
import numpy as np
from numba import njit

from backbone.errors import UserError

# colour spaces, Felzenszwalb k, min size (absent: min size = k) and similarity sets of each
# preset. C colour, T texture, S size, F fill.
PRESETS: dict[str, dict] = {
    # Uijlings et al.'s single best strategy
    "single": {"color_spaces": ("hsv",), "ks": (100,), "similarities": ("CTSF",)},
    # R-CNN / Uijlings "fast": 2 colour spaces x 2 k x 2 similarity sets = 8 strategies
    "fast": {"color_spaces": ("hsv", "lab"), "ks": (50, 100), "similarities": ("CTSF", "TSF")},
    # Uijlings "quality": 5 colour spaces x 4 k x 4 similarity sets = 80 strategies
    "quality": {
        "color_spaces": ("hsv", "lab", "rgi", "h", "i"),
        "ks": (50, 100, 150, 300),
        "similarities": ("CTSF", "TSF", "F", "S"),
    },
    # OpenCV ximgproc switchToSelectiveSearchFast() at its defaults (base_k 150, inc_k 150,
    # k = base_k .. base_k + 2 inc_k; createGraphSegmentation's min_size 100 for every k;
    # sigma 0.8; HSV and Lab; colour+fill+texture+size and fill+texture+size): 12 strategies.
    # OpenCV neither resizes the image nor drops small boxes: for the same settings pass
    # working_width=0, min_box_width=0.
    "opencv_fast": {"color_spaces": ("hsv", "lab"), "ks": (150, 300, 450), "min_size": 100,
                    "similarities": ("CTSF", "TSF")},
}
BACKENDS = ("ours", "selectivesearch")
SIGMA = 0.8
COLOUR_BINS = 25
TEXTURE_BINS = 10
TEXTURE_ORIENTATIONS = 8
# when working_width is 0 (no resize), larger images are still shrunk to this many pixels
MAX_PIXELS = 2_000_000
# at most this many times working_width**2 pixels (very tall images keep a bounded cost)
MAX_ASPECT_AREA = 4


@dataclass(frozen=True)
class Strategy:
    color_space: str
    k: float
    similarity: str  # letters from "CTSF"
    min_size: float  # Felzenszwalb minimum region size in pixels


def strategies(preset: str, superpixel_scale: float = 1.0, ks=None, min_size: float | None = None) -> list[Strategy]:
    """The (colour space, k, similarity, min size) strategies of ``preset``.

    ``ks`` (a sequence of k values) replaces the preset's k values, ``min_size`` its minimum
    region size (default: the preset's, else min size = k). Both are then multiplied by
    ``superpixel_scale``."""
    if preset not in PRESETS:
        raise UserError(f"unknown selective search preset {preset!r}: choose one of {', '.join(PRESETS)}")
    if not superpixel_scale > 0:
        raise UserError(f"superpixel_scale must be positive, got {superpixel_scale!r}")
    p = PRESETS[preset]
    if ks is None:
        ks = p["ks"]
    else:
        ks = [ks] if np.ndim(ks) == 0 else list(ks)
        if not ks or not all(isinstance(k, (int, float, np.number)) and k > 0 for k in ks):
            raise UserError(f"selective search ks must be a non-empty list of positive numbers, got {ks!r}")
    if min_size is None:
        min_size = p.get("min_size")
    elif not (isinstance(min_size, (int, float, np.number)) and min_size >= 0):
        raise UserError(f"selective search min_size must be a number >= 0, got {min_size!r}")
    return [Strategy(cs, float(k) * superpixel_scale, sim,
                     (float(k) if min_size is None else float(min_size)) * superpixel_scale)
            for cs in p["color_spaces"] for k in ks for sim in p["similarities"]]


# ----------------------------------------------------------------------------- input


def as_rgb_uint8(image) -> np.ndarray:
    """Validate an image: (H, W, 3) uint8 RGB; (H, W), (H, W, 1) grey and (H, W, 4) RGBA accepted."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise UserError(f"image must be uint8 (got {image.dtype})")
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise UserError(f"image must be (H, W), (H, W, 3) or (H, W, 4), got shape {image.shape}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise UserError(f"image is empty (shape {image.shape})")
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    elif image.shape[2] == 4:
        image = image[:, :, :3]
    return np.ascontiguousarray(image)


def working_size(width: int, height: int, working_width: int | None) -> tuple[int, int]:
    """(w, h) the engine segments at: ``working_width`` wide (R-CNN resizes up and down),
    the area bounded by MAX_ASPECT_AREA * working_width**2; no resize when working_width is
    0/None except above MAX_PIXELS."""
    if working_width:
        scale = working_width / width
        max_area = MAX_ASPECT_AREA * working_width * working_width
    else:
        scale = 1.0
        max_area = MAX_PIXELS
    if width * height * scale * scale > max_area:
        scale = (max_area / (width * height)) ** 0.5
    return max(1, int(round(width * scale))), max(1, int(round(height * scale)))


def resize_to(image: np.ndarray, w: int, h: int) -> np.ndarray:
    if (w, h) == (image.shape[1], image.shape[0]):
        return image
    shrink = w * h < image.shape[0] * image.shape[1]
    return cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def convert_colour(rgb: np.ndarray, space: str) -> np.ndarray:
    """(H, W, C) uint8 image in colour space ``space`` (every channel over 0..255)."""
    if space == "rgb":
        return rgb
    if space == "hsv":
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV_FULL)
    if space == "lab":
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2Lab)
    if space == "h":
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV_FULL)[:, :, :1].copy()
    if space == "i":
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)[:, :, None]
    if space == "rgi":
        f = rgb.astype(np.float32)
        s = f.sum(axis=2, keepdims=True)
        rg = np.where(s > 0, f[:, :, :2] / np.maximum(s, 1.0), 1.0 / 3.0) * 255.0
        return np.concatenate([rg, s / 3.0], axis=2).round().clip(0, 255).astype(np.uint8)
    raise UserError(f"unknown colour space {space!r}")


# ----------------------------------------------------------------------------- Felzenszwalb


@njit(nogil=True, cache=True)
def _find(parent, x):
    root = x
    while parent[root] != root:
        root = parent[root]
    while parent[x] != root:  # path compression
        nxt = parent[x]
        parent[x] = root
        x = nxt
    return root


@njit(nogil=True, cache=True)
def _sorted_edges(img, quant):
    """The 8-neighbour grid graph of a smoothed image: edge ends and quantised weights, sorted by
    weight (stable). Shared by every k of one colour space."""
    H, W, C = img.shape
    P = H * W
    # 8-neighbourhood: right, down, down-right, up-right (each undirected edge once)
    E = 4 * P
    ea = np.empty(E, np.int32)
    eb = np.empty(E, np.int32)
    eq = np.empty(E, np.int32)
    n = 0
    for y in range(H):
        for x in range(W):
            p = y * W + x
            for d in range(4):
                if d == 0:
                    yy, xx = y, x + 1
                elif d == 1:
                    yy, xx = y + 1, x
                elif d == 2:
                    yy, xx = y + 1, x + 1
                else:
                    yy, xx = y - 1, x + 1
                if yy < 0 or yy >= H or xx >= W:
                    continue
                s = 0.0
                for c in range(C):
                    diff = img[y, x, c] - img[yy, xx, c]
                    s += diff * diff
                ea[n] = p
                eb[n] = yy * W + xx
                eq[n] = int(np.sqrt(s) * quant + 0.5)
                n += 1
    # counting sort of the quantised weights (stable)
    nbins = 0
    for i in range(n):
        if eq[i] + 1 > nbins:
            nbins = eq[i] + 1
    counts = np.zeros(nbins + 1, np.int64)
    for i in range(n):
        counts[eq[i] + 1] += 1
    for b in range(nbins):
        counts[b + 1] += counts[b]
    # the edges themselves are moved into weight order, so that the merging passes (run once per
    # k, twice each) read them sequentially instead of through an index (cache misses)
    sa = np.empty(n, np.int32)
    sb = np.empty(n, np.int32)
    sq = np.empty(n, np.int32)
    for i in range(n):
        j = counts[eq[i]]
        counts[eq[i]] += 1
        sa[j] = ea[i]
        sb[j] = eb[i]
        sq[j] = eq[i]
    return sa, sb, sq


@njit(nogil=True, cache=True)
def _segment_edges(ea, eb, eq, P, k, min_size, quant):
    """Felzenszwalb & Huttenlocher's merging over edges sorted by weight -> (P,) labels, count."""
    n = eq.shape[0]
    parent = np.arange(P).astype(np.int32)
    rank = np.zeros(P, np.int32)
    size = np.ones(P, np.int32)
    thresh = np.full(P, k, np.float64)
    for e in range(n):
        a = _find(parent, ea[e])
        b = _find(parent, eb[e])
        if a == b:
            continue
        w = eq[e] / quant
        if w <= thresh[a] and w <= thresh[b]:
            if rank[a] < rank[b]:
                a, b = b, a
            parent[b] = a
            size[a] += size[b]
            if rank[a] == rank[b]:
                rank[a] += 1
            thresh[a] = w + k / size[a]
    # small components join their cheapest neighbour (edges in increasing weight)
    for e in range(n):
        a = _find(parent, ea[e])
        b = _find(parent, eb[e])
        if a != b and (size[a] < min_size or size[b] < min_size):
            if rank[a] < rank[b]:
                a, b = b, a
            parent[b] = a
            size[a] += size[b]
            if rank[a] == rank[b]:
                rank[a] += 1
    labels = np.empty(P, np.int32)
    remap = np.full(P, -1, np.int32)
    count = 0
    for p in range(P):
        r = _find(parent, p)
        if remap[r] < 0:
            remap[r] = count
            count += 1
        labels[p] = remap[r]
    return labels, count


QUANT = 32.0  # edge weights sorted in steps of 1/32 intensity (a counting sort)


def graph_edges(image: np.ndarray, sigma: float = SIGMA):
    """The sorted grid graph of a uint8 (H, W, C) image smoothed with ``sigma`` (reusable for
    several k)."""
    img = image.astype(np.float32)
    if img.ndim == 2:
        img = img[:, :, None]
    if sigma > 0:
        img = cv2.GaussianBlur(img, (0, 0), sigma)
        if img.ndim == 2:
            img = img[:, :, None]
    return _sorted_edges(np.ascontiguousarray(img), QUANT)


def felzenszwalb(image: np.ndarray, k: float, min_size: float, sigma: float = SIGMA, edges=None) -> np.ndarray:
    """Felzenszwalb & Huttenlocher segmentation of a uint8 (H, W, C) image -> (H, W) int32 labels
    0..R-1. ``k`` is at the 0..255 intensity scale (scikit-image's ``scale`` is the same k).
    ``edges``: :func:`graph_edges` of the same image and sigma, to skip building them again."""
    if edges is None:
        edges = graph_edges(image, sigma)
    ea, eb, eq = edges
    P = image.shape[0] * image.shape[1]
    labels, _ = _segment_edges(ea, eb, eq, P, float(k), int(round(min_size)), QUANT)
    return labels.reshape(image.shape[:2])


# ----------------------------------------------------------------------------- region features


def _texture_bins(image: np.ndarray) -> np.ndarray:
    """(H, W, 8C) uint8 texture bin (0..9) of every pixel: Gaussian derivative (sigma 1) in 8
    orientations per channel, the positive part, binned over 0..max of that channel/orientation."""
    H, W, C = image.shape
    out = np.empty((H, W, TEXTURE_ORIENTATIONS * C), np.uint8)
    for c in range(C):
        g = cv2.GaussianBlur(image[:, :, c].astype(np.float32), (0, 0), 1.0)
        gx = cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=1)
        gy = cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=1)
        for o in range(TEXTURE_ORIENTATIONS // 2):
            theta = np.pi * o / (TEXTURE_ORIENTATIONS // 2)
            d = np.cos(theta) * gx + np.sin(theta) * gy
            for sign, j in ((1.0, o), (-1.0, o + TEXTURE_ORIENTATIONS // 2)):
                v = np.maximum(sign * d, 0.0)
                m = float(v.max())
                b = (v * (TEXTURE_BINS / m)).astype(np.int32) if m > 0 else np.zeros_like(v, np.int32)
                out[:, :, c * TEXTURE_ORIENTATIONS + j] = np.minimum(b, TEXTURE_BINS - 1)
    return out


@njit(nogil=True, cache=True)
def _region_features(labels, R, colour_bins, texture_bins):
    """Per region: colour and texture histograms (L1-normalised), size, bbox (x1, y1, x2, y2)."""
    H, W = labels.shape
    C = colour_bins.shape[2]
    T = texture_bins.shape[2]
    ch = np.zeros((2 * R, C * 25), np.float32)
    th = np.zeros((2 * R, T * 10), np.float32)
    size = np.zeros(2 * R, np.float64)
    box = np.empty((2 * R, 4), np.int32)
    for r in range(R):
        box[r, 0] = W
        box[r, 1] = H
        box[r, 2] = 0
        box[r, 3] = 0
    for y in range(H):
        for x in range(W):
            r = labels[y, x]
            size[r] += 1.0
            if x < box[r, 0]:
                box[r, 0] = x
            if y < box[r, 1]:
                box[r, 1] = y
            if x + 1 > box[r, 2]:
                box[r, 2] = x + 1
            if y + 1 > box[r, 3]:
                box[r, 3] = y + 1
            for c in range(C):
                ch[r, c * 25 + colour_bins[y, x, c]] += 1.0
            for t in range(T):
                th[r, t * 10 + texture_bins[y, x, t]] += 1.0
    for r in range(R):
        s = size[r]
        if s > 0:
            inv_c = np.float32(1.0 / (s * C))
            inv_t = np.float32(1.0 / (s * T))
            for i in range(C * 25):
                ch[r, i] *= inv_c
            for i in range(T * 10):
                th[r, i] *= inv_t
    return ch, th, size, box


def _neighbours(labels: np.ndarray, R: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unique pairs (a < b) of 4-adjacent regions as two int32 arrays."""
    keys = []
    for u, v in ((labels[:, :-1], labels[:, 1:]), (labels[:-1, :], labels[1:, :])):
        m = u != v
        a, b = u[m].astype(np.int64), v[m].astype(np.int64)
        keys.append(np.minimum(a, b) * R + np.maximum(a, b))
    keys = np.unique(np.concatenate(keys))
    return (keys // R).astype(np.int32), (keys % R).astype(np.int32)


# ----------------------------------------------------------------------------- grouping


@njit(nogil=True, cache=True)
def _similarity(a, b, ch, th, size, box, im_size, use_c, use_t, use_s, use_f):
    s = 0.0
    if use_c:
        acc = 0.0
        for i in range(ch.shape[1]):
            acc += min(ch[a, i], ch[b, i])
        s += acc
    if use_t:
        acc = 0.0
        for i in range(th.shape[1]):
            acc += min(th[a, i], th[b, i])
        s += acc
    if use_s:
        s += 1.0 - (size[a] + size[b]) / im_size
    if use_f:
        bw = max(box[a, 2], box[b, 2]) - min(box[a, 0], box[b, 0])
        bh = max(box[a, 3], box[b, 3]) - min(box[a, 1], box[b, 1])
        s += 1.0 - (bw * bh - size[a] - size[b]) / im_size
    return s


@njit(nogil=True, cache=True)
def _group(ch, th, size, box, R, na, nb, im_size, use_c, use_t, use_s, use_f):
    """Hierarchical grouping: merge the most similar neighbours until one region per connected
    component is left. Arrays have 2R rows, the first R filled; merged region t is row t.
    Returns the number of regions (initial + merged); boxes are box[:n] in merge order."""
    # adjacency lists (numba sets degrade under many add/discard cycles)
    adj = [[np.int32(0)] for _ in range(2 * R)]
    for lst in adj:
        lst.pop()
    heap = [(0.0, np.int32(0), np.int32(0))]
    heap.pop()
    for e in range(na.shape[0]):
        a = na[e]
        b = nb[e]
        adj[a].append(b)
        adj[b].append(a)
        heap.append((-_similarity(a, b, ch, th, size, box, im_size, use_c, use_t, use_s, use_f), a, b))
    heapq.heapify(heap)
    alive = np.zeros(2 * R, np.bool_)
    alive[:R] = True
    mark = np.full(2 * R, -1, np.int64)
    t = R
    while len(heap) > 0:
        item = heapq.heappop(heap)
        i = item[1]
        j = item[2]
        if not alive[i] or not alive[j]:
            continue
        si = size[i]
        sj = size[j]
        st = si + sj
        size[t] = st
        wi = np.float32(si / st)
        wj = np.float32(sj / st)
        for q in range(ch.shape[1]):
            ch[t, q] = wi * ch[i, q] + wj * ch[j, q]
        for q in range(th.shape[1]):
            th[t, q] = wi * th[i, q] + wj * th[j, q]
        box[t, 0] = min(box[i, 0], box[j, 0])
        box[t, 1] = min(box[i, 1], box[j, 1])
        box[t, 2] = max(box[i, 2], box[j, 2])
        box[t, 3] = max(box[i, 3], box[j, 3])
        alive[i] = False
        alive[j] = False
        alive[t] = True
        tt = np.int32(t)
        new = adj[t]
        for n in adj[i]:
            if n != j and mark[n] != t:
                mark[n] = t
                new.append(n)
        for n in adj[j]:
            if n != i and mark[n] != t:
                mark[n] = t
                new.append(n)
        for n in new:
            lst = adj[n]
            k = 0
            for q in range(len(lst)):
                if lst[q] != i and lst[q] != j:
                    lst[k] = lst[q]
                    k += 1
            while len(lst) > k:
                lst.pop()
            lst.append(tt)
            heapq.heappush(heap, (-_similarity(tt, n, ch, th, size, box, im_size, use_c, use_t, use_s, use_f), tt, n))
        while len(adj[i]) > 0:
            adj[i].pop()
        while len(adj[j]) > 0:
            adj[j].pop()
        t += 1
    return t


def _segment_strategy_group(image: np.ndarray, space: str, k: float, min_size: float, sims: list[str],
                            texture_cache: dict) -> list[np.ndarray]:
    """All (colour space, k) work: one segmentation (the sorted graph and texture bins shared
    per colour space through ``texture_cache``), features once, one grouping per similarity
    set. Returns one int32 (n, 4) box array per similarity set, in hierarchy order."""
    cimg = convert_colour(image, space)
    if ("edges", space) not in texture_cache:
        texture_cache[("edges", space)] = graph_edges(cimg, SIGMA)
    labels = felzenszwalb(cimg, k, min_size, SIGMA, edges=texture_cache[("edges", space)])
    R = int(labels.max()) + 1
    if space not in texture_cache:
        texture_cache[space] = _texture_bins(cimg)
    tbins = texture_cache[space]
    cbins = (cimg.astype(np.int32) * COLOUR_BINS // 256).astype(np.uint8)
    ch0, th0, size0, box0 = _region_features(labels, R, cbins, tbins)
    na, nb = _neighbours(labels, R)
    im_size = float(labels.size)
    out = []
    for sim in sims:
        ch, th, size, box = ch0.copy(), th0.copy(), size0.copy(), box0.copy()
        n = _group(ch, th, size, box, R, na, nb, im_size,
                   "C" in sim, "T" in sim, "S" in sim, "F" in sim)
        out.append(box[:n].copy())
    return out


def rank_boxes(per_strategy: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """R-CNN's pseudo-random ranking: within a strategy the last merged region has priority 1,
    the first initial region priority n; each priority times U(0, 1); ascending sort."""
    if not per_strategy:
        return np.zeros((0, 4), np.int32)
    boxes = np.concatenate(per_strategy, axis=0)
    priority = np.concatenate([np.arange(len(b), 0, -1, dtype=np.float64) for b in per_strategy])
    priority *= rng.random(len(priority))
    return boxes[np.argsort(priority, kind="stable")]


def unique_first(boxes: np.ndarray) -> np.ndarray:
    """Remove exact duplicate rows, keeping each box's first occurrence in its rank order."""
    if len(boxes) == 0:
        return boxes
    _, first = np.unique(boxes, axis=0, return_index=True)
    return boxes[np.sort(first)]


def _ours(work: np.ndarray, strats: list[Strategy], threads: int) -> list[np.ndarray]:
    jobs: dict[tuple[str, float, float], list[str]] = {}
    for s in strats:
        jobs.setdefault((s.color_space, s.k, s.min_size), []).append(s.similarity)
    texture_cache: dict = {}
    keys = list(jobs)
    if threads > 1 and len(keys) > 1:
        # numba and OpenCV release the GIL; texture bins computed first so threads share them
        for space in dict.fromkeys(key[0] for key in keys):
            cimg = convert_colour(work, space)
            texture_cache[space] = _texture_bins(cimg)
            texture_cache[("edges", space)] = graph_edges(cimg, SIGMA)
        with ThreadPoolExecutor(threads) as pool:
            results = list(pool.map(lambda key: _segment_strategy_group(work, *key, jobs[key], texture_cache), keys))
    else:
        results = [_segment_strategy_group(work, *key, jobs[key], texture_cache) for key in keys]
    return [b for group in results for b in group]


def _selectivesearch_package(work: np.ndarray, superpixel_scale: float) -> list[np.ndarray]:
    """The PyPI ``selectivesearch`` package at its README settings (scale 500, sigma 0.9,
    min size 10; scale and min size times ``superpixel_scale``). One strategy, so its regions
    keep their hierarchy order for the ranking."""
    import selectivesearch  # the optional second backend (and skimage with it): imported only when chosen

    with warnings.catch_warnings():  # the package feeds floats to skimage's LBP, which warns each call
        warnings.filterwarnings("ignore", message=".*local_binary_pattern.*")
        _, regions = selectivesearch.selective_search(
            work, scale=500 * superpixel_scale, sigma=0.9, min_size=int(round(10 * superpixel_scale)))
    boxes = np.array([[x, y, x + w + 1, y + h + 1] for r in regions for (x, y, w, h) in [r["rect"]]],
                     dtype=np.int32).reshape(-1, 4)
    return [boxes]


def selective_search(
    image: np.ndarray,
    preset: str = "fast",
    superpixel_scale: float = 1.0,
    working_width: int = 500,
    min_box_width: float = 20.0,
    backend: str = "ours",
    max_boxes: int | None = None,
    *,
    seed: int = 0,
    threads: int = 1,
    ks=None,
    min_size: float | None = None,
) -> np.ndarray:
    """Selective search boxes of one image.

    image: (H, W, 3) uint8 RGB ((H, W) grey and RGBA accepted).
    preset: ``single`` | ``fast`` (R-CNN) | ``quality`` | ``opencv_fast`` (see :data:`PRESETS`).
    superpixel_scale: multiplies Felzenszwalb k and min size (the paper's setting: 2).
    ks: Felzenszwalb k values replacing the preset's (e.g. ``(150, 300, 450)``).
    min_size: Felzenszwalb minimum region size for every k, replacing the preset's (default:
        min size = k, or the preset's fixed value).
    working_width: the image is resized to this width first (0: keep the size, up to
        MAX_PIXELS); ``min_box_width`` is at that scale and applies to width and height
        (clamped to the working image so the whole-image box always survives; 0 keeps every
        box, as OpenCV does).
    backend: ``ours`` or ``selectivesearch`` (the PyPI package; ignores ``preset``).
    max_boxes: keep the first ``max_boxes`` after ranking.
    seed: the pseudo-random ranking's seed (deterministic per image).
    threads: (colour space, k) groups run in this many threads.

    Returns (N, 4) float32 ``x1, y1, x2, y2`` in the original image's pixels (0-based, x2
    exclusive), best-ranked first.
    """
    if backend not in BACKENDS:
        raise UserError(f"unknown selective search backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    strats = strategies(preset, superpixel_scale, ks, min_size)  # also validates them
    if working_width is not None and working_width < 0:
        raise UserError(f"working_width must be >= 0, got {working_width}")
    rgb = as_rgb_uint8(image)
    H, W = rgb.shape[:2]
    ww, wh = working_size(W, H, working_width)
    work = resize_to(rgb, ww, wh)
    if backend == "ours":
        per_strategy = _ours(work, strats, threads)
    else:
        per_strategy = _selectivesearch_package(work, superpixel_scale)
    boxes = rank_boxes(per_strategy, np.random.default_rng(seed))
    min_w = min(float(min_box_width), ww, wh)
    keep = ((boxes[:, 2] - boxes[:, 0]) >= min_w) & ((boxes[:, 3] - boxes[:, 1]) >= min_w)
    boxes = unique_first(boxes[keep])
    if max_boxes is not None:
        boxes = boxes[: max(0, int(max_boxes))]
    out = boxes.astype(np.float32)
    out[:, [0, 2]] *= W / ww
    out[:, [1, 3]] *= H / wh
    out[:, [0, 2]] = out[:, [0, 2]].clip(0, W)
    out[:, [1, 3]] = out[:, [1, 3]].clip(0, H)
    return out
