"""Training loop of the MultiBox proposal network (the network, priors and loss are in
``proposals.multibox``). Called by ``train-detector --stage multibox`` (and ``--stage all``),
into ``OUT/multibox``.

``out_dir`` is a run folder (:mod:`detector.engine.run`, command ``train-detector``, kind
``multibox``): ``run.json``, ``config.yaml`` (the resolved detector config), ``metrics.jsonl``
(epoch, loss, loc, conf, lr, seconds), ``curves.png``, ``train_state.pt`` (after every epoch)
and ``multibox.pt`` (the final network, what ``load_multibox`` reads; MultiBox has no
validation, so no ``best.pt``). A resume compares the settings that shape the network: the
``data`` section (its validation and test splits aside), the training split and
``proposals.multibox`` (its ``epochs`` included: the cosine schedule depends on them).

Augmentation (``proposals.multibox``): ``flip`` a horizontal mirror with probability 0.5 (on by
default), ``vflip`` a vertical one (off by default; on in configs/bccd.yaml: cells have no up or
down). Every random draw of epoch e comes from ``(seed, e)``, so a killed run ends exactly where
an unbroken one ends. Images are resized to the input size as they are first used and kept in
memory for splits up to ``train.cache_images`` images.
"""

from __future__ import annotations

import os
import sys
import time

import cv2
import numpy as np
import torch
from tqdm import tqdm

from backbone.config import check_config, to_dict
from backbone.devices import to_device_format
from backbone.io import atomic_save
from proposals.multibox import (
    MultiBox,
    checkpoint_dict,
    kmeans_priors,
    multibox_loss,
    preprocess,
)

from ..io.datasets import load_dataset
from ..io.images import ImageReads
from .loop import StepLoop, seed
from .run import RunFolder, releases_run_lock

COMMAND = "train-detector"
KIND = "multibox"
FINAL_FILE = "multibox.pt"


def _normalised_boxes(rec) -> np.ndarray:
    b = np.asarray(rec.boxes, np.float32).reshape(-1, 4).copy()
    b[:, [0, 2]] /= max(rec.width, 1)
    b[:, [1, 3]] /= max(rec.height, 1)
    b = b.clip(0, 1)
    ok = (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])  # drop degenerate (point) boxes
    return b[ok]


def _flip(boxes: np.ndarray, horizontal: bool) -> np.ndarray:
    b = boxes.copy()
    if horizontal:
        b[:, [0, 2]] = 1 - boxes[:, [2, 0]]
    else:
        b[:, [1, 3]] = 1 - boxes[:, [3, 1]]
    return b


def augment(image: np.ndarray, boxes: np.ndarray, mb, rng) -> tuple[np.ndarray, np.ndarray]:
    """The configured flips of one training image (``(S, S, 3)``) and its normalised boxes:
    horizontal with probability 0.5 when ``mb.flip``, vertical with probability 0.5 when
    ``mb.vflip`` (a random number is drawn only for an enabled flip)."""
    if mb.flip and rng.random() < 0.5:
        image, boxes = image[:, ::-1], _flip(boxes, True)
    if mb.vflip and rng.random() < 0.5:
        image, boxes = image[::-1], _flip(boxes, False)
    return image, boxes


def multibox_run(cfg, out_dir: str, split: str, *, resume: bool = True, write: bool = True) -> RunFolder:
    """The run folder of MultiBox trained on ``split`` with ``cfg.proposals.multibox`` (not checked yet)."""
    data = {k: v for k, v in to_dict(cfg.data).items() if k not in ("val_split", "test_split")}
    compare = {"data": data, "split": split, "multibox": to_dict(cfg.proposals.multibox)}
    return RunFolder(out_dir, COMMAND, KIND, cfg, compare=compare, resume=resume, model_file=FINAL_FILE, write=write)


class _Images:
    """The split's images resized to S x S as they are first used, kept for small splits."""

    def __init__(self, records, size: int, keep: bool, reads: ImageReads):
        self.records, self.size, self.reads = records, size, reads
        self.cache: dict[int, np.ndarray | None] | None = {} if keep else None

    def __getitem__(self, i: int) -> np.ndarray | None:
        """Image ``i`` resized; None when it cannot be decoded (left out, told by ``reads``)."""
        if self.cache is not None and i in self.cache:
            return self.cache[i]
        im = self.reads.load(self.records[i].path)
        if im is not None:
            im = cv2.resize(im, (self.size, self.size), interpolation=cv2.INTER_AREA)
        if self.cache is not None:
            self.cache[i] = im
        return im


@releases_run_lock
def train_multibox(cfg, out_dir: str, device="cpu", split: str | None = None, *, resume: bool = True,
                   progress: bool = True) -> str:
    """Train MultiBox on ``split`` (default ``cfg.data.train_split``) with
    ``cfg.proposals.multibox`` into the run folder ``out_dir`` (resumed when found there,
    refused with ``resume=False``). Returns the checkpoint path (``out_dir/multibox.pt``).
    Each batch is one :class:`.loop.StepLoop` step (autocast, the divergence check before the
    optimizer's step; no gradient clipping: MultiBox has no setting for it)."""
    mb = cfg.proposals.multibox
    check_config(mb, prefix="proposals.multibox.")  # matching, optimizer, ...: as declared
    device = torch.device(device)
    split = split or cfg.data.train_split
    rf = multibox_run(cfg, out_dir, split, resume=resume).check()
    state = rf.load_state()
    done = int(state["epochs_done"]) if state is not None else 0
    if done >= mb.epochs and os.path.isfile(rf.model_path) and not rf.config_changed:
        rf.say(f"multibox: {rf.out_dir} already trained ({done} of {mb.epochs} epochs)")
        return rf.model_path

    ds = load_dataset(cfg.data, split).require_images("MultiBox training")
    gts = [_normalised_boxes(r) for r in ds.records]
    S = mb.input_size
    reads = ImageReads(f"MultiBox training images of dataset {ds.root} split {split}", "left out of training")
    images = _Images(ds.records, S, keep=len(ds) <= getattr(cfg.train, "cache_images", 0), reads=reads)

    torch.manual_seed(mb.seed)
    if state is not None:
        priors = state["model"]["priors"].numpy()
    else:
        priors = kmeans_priors(np.concatenate(gts), mb.num_priors, seed=mb.seed)
    model = to_device_format(MultiBox(mb, priors).to(device), device)
    if mb.optimizer == "adam":
        opt = torch.optim.AdamW(model.parameters(), lr=mb.lr, weight_decay=mb.weight_decay)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=mb.lr, momentum=mb.momentum, weight_decay=mb.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, mb.epochs))
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
    rf.start()
    if state is not None:
        rf.say(f"multibox: resuming {rf.out_dir} after epoch {done}")

    n = len(ds)
    loop = StepLoop(opt, model.parameters(), device, hint="lower proposals.multibox.lr")  # no clipping setting
    show = progress and sys.stderr.isatty()
    for epoch in range(done, mb.epochs):
        model.train()
        t0 = time.perf_counter()
        rng = np.random.default_rng([mb.seed, epoch])  # every draw of epoch e from (seed, e): exact resumes
        torch.manual_seed(seed(mb.seed, epoch))
        order = rng.permutation(n)
        tot = {"loss": 0.0, "loc": 0.0, "conf": 0.0}
        steps = 0
        bar = tqdm(range(0, n, mb.batch_size), desc=f"multibox epoch {epoch + 1}/{mb.epochs}", disable=not show,
                   leave=False)
        for s in bar:
            batch, boxes = [], []
            for i in order[s:s + mb.batch_size]:
                image = images[int(i)]
                if image is None:  # cannot be decoded: left out
                    continue
                im, b = augment(image, gts[int(i)], mb, rng)
                batch.append(np.ascontiguousarray(im))
                boxes.append(b)
            if not batch:
                continue
            x = preprocess(batch, S, device)

            def loss_fn(x=x, boxes=boxes):
                offsets, logits = model(x)
                loss, parts = multibox_loss(offsets, logits, model.priors, boxes, mb.alpha, mb.matching)
                return parts, loss

            parts = loop.step(loss_fn, where=f"multibox epoch {epoch + 1} step {steps + 1}")
            tot["loss"] += loop.last_loss
            tot["loc"] += parts["loc"]
            tot["conf"] += parts["conf"]
            steps += 1
            bar.set_postfix(loss=f"{loop.last_loss:.3f}")
        bar.close()
        sched.step()
        row = {"epoch": epoch + 1, **{k: v / max(steps, 1) for k, v in tot.items()},
               "lr": opt.param_groups[0]["lr"], "seconds": round(time.perf_counter() - t0, 1)}
        rf.log(row, f"multibox epoch {epoch + 1}/{mb.epochs}: loss {row['loss']:.4f} (loc {row['loc']:.4f}, "
                    f"conf {row['conf']:.4f}) ({row['seconds']} s)")
        rf.save_state({"model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                       "optimizer": opt.state_dict(), "scheduler": sched.state_dict()}, epochs_done=epoch + 1)
    reads.report()
    model.eval()
    rf.save_model(lambda p: atomic_save(checkpoint_dict(model, epoch=mb.epochs, extra={"classes": list(ds.classes)}),
                                        p, what="MultiBox checkpoint"))
    return rf.model_path
