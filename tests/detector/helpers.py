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


def ilsvrc_layout(voc_root, root, ids, annotated, wnids, map_det, first_index=1):
    """voc-mini images ``ids`` rebuilt in the ILSVRC DET layout under ``root`` (split ``val``):
    VOC class names replaced by ``wnids``, XMLs only for the first ``annotated`` images, devkit
    indices from ``first_index``, ``map_det.txt`` = ``map_det`` (text, or a file to copy)."""
    import shutil
    from pathlib import Path

    root, voc_root = Path(root), Path(voc_root)
    for d in ("Data/DET/val", "Annotations/DET/val", "ImageSets/DET"):
        (root / d).mkdir(parents=True)
    lines = []
    for k, i in enumerate(ids):
        shutil.copy(voc_root / "JPEGImages" / f"{i}.jpg", root / "Data/DET/val" / f"{i}.JPEG")
        if k < annotated:
            text = (voc_root / "Annotations" / f"{i}.xml").read_text()
            for name, wnid in wnids.items():
                text = text.replace(f"<name>{name}</name>", f"<name>{wnid}</name>")
            (root / "Annotations/DET/val" / f"{i}.xml").write_text(text)
        lines.append(f"{i} {first_index + k}\n")
    (root / "ImageSets/DET/val.txt").write_text("".join(lines))
    if isinstance(map_det, Path):
        shutil.copy(map_det, root / "map_det.txt")
    else:
        (root / "map_det.txt").write_text(map_det)
    return root
