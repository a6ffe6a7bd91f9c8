"""Felzenszwalb & Huttenlocher's graph segmentation (IJCV 2004), a numba port: 8-neighbour
grid, joint Euclidean colour distance, edges sorted by a counting sort. Selective search's
initial regions (:mod:`proposals.selective_search`)."""

from __future__ import annotations

import cv2
import numpy as np
from numba import njit

SIGMA = 0.8


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
