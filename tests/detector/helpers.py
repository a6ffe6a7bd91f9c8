"""Shared helpers for detector tests: a tiny config and proposals made from the ground truth."""

import numpy as np

from detector.config import apply_overrides
from detector.schema import DetectorConfig


def tiny_config(root, **over) -> DetectorConfig:
    cfg = DetectorConfig()
    sets = [
        f"data.root={root}", "data.classes=[Platelets,RBC,WBC]", "data.train_split=train", "data.val_split=test", "data.test_split=test",
        "proposals.method=ss", "model.arch=googlenet", "model.input_size=32", "model.members=1",
        "train.epochs=1", "train.batch_size=16", "train.images_per_batch=2", "train.val_every=0",
        "train.warmup_steps=0", "test.batch_size=64", "test.score_thr=0.0",
    ] + [f"{k}={v}" for k, v in over.items()]
    return apply_overrides(cfg, sets)


def jittered_proposals(dataset, n=40, seed=0):
    """Proposals around the ground truth plus random boxes (stand-ins for selective search)."""
    rng = np.random.default_rng(seed)
    out = []
    for rec in dataset.records:
        boxes = [rec.boxes + rng.normal(0, 6, rec.boxes.shape)]
        xy = rng.uniform(0, [rec.width - 40, rec.height - 40], (n, 2))
        wh = rng.uniform(20, 150, (n, 2))
        boxes.append(np.concatenate([xy, np.minimum(xy + wh, [rec.width, rec.height])], 1))
        out.append(np.concatenate(boxes).astype(np.float32))
    return out
