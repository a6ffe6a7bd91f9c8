"""Shared helpers for detector tests: a tiny config, proposals made from the ground truth,
dataset layouts and files built from voc-mini, tiny untrained models, and the one-error-line
check of the console scripts. Fixtures built from them are in the conftest.py files."""

import json

import numpy as np
import torch
from PIL import Image

from backbone.config import apply_overrides, to_dict
from detector.cli.eval_map import main as eval_map_main
from detector.config import DetectorConfig
from detector.io.checkpoints import save_detector
from detector.rcnn.region_classifier import RegionClassifier
from proposals.config import MultiBoxConfig
from proposals.multibox import MultiBox, checkpoint_dict, kmeans_priors

CLASSES = ["Platelets", "RBC", "WBC"]


def tiny_config(root, **over) -> DetectorConfig:
    cfg = DetectorConfig()
    sets = [
        f"data.root={root}", "data.classes=[Platelets,RBC,WBC]", "data.train_split=train", "data.val_split=test", "data.test_split=test",
        "proposals.method=ss", "model.arch=googlenet", "model.rcnn.input_size=32", "model.members=1",
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


def untrained_detector(path, cfg, members=1, classes=CLASSES) -> str:
    """An R-CNN detector checkpoint of ``members`` untrained region classifiers (seeds 0, 1, ...)."""
    states = []
    for i in range(members):
        torch.manual_seed(i)
        states.append(RegionClassifier(cfg.model.arch, len(classes), aux_logits=False, bbox_reg=cfg.model.bbox_reg).state_dict())
    save_detector(str(path), to_dict(cfg), classes, states)
    return str(path)


COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}


def colour_folder(root, per_class=4, size=(20, 26), seed=0):
    """root/<split>/<colour>/*.png: tiny noisy images whose class is their colour."""
    rng = np.random.default_rng(seed)
    for split in ("train", "test"):
        for name, rgb in COLOURS.items():
            d = root / split / name
            d.mkdir(parents=True)
            for i in range(per_class):
                a = np.clip(np.array(rgb)[None, None] + rng.normal(0, 20, size + (3,)), 0, 255).astype(np.uint8)
                Image.fromarray(a).save(d / f"{i}.png")
    return root


def one_error(capsys, prog, *needles):
    """The CLI wrote exactly one line on stderr, ``PROG: error: ...`` containing ``needles``, no traceback."""
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), err
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def run_eval_map(capsys, *argv):
    """eval-map's exit code, stdout and stderr."""
    rc = eval_map_main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def eval_map_error(capsys, *argv):
    """eval-map exits 2 with one error line on stderr: that line."""
    rc, out, err = run_eval_map(capsys, *argv)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("eval-map: error: "), err
    return lines[0]


def coco_eval_files(tmp_path, seed=0):
    """A COCO instances file with fractional boxes and segment areas unlike w*h (as real COCO),
    and a results file of noisy copies plus false positives."""
    rng = np.random.default_rng(seed)
    images, anns, results = [], [], []
    for i in range(1, 13):
        images.append({"id": i, "file_name": f"{i}.jpg", "width": 640, "height": 480})
        for _ in range(rng.integers(1, 6)):
            w, h = rng.uniform(8, 300), rng.uniform(8, 200)
            x, y = rng.uniform(0, 640 - w), rng.uniform(0, 480 - h)
            c = int(rng.integers(1, 4))
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": c * 10, "bbox": [x, y, w, h],
                         "area": float(w * h * rng.uniform(0.3, 0.9)), "iscrowd": 0})
            if rng.random() < 0.8:
                j = rng.normal(0, 6, 4)
                results.append({"image_id": i, "category_id": c * 10, "score": float(rng.random()),
                                "bbox": [x + j[0], y + j[1], max(1.0, w + j[2]), max(1.0, h + j[3])]})
        for _ in range(2):
            results.append({"image_id": i, "category_id": int(rng.integers(1, 4)) * 10, "score": float(rng.random()),
                            "bbox": [float(rng.uniform(0, 500)), float(rng.uniform(0, 350)), 60.5, 40.25]})
    cats = [{"id": c, "name": f"c{c}"} for c in (10, 20, 30)]
    (tmp_path / "gt.json").write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    (tmp_path / "res.json").write_text(json.dumps(results))
    return tmp_path / "gt.json", tmp_path / "res.json"


TINY_MULTIBOX = MultiBoxConfig(arch="googlenet_bn", input_size=64, num_priors=12)
MULTIBOX_TOP_K = 6


def tiny_multibox(seed: int) -> MultiBox:
    """An untrained MultiBox (different seeds: different weights and priors)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 0.6, (60, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(0.15, 0.4, (60, 2))], 1)
    return MultiBox(TINY_MULTIBOX, kmeans_priors(boxes, TINY_MULTIBOX.num_priors, seed=seed)).eval()


def save_multibox(net, path) -> str:
    torch.save(checkpoint_dict(net), path)
    return str(path)


def train_given(cfg, out_dir, device, *, train_proposals=None, val_proposals=None, stop_after=None, **kw):
    """``train_detector`` with the training (and validation) proposals given as lists aligned
    with the splits' records instead of the proposal cache's; ``stop_after``: killed
    (KeyboardInterrupt) before that many + 1 optimizer steps (:func:`detector.engine.loop.stop_after`)."""
    import contextlib
    from unittest import mock

    from detector.engine import loop
    from detector.engine import train_detector as td

    real, calls = td.ensure_proposals, []

    def given(dataset, *a, **k):
        calls.append(1)  # the training split's proposals come first, then the validation split's
        mine = train_proposals if len(calls) == 1 else val_proposals
        return real(dataset, *a, **k) if mine is None else mine

    stop = loop.stop_after(stop_after) if stop_after is not None else contextlib.nullcontext()
    with mock.patch.object(td, "ensure_proposals", given), stop:
        return td.train_detector(cfg, out_dir, device, **kw)


def same_weights(a: dict, b: dict) -> bool:
    """Whether state dicts ``a`` and ``b`` hold the same tensors under the same names, bitwise
    (False for two empty dicts: a test comparing nothing must not pass)."""
    return bool(a) and a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
