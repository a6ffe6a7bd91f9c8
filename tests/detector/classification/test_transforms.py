"""detector.classification.transforms: the training augmentation (the paper's recipe), its seeding."""

import numpy as np
import pytest
import torch

from detector.classification.transforms import TrainTransform, train_transform
from detector.config import ClassifierConfig


def test_train_transform_shapes_and_randomness():
    cfg = ClassifierConfig()
    t = train_transform(32, cfg.train, seed=0)
    img = np.random.default_rng(0).integers(0, 255, (50, 70, 3), dtype=np.uint8)
    a, b = t(img), t(img)
    assert a.shape == (3, 32, 32) and a.dtype == torch.float32
    assert not torch.equal(a, b)  # random crops / jitter


def _walk(t):
    yield t
    for c in getattr(t, "transforms", None) or []:
        yield from _walk(c)


def test_train_transform_is_the_papers_recipe():
    """Random crops of 8%-100% of the area, aspect 3/4-4/3, several interpolations, mirror,
    photometric distortions: read off the built albumentations pipeline."""
    import albumentations as A

    t = train_transform(32, ClassifierConfig().train, seed=0)
    steps = list(_walk(t.compose))
    crops = [s for s in steps if isinstance(s, A.RandomResizedCrop)]
    assert crops and all(tuple(c.size) == (32, 32) for c in crops)
    for c in crops:
        assert tuple(c.scale) == pytest.approx((0.08, 1.0))
        assert tuple(c.ratio) == pytest.approx((3 / 4, 4 / 3))
    assert len({c.interpolation for c in crops}) >= 3
    chooser = next(s for s in steps if isinstance(s, A.OneOf) and crops[0] in s.transforms)
    assert chooser.p == 1.0  # one of the crops is always applied
    assert any(isinstance(s, A.HorizontalFlip) for s in steps)
    assert any(isinstance(s, A.ColorJitter) for s in steps)


def test_train_transform_reseed_is_deterministic():
    img = np.random.default_rng(0).integers(0, 255, (50, 70, 3), dtype=np.uint8)
    a = train_transform(32, ClassifierConfig().train, seed=5)
    b = train_transform(32, ClassifierConfig().train, seed=5)
    assert isinstance(a, TrainTransform)
    a.set_epoch(3)
    b.set_epoch(3)
    assert torch.equal(a(img), b(img))
    b.reseed(worker=1)
    a.reseed(worker=0)
    assert not torch.equal(a(img), b(img))
