import numpy as np
import pytest

from backbone.errors import UserError
import importlib

from proposals.selective_search import (
    felzenszwalb, rank_boxes, selective_search, strategies, unique_first, working_size,
)

ssmod = importlib.import_module("proposals.selective_search")

# BloodImage_00000's 20 ground-truth boxes (its VOC file, converted to 0-based xyxy)
GT = np.array([[259, 176, 491, 376], [77, 335, 184, 435], [62, 236, 169, 336], [213, 361, 320, 461],
               [413, 351, 506, 445], [554, 355, 640, 455], [468, 411, 567, 480], [0, 332, 87, 437],
               [3, 405, 95, 480], [154, 73, 247, 174], [10, 83, 104, 162], [533, 38, 639, 139],
               [546, 194, 640, 295], [387, 10, 481, 111], [170, 174, 264, 275], [259, 0, 374, 83],
               [228, 90, 343, 174], [68, 143, 184, 235], [481, 130, 594, 230], [367, 88, 464, 176]], np.float32)


def iou(a, b):
    from eval.proposal_recall import box_iou
    return box_iou(a, b)


def test_boxes_valid_ranked_deterministic(blood_image):
    b = selective_search(blood_image)
    assert b.dtype == np.float32 and b.ndim == 2 and b.shape[1] == 4
    assert 500 < len(b) < 5000
    assert (b[:, 0] >= 0).all() and (b[:, 1] >= 0).all() and (b[:, 2] <= 640).all() and (b[:, 3] <= 480).all()
    assert (b[:, 2] > b[:, 0]).all() and (b[:, 3] > b[:, 1]).all()
    # min box width 20 px at the 500 px working width = 25.6 px here
    assert ((b[:, 2] - b[:, 0]) >= 25.6 - 1e-3).all() and ((b[:, 3] - b[:, 1]) >= 25.6 - 1e-3).all()
    assert len(np.unique(b, axis=0)) == len(b)
    best = iou(GT, b).max(axis=1)
    assert (best >= 0.5).mean() >= 0.9 and best.mean() > 0.7


def test_deterministic_seeded_ranking(blood_small):
    b = selective_search(blood_small)
    assert np.array_equal(b, selective_search(blood_small))
    other = selective_search(blood_small, seed=1)
    assert not np.array_equal(b, other)  # ranking is random, seeded
    assert np.array_equal(np.unique(b, axis=0), np.unique(other, axis=0))


def test_superpixel_scale_two_cuts_boxes(blood_small):
    n1 = len(selective_search(blood_small, superpixel_scale=1, working_width=0))
    n2 = len(selective_search(blood_small, superpixel_scale=2, working_width=0))
    assert n2 < 0.75 * n1


def test_threads_same_boxes(blood_small):
    assert np.array_equal(selective_search(blood_small, threads=2, working_width=0),
                          selective_search(blood_small, threads=1, working_width=0))


def test_presets(blood_small):
    tiny = blood_small[::2, ::2].copy()
    single = selective_search(tiny, preset="single", working_width=0)
    fast = selective_search(tiny, preset="fast", working_width=0)
    quality = selective_search(tiny, preset="quality", working_width=0)
    assert 0 < len(single) < len(fast) < len(quality)
    assert len(strategies("fast")) == 8 and len(strategies("quality")) == 80
    assert [s.k for s in strategies("fast", 2.0)][:2] == [100.0, 100.0]


def test_opencv_fast_preset_matches_ximgproc():
    # opencv_contrib ximgproc switchToSelectiveSearchFast(base_k=150, inc_k=150, sigma=0.8):
    # k = 150, 300, 450 (k <= base_k + 2 inc_k), createGraphSegmentation's min_size 100,
    # HSV and Lab, colour+fill+texture+size and fill+texture+size
    st = strategies("opencv_fast")
    assert len(st) == 12
    assert sorted({s.k for s in st}) == [150.0, 300.0, 450.0] and {s.min_size for s in st} == {100.0}
    assert {s.color_space for s in st} == {"hsv", "lab"} and {s.similarity for s in st} == {"CTSF", "TSF"}
    # OpenCV's "2x" row: base_k = inc_k = 300, min size still 100
    st2 = strategies("opencv_fast", ks=(300, 600, 900))
    assert sorted({s.k for s in st2}) == [300.0, 600.0, 900.0] and {s.min_size for s in st2} == {100.0}
    # the other presets keep min size = k; superpixel_scale multiplies both
    assert all(s.min_size == s.k for s in strategies("fast", 2.0))
    assert {(s.k, s.min_size) for s in strategies("fast", 2.0, ks=[30], min_size=10)} == {(60.0, 20.0)}


def test_explicit_ks_and_min_size_reach_the_segmentation(blood_small, monkeypatch):
    tiny = blood_small[::2, ::2].copy()
    calls = []
    real = ssmod.felzenszwalb

    def spy(image, k, min_size, sigma=ssmod.SIGMA, **kw):
        calls.append((k, min_size))
        return real(image, k, min_size, sigma, **kw)

    monkeypatch.setattr(ssmod, "felzenszwalb", spy)
    default = selective_search(tiny, working_width=0)
    assert sorted(set(calls)) == [(50.0, 50.0), (100.0, 100.0)]
    calls.clear()
    assert np.array_equal(selective_search(tiny, working_width=0, ks=(50, 100)), default)
    calls.clear()
    few = selective_search(tiny, "opencv_fast", working_width=0, ks=[40, 80], min_size=60)
    assert sorted(set(calls)) == [(40.0, 60.0), (80.0, 60.0)] and len(few) > 0


def test_min_box_width_zero_keeps_small_boxes(blood_small):
    kept = selective_search(blood_small, working_width=0, min_box_width=0)
    dropped = selective_search(blood_small, working_width=0, min_box_width=20)
    assert len(kept) > len(dropped) and ((kept[:, 2] - kept[:, 0]) < 20).any()


@pytest.mark.parametrize("kwargs, msg", [
    ({"ks": []}, "ks"), ({"ks": [100, -1]}, "ks"), ({"ks": ["a"]}, "ks"), ({"min_size": -1}, "min_size"),
])
def test_bad_ks_and_min_size(kwargs, msg):
    with pytest.raises(UserError, match=msg):
        selective_search(np.zeros((8, 8, 3), np.uint8), **kwargs)


def test_max_boxes(blood_small):
    full = selective_search(blood_small, working_width=0)
    assert np.array_equal(selective_search(blood_small, max_boxes=10, working_width=0), full[:10])


def test_felzenszwalb_regions():
    img = np.zeros((40, 60, 3), np.uint8)
    assert felzenszwalb(img, 50, 50).max() == 0
    img[:, 30:] = 255
    lab = felzenszwalb(img, 50, 50)
    assert lab.max() == 1 and len(np.unique(lab[:, :30])) == 1 and lab[0, 0] != lab[0, 59]
    # min size is enforced
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (50, 50, 3), dtype=np.uint8)
    lab = felzenszwalb(noise, 10, 30)
    assert np.bincount(lab.ravel()).min() >= 30


def test_every_region_of_a_strategy_is_a_box():
    # two colour halves: 2 initial regions, 1 merge -> 3 boxes (left, right, whole)
    img = np.zeros((100, 200, 3), np.uint8)
    img[:, 100:] = (200, 30, 30)
    out = ssmod._segment_strategy_group(img, "hsv", 500, 500, ["CTSF"], {})  # min size 500: no edge strips
    assert sorted(map(tuple, out[0].tolist())) == [(0, 0, 100, 100), (0, 0, 200, 100), (100, 0, 200, 100)]


def test_grayscale_and_rgba(blood_small):
    grey = blood_small[:, :, 1]
    a = selective_search(grey, working_width=0)
    b = selective_search(np.repeat(grey[:, :, None], 3, axis=2), working_width=0)
    assert np.array_equal(a, b) and len(a) > 0
    rgba = np.dstack([blood_small, np.full(blood_small.shape[:2], 255, np.uint8)])
    assert np.array_equal(selective_search(rgba, working_width=0), selective_search(blood_small, working_width=0))


@pytest.mark.parametrize("shape", [(1, 1, 3), (5, 5, 3), (8, 300, 3), (300, 6, 3), (4, 4)])
def test_tiny_images(shape):
    img = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    b = selective_search(img)
    assert len(b) >= 1
    H, W = shape[:2]
    assert (b[:, 2] <= W + 1e-4).all() and (b[:, 3] <= H + 1e-4).all() and (b[:, :2] >= 0).all()


def test_single_colour_gives_the_whole_image():
    b = selective_search(np.full((240, 320, 3), 77, np.uint8))
    assert b.tolist() == [[0.0, 0.0, 320.0, 240.0]]


def test_huge_image_is_resized_before_segmentation(monkeypatch):
    seen = []
    real = ssmod.felzenszwalb

    def spy(image, k, min_size, sigma=ssmod.SIGMA, **kw):
        seen.append(image.shape[:2])
        return real(image, k, min_size, sigma, **kw)

    monkeypatch.setattr(ssmod, "felzenszwalb", spy)
    img = np.zeros((3000, 4000, 3), np.uint8)
    img[:, 2000:] = 200
    img[1000:1500, 500:1000] = (0, 90, 250)
    b = selective_search(img)
    assert seen and all(s == (375, 500) for s in seen)
    assert np.isclose(b[:, 2].max(), 4000) and np.isclose(b[:, 3].max(), 3000)
    # the blue square comes back in original pixels
    assert iou(np.array([[500, 1000, 1000, 1500]], np.float32), b).max() > 0.95


def test_working_size_bounds():
    assert working_size(640, 480, 500) == (500, 375)
    assert working_size(100, 50, 500) == (500, 250)  # R-CNN resizes up too
    w, h = working_size(10, 100000, 500)
    assert w * h <= 4 * 500 * 500 + 1000
    assert working_size(640, 480, 0) == (640, 480)
    w, h = working_size(8000, 6000, 0)
    assert w * h <= ssmod.MAX_PIXELS + 10000


@pytest.mark.parametrize("bad, msg", [
    (np.zeros((10, 10, 3), np.float32), "uint8"),
    (np.zeros((10, 10, 2), np.uint8), "shape"),
    (np.zeros((0, 10, 3), np.uint8), "empty"),
    (np.zeros((2, 10, 10, 3), np.uint8), "shape"),
])
def test_bad_images(bad, msg):
    with pytest.raises(UserError, match=msg):
        selective_search(bad)


@pytest.mark.parametrize("kwargs, msg", [
    ({"preset": "turbo"}, "preset"), ({"superpixel_scale": 0}, "superpixel_scale"),
    ({"backend": "opencv"}, "backend"), ({"working_width": -5}, "working_width"),
])
def test_bad_settings(kwargs, msg, blood_small):
    with pytest.raises(UserError, match=msg):
        selective_search(blood_small, **kwargs)


def test_rank_and_unique():
    a = np.array([[0, 0, 1, 1], [0, 0, 2, 2], [0, 0, 3, 3]], np.int32)  # last = top of hierarchy
    rng = np.random.default_rng(0)
    firsts = [tuple(rank_boxes([a], np.random.default_rng(s))[0]) for s in range(200)]
    # priority 1 * U beats 3 * U most of the time
    assert firsts.count((0, 0, 3, 3)) > firsts.count((0, 0, 1, 1))
    r = rank_boxes([a, a], rng)
    assert len(r) == 6
    u = unique_first(np.array([[1, 1, 2, 2], [0, 0, 1, 1], [1, 1, 2, 2]]))
    assert u.tolist() == [[1, 1, 2, 2], [0, 0, 1, 1]]


def test_selectivesearch_package_backend(blood_small):
    small = blood_small[:60, :80].copy()
    b = selective_search(small, backend="selectivesearch", working_width=80)
    assert b.dtype == np.float32 and b.shape[1] == 4 and len(b) > 0
    assert (b[:, 2] <= 80).all() and (b[:, 3] <= 60).all() and (b[:, 2] > b[:, 0]).all()
    # the whole image is one of its regions: max inclusive pixel + 1 = the exclusive edge
    assert [0.0, 0.0, 80.0, 60.0] in b.tolist()
