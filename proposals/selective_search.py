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

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import cv2
import numpy as np

from backbone.errors import UserError

from .felzenszwalb import QUANT, SIGMA, felzenszwalb, graph_edges
from .grouping import (
    COLOUR_BINS,
    TEXTURE_BINS,
    TEXTURE_ORIENTATIONS,
    _group,
    _neighbours,
    _region_features,
    _texture_bins,
)
from .selectivesearch_package import _selectivesearch_package

__all__ = [
    "BACKENDS", "COLOUR_BINS", "MAX_ASPECT_AREA", "MAX_PIXELS", "PRESETS", "QUANT", "SIGMA", "TEXTURE_BINS",
    "TEXTURE_ORIENTATIONS", "Strategy", "as_rgb_uint8", "convert_colour", "felzenszwalb", "graph_edges",
    "rank_boxes", "resize_to", "selective_search", "strategies", "unique_first", "working_size",
]

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
