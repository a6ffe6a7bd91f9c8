"""Training loop of the MultiBox proposal network (the network, priors and loss are in
``proposals.multibox``). Called by ``train-detector --stage multibox`` (and ``--stage all``),
into ``OUT/multibox``.

``out_dir`` is a run folder (:mod:`detector.engine.run`, command ``train-detector``, kind
``multibox``): ``run.json``, ``config.yaml`` (the resolved detector config), ``metrics.jsonl``
(epoch, loss, loc, conf, lr, seconds), ``curves.png``, ``train_state.pt`` (after every epoch)
and ``multibox.pt`` (the final network, what ``load_multibox`` reads; MultiBox has no
validation, so no ``best.pt``). A resume compares the settings that shape the network: the
``data`` section (its validation and test splits aside), the training split and
``proposals.multibox`` (its ``epochs`` included: the cosine schedule depends on them). The run is
a :class:`.trainer.Trainer`'s (the detector config's ``train.max_steps``,
``train.checkpoint_every``, ``train.workers``; torchrun, autocast, resumes inside an epoch); the
rate a cosine from ``lr`` to 0 over the run, per step (:class:`.trainer.Schedule`).

Augmentation (``proposals.multibox``): ``flip`` a horizontal mirror with probability 0.5 (on by
default), ``vflip`` a vertical one (off by default; on in configs/bccd.yaml: cells have no up or
down). Every random draw of a step comes from ``(seed, epoch, step)`` (the image order from
``(seed, epoch)``), so a killed run ends exactly where an unbroken one ends. Images are resized to the input size as they are first used and kept in
memory for splits up to ``train.cache_images`` images.
"""

from __future__ import annotations

import os

import cv2
import numpy as np
import torch

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
from .devices import dist_info
from .trainer import Schedule, Task, Trainer
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


class _Batch:
    """A step's images (``(N, 3, S, S)``) and their normalised boxes."""

    def __init__(self, x: torch.Tensor, boxes: list[np.ndarray]):
        self.x, self.boxes = x, boxes

    def to(self, device, non_blocking: bool = False) -> "_Batch":
        return _Batch(to_device_format(self.x.to(device, non_blocking=non_blocking), torch.device(device)), self.boxes)


class _Draws:
    """``random()`` from a torch generator (one draw per flip, as the detector's batchers draw)."""

    def __init__(self, generator: torch.Generator):
        self.generator = generator

    def random(self) -> float:
        return torch.rand(1, generator=self.generator).item()


class _Batcher:
    """MultiBox's batches for :class:`.trainer.Trainer`: the step's images, flipped as configured
    with draws from the step's generator."""

    def __init__(self, images: _Images, gts: list[np.ndarray], mb):
        self.images, self.gts, self.mb = images, gts, mb

    def batch(self, indices: list[int], generator: torch.Generator) -> _Batch | None:
        rng = _Draws(generator)
        batch, boxes = [], []
        for i in indices:
            image = self.images[int(i)]
            if image is None:  # cannot be decoded: left out
                continue
            im, b = augment(image, self.gts[int(i)], self.mb, rng)
            batch.append(np.ascontiguousarray(im))
            boxes.append(b)
        return _Batch(preprocess(batch, self.mb.input_size, "cpu"), boxes) if batch else None


class _MultiBoxTask(Task):
    """MultiBox as a :class:`.trainer.Task`: one member, a cosine schedule, no validation."""

    def __init__(self, cfg, rf: RunFolder, ds, gts, images: _Images, device):
        mb, t = cfg.proposals.multibox, cfg.train
        self.mb, self.rf, self.ds, self.gts, self.device = mb, rf, ds, gts, device
        self.epochs, self.seed, self.size, self.per_step, self.keep_last = mb.epochs, mb.seed, len(ds), mb.batch_size, True
        self.max_steps, self.checkpoint_every, self.workers = t.max_steps, t.checkpoint_every, t.workers
        self.hint = "lower proposals.multibox.lr"  # no clipping setting
        self.unused_parameters = True  # the trunk above its feature layer is not used
        self.schedule = Schedule(mb.lr, cosine=True, epochs=mb.epochs)
        self.batcher = _Batcher(images, gts, mb)

    def build(self, index: int, seed_: int, record):
        mb, device = self.mb, self.device
        torch.manual_seed(mb.seed)
        if record is not None:
            priors = record["model"]["priors"].numpy()
        else:
            priors = kmeans_priors(np.concatenate(self.gts), mb.num_priors, seed=mb.seed)
        model = to_device_format(MultiBox(mb, priors).to(device), device)
        if mb.optimizer == "adam":
            opt = torch.optim.AdamW(model.parameters(), lr=mb.lr, weight_decay=mb.weight_decay)
        else:
            opt = torch.optim.SGD(model.parameters(), lr=mb.lr, momentum=mb.momentum, weight_decay=mb.weight_decay)
        return model, opt

    def label(self, m, epoch: int) -> str:
        return f"multibox epoch {epoch + 1}/{self.epochs}"

    def where(self, m, epoch: int, step: int) -> str:
        return f"multibox epoch {epoch + 1} step {step + 1}"

    def loss(self, m, b: _Batch):
        offsets, logits = m.net(b.x)
        loss, parts = multibox_loss(offsets, logits, m.model.priors, b.boxes, self.mb.alpha, self.mb.matching)
        return parts, loss

    def new_metrics(self) -> dict:
        return {"loss": 0.0, "loc": 0.0, "conf": 0.0, "steps": 0}

    def count(self, acc: dict, parts, b, loss: float) -> None:
        acc["loss"] += loss
        acc["loc"] += float(parts["loc"])
        acc["conf"] += float(parts["conf"])
        acc["steps"] += 1

    def end_epoch(self, m, epoch: int, acc: dict, trainer) -> tuple[dict, str]:
        n = max(acc["steps"], 1)
        row = {"epoch": epoch + 1, **{k: acc[k] / n for k in ("loss", "loc", "conf")},
               "lr": m.opt.param_groups[0]["lr"], "seconds": round(acc["seconds"], 1)}
        return row, (f"multibox epoch {epoch + 1}/{self.epochs}: loss {row['loss']:.4f} (loc {row['loc']:.4f}, "
                     f"conf {row['conf']:.4f}) ({row['seconds']} s)")


@releases_run_lock
def train_multibox(cfg, out_dir: str, device="cpu", split: str | None = None, *, resume: bool = True,
                   progress: bool = True) -> str:
    """Train MultiBox on ``split`` (default ``cfg.data.train_split``) with
    ``cfg.proposals.multibox`` into the run folder ``out_dir`` (resumed when found there,
    refused with ``resume=False``). Returns the checkpoint path (``out_dir/multibox.pt``).
    The run is a :class:`.trainer.Trainer`'s (``train.max_steps``, ``train.checkpoint_every``,
    ``train.workers``, torchrun, autocast, the divergence check before the optimizer's step; no
    gradient clipping: MultiBox has no setting for it)."""
    mb = cfg.proposals.multibox
    check_config(mb, prefix="proposals.multibox.")  # matching, optimizer, ...: as declared
    device = torch.device(device)
    split = split or cfg.data.train_split
    rf = multibox_run(cfg, out_dir, split, resume=resume, write=dist_info()[0] == 0).check()
    ds = load_dataset(cfg.data, split).require_images("MultiBox training")
    reads = ImageReads(f"MultiBox training images of dataset {ds.root} split {split}", "left out of training")
    images = _Images(ds.records, mb.input_size, keep=len(ds) <= getattr(cfg.train, "cache_images", 0), reads=reads)
    task = _MultiBoxTask(cfg, rf, ds, [_normalised_boxes(r) for r in ds.records], images, device)
    trainer = Trainer(task, rf, device)
    if trainer.done and os.path.isfile(rf.model_path) and not rf.config_changed:
        rf.say(f"multibox: {rf.out_dir} already trained ({trainer.done})")
        return rf.model_path
    rf.start()
    trainer.fit(progress)
    reads.report()
    record = trainer.records[0]
    model, _ = task.build(0, mb.seed, record)
    model.load_state_dict(record["model"])
    model.eval()
    rf.save_model(lambda p: atomic_save(checkpoint_dict(model, epoch=record["epochs"], extra={"classes": list(ds.classes)}),
                                        p, what="MultiBox checkpoint"))
    return rf.model_path
