"""Detector.detect_batch: several images per trunk call (same-size groups), the same detections
as one image at a time, for the fast kind (bundled model, tiny seeded models) and R-CNN."""

import numpy as np
import pytest
import torch

from backbone.config import apply_overrides
from detector.assets import FAST_MODEL, RCNN_MODEL
from detector.io.images import load_image
from detector.kinds import kind_of
from detector.model import Detector
from tests.conftest import TEST_DATA
from tests.detector.helpers import CLASSES, tiny_config

FAST = ["model.rcnn=null", "model.kind=fast", "model.arch=googlenet_bn", "model.aux_logits=false",
        "model.bbox_reg=true", "model.fast.tap=[inception3b]", "model.fast.min_side=96", "model.fast.max_side=160",
        "model.fast.reduce_channels=16", "model.fast.fc_dim=32", "model.fast.fc_rank=8", "model.members=2",
        "test.score_thr=0.05"]
MINI = TEST_DATA / "voc-mini" / "JPEGImages"


def boxes_for(image, n, seed):
    rng = np.random.default_rng(seed)
    h, w = image.shape[:2]
    xy = rng.uniform(0, [w - 30, h - 30], (n, 2))
    wh = rng.uniform(15, min(w, h) / 2, (n, 2))
    return np.concatenate([xy, np.minimum(xy + wh, [w, h])], 1).astype(np.float32)


def assert_same(batched, single):
    assert len(batched) == len(single)
    for a, b in zip(batched, single):
        assert a.boxes.shape == b.boxes.shape and (a.labels == b.labels).all()
        assert np.abs(a.boxes - b.boxes).max(initial=0) <= 0.01
        assert np.abs(a.scores - b.scores).max(initial=0) <= 1e-5
        assert set(a.seconds) == set(b.seconds)


def tiny_fast(seed=0, *extra):
    cfg = apply_overrides(tiny_config(TEST_DATA / "voc-mini"), FAST + list(extra))
    torch.manual_seed(seed)
    kind = kind_of(cfg)
    members = [kind.build_member(cfg, len(CLASSES), seed + i, inference=True) for i in range(2)]
    return Detector(cfg, CLASSES, members)


def test_tiny_fast_batches_equal_the_per_image_path():
    det = tiny_fast()
    rng = np.random.default_rng(0)
    # two sizes that resize alike (one trunk call), one of its own, one image without boxes
    images = [rng.integers(0, 256, s, dtype=np.uint8) for s in [(120, 160, 3), (60, 80, 3), (100, 100, 3),
                                                                 (120, 160, 3), (120, 160, 3)]]
    props = [boxes_for(im, 30, k) for k, im in enumerate(images)]
    props[3] = np.zeros((0, 4), np.float32)
    calls = []
    for m in det.ensemble.members:
        m.register_forward_pre_hook(lambda *a: None)
        orig = m._run_trunk
        m._run_trunk = (lambda orig: lambda x: (calls.append(len(x)), orig(x))[1])(orig)
    batched = det.detect_batch(images, props)
    assert sorted(calls) == [1, 1, 3, 3]  # per member: the three 96-px images at once, the square one apart
    calls.clear()
    single = [det(im, proposals=p) for im, p in zip(images, props)]
    assert_same(batched, single)
    assert len(batched[3].boxes) == 0 and sum(len(d.boxes) for d in batched) > 0


def test_detect_batch_proposes_when_none_are_given(monkeypatch):
    det = tiny_fast(1, "proposals.working_width=80", "test.max_proposals=40")
    images = [load_image(str(p)) for p in sorted(MINI.glob("*.jpg"))[:2]]
    assert_same(det.detect_batch(images), [det(im) for im in images])


def test_rcnn_runs_image_by_image():
    det = Detector.from_checkpoint(RCNN_MODEL, members=1)
    assert not det.batches_trunk
    images = [load_image(str(p)) for p in sorted(MINI.glob("*.jpg"))[:2]]
    props = [boxes_for(im, 6, k) for k, im in enumerate(images)]
    assert_same(det.detect_batch(images, props), [det(im, proposals=p) for im, p in zip(images, props)])


def test_bundled_fast_model_batches_equal_the_per_image_path():
    det = Detector.from_checkpoint(FAST_MODEL)
    assert det.batches_trunk
    images = [load_image(str(p)) for p in sorted(MINI.glob("*.jpg"))[:2]]
    props = [boxes_for(im, 150, k) for k, im in enumerate(images)]
    assert_same(det.detect_batch(images, props), [det(im, proposals=p) for im, p in zip(images, props)])
    assert sum(len(d.boxes) for d in det.detect_batch(images, props)) > 0


def test_a_subclass_scoring_elsewhere_runs_image_by_image():
    """OnnxDetector replaces score_regions (onnxruntime) and has no PyTorch ensemble: not batched."""
    det = tiny_fast()
    calls = []

    class Elsewhere(Detector):
        def score_regions(self, image, boxes, times=None):
            calls.append(len(boxes))
            return super().score_regions(image, boxes, times)

    other = Elsewhere(det.cfg, det.classes, list(det.ensemble.members))
    assert det.batches_trunk and not other.batches_trunk
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, (120, 160, 3), dtype=np.uint8) for _ in range(2)]
    props = [boxes_for(im, 10, k) for k, im in enumerate(images)]
    assert_same(other.detect_batch(images, props), det.detect_batch(images, props))
    assert calls == [10, 10]
