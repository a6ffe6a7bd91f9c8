"""Selective search's region features and hierarchical grouping (numba): colour and texture
histograms, size and bounding box per region, the neighbour pairs, and the merge of the most
similar pair of neighbours until one region is left (a heap with lazy deletion)."""

from __future__ import annotations

import heapq

import cv2
import numpy as np
from numba import njit

COLOUR_BINS = 25
TEXTURE_BINS = 10
TEXTURE_ORIENTATIONS = 8


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
