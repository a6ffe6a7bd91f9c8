"""Training the region classifier ensemble (R-CNN fine-tuning), resumable and distributed.

One member at a time: each member differs in its seed (initialisation, sampling order,
flips, dropout). Per step, ``train.images_per_batch`` images each give
``batch_size / images_per_batch`` regions, ``fg_fraction`` of them foreground (IoU >= 0.5
with a ground-truth box, the ground-truth boxes included) and the rest background, as
R-CNN's 32 + 96 of 128. Augmentation: ``train.flip`` (horizontal mirror, p 0.5).

``out_dir`` is a run folder (:mod:`detector.engine.run`: command ``train-detector``, kind
``model.kind``): ``run.json``, ``config.yaml``, ``metrics.jsonl`` (one row per member and
epoch: ``member`` and ``epoch`` counted from 1, loss, acc, fg_acc, lr, seconds, and
``val_mAP`` / ``val_AP`` when validated), ``curves.png`` (one line per member),
``train_state.pt``, ``model.pt`` and ``best.pt``; MultiBox (``--stage multibox`` / ``all``) is
its own run folder ``OUT/multibox`` (:mod:`.train_multibox`). Everything is checked (the
resume rule, ``--out`` writable, ``model.init`` readable) before anything is written.

The state, saved after every epoch, holds for every member started its weights, optimizer
state, epochs trained and best-validated weights. A killed run resumes from it and ends
exactly where an unbroken run would (every random stream is seeded by (seed, member,
epoch)); a resume with a larger ``train.epochs`` trains the members in order, each on from
where it stopped to the new count, which also ends where an unbroken run of that many epochs
ends (finished members keep their optimizer state for this).

``best.pt`` (a detector checkpoint like ``model.pt``, when validation runs): the ensemble of
every member at the epoch of its own best validation mAP. Members are validated alone, so
the choice is per member; the file is written once every member has been validated (during
the last member's training: members 1..M-1 at their best, the last one at its best so far)
and rewritten whenever a member's validation mAP improves, and at the end.

Each step is one :class:`.loop.StepLoop` step (the rate of :func:`lr_at`, autocast, clipping
with ``train.clip_grad_norm``, the divergence check before the optimizer's step); the batches
come from :func:`.loop.step_loader`, every seed from :func:`.loop.seed`. :func:`train_detector`
settles the config and the run folder; ``_Run`` trains the members, epoch by epoch.
"""

from __future__ import annotations

import os
import sys
from dataclasses import replace

import numpy as np
import torch

from backbone.config import to_dict
from backbone.devices import to_device_format
from backbone.errors import UserError
from backbone.io import check_writable, json_safe, safe_torch_load
from eval import evaluate

from ..classification.init import prepare_init
from ..classification.init import resolve_transform_input as _resolve_transform_input
from ..config import DetectorConfig
from ..fast.proposer import training_shapes
from ..io.checkpoints import inference_state, save_detector
from ..io.datasets import load_dataset
from ..io.images import ImageReads
from ..kinds import kind_of
from ..model import Detector
from ..proposal_cache import ensure_proposals
from . import loop
from .devices import (
    all_gather_list,
    barrier,
    broadcast_object,
    dist_info,
    init_distributed,
    rank_sync,
)
from .loop import seed
from .run import MODEL_FILE, STATE_FILE, RunFolder, check_owner, releases_run_lock
from .train_multibox import FINAL_FILE as MULTIBOX_FILE
from .train_multibox import multibox_run, train_multibox
from .trainer import FREE_KEYS, Schedule, Task, Trainer

COMMAND = "train-detector"
__all__ = ["MODEL_FILE", "STATE_FILE", "build_member", "lr_at", "lr_scale", "resolve_transform_input", "train_detector",
           "validate"]


def lr_scale(cfg: DetectorConfig, world: int) -> float:
    """The linear scaling rule: ``world`` processes take ``world`` times the images per step of
    one, so the rate is ``train.lr x world / train.reference_world_size``."""
    return loop.lr_scale(world, cfg.train.reference_world_size)


def lr_at(cfg: DetectorConfig, epoch: int, step: int, scale: float = 1.0) -> float:
    """Step schedule (x lr_gamma at each epoch in lr_steps) with a linear warm-up, of the rate
    ``train.lr x scale`` (:func:`lr_scale`)."""
    t = cfg.train
    return loop.lr_at(t.lr, step, decays=sum(1 for s in t.lr_steps if epoch >= s), gamma=t.lr_gamma,
                      warmup_steps=t.warmup_steps, scale=scale)


def resolve_transform_input(cfg: DetectorConfig) -> None:
    """Settle ``model.transform_input`` when left as None (see
    :func:`detector.classification.init.resolve_transform_input`)."""
    _resolve_transform_input(cfg.model)


def build_member(cfg: DetectorConfig, num_classes: int, seed: int):
    """A fresh member of the config's kind seeded by ``seed``, its backbone from ``model.init`` if set."""
    resolve_transform_input(cfg)
    return kind_of(cfg).build_member(cfg, num_classes, seed)


def validate(cfg: DetectorConfig, classes, members, val_set, val_props, device) -> dict:
    """VOC-style mAP of ``members`` on the validation images (the first ``train.val_images``),
    called on every rank: each detects its share (every world-th image), the detections are
    gathered and rank 0 computes the mAP, which every rank returns."""
    rank, world = dist_info()
    det = Detector(cfg, classes, members, device=device)
    n = len(val_set) if not cfg.train.val_images else min(cfg.train.val_images, len(val_set))
    mine = []
    reads = ImageReads(f"validation images of dataset {val_set.root} split {val_set.split}",
                       "scored without detections (their objects count as missed)")
    for i in range(rank, n, world):
        image = reads.load(val_set.records[i].path)
        if image is None:  # as the devkit scores an image without detections
            mine.append((i, {"boxes": np.zeros((0, 4), np.float32), "scores": np.zeros(0, np.float32),
                             "labels": np.zeros(0, np.int64)}))
            continue
        d = det(image, proposals=None if val_props is None else val_props[i])  # None: the model proposes
        mine.append((i, {"boxes": d.boxes, "scores": d.scores, "labels": d.labels}))
    reads.report()
    dets = [d for _, d in sorted(all_gather_list(mine), key=lambda x: x[0])]
    result = None
    if rank == 0:
        gts = [{"boxes": r.boxes, "labels": r.labels, "difficult": r.difficult, "blacklist": r.blacklist}
               for r in val_set.records[:n]]
        res = evaluate(cfg.test.protocol, gts, dets, len(classes))
        result = {"val_mAP": float(res["mAP"]),
                  "val_AP": json_safe([float(a) for a in res["AP"]])}
    return broadcast_object(result)


@releases_run_lock
def train_detector(cfg: DetectorConfig, out_dir: str, device: torch.device, *, cache_dir: str | None = None,
                   resume: bool = True, stage: str = "classifier", progress: bool = True) -> str:
    """Train (stage ``multibox``, ``classifier`` or ``all``) into the run folder ``out_dir``;
    return the model path (``OUT/multibox/multibox.pt`` for stage ``multibox``).

    A run found in ``out_dir`` resumes (``resume=False`` refuses it; see :mod:`.run` for the rule)."""
    if stage not in ("multibox", "classifier", "all"):
        raise UserError(f"--stage {stage}: choose multibox, classifier or all")
    rank, _world = init_distributed(device)
    out_dir = check_writable(out_dir, what="--out", folder=True)
    mb_dir = os.path.join(out_dir, "multibox")
    if stage == "multibox":  # MultiBox only, whatever the config's proposals use
        return _multibox_stage(cfg, out_dir, mb_dir, device, resume, progress)
    train_mb = _settle_config(cfg, stage, mb_dir, rank == 0)
    # every refusal before anything is written (this folder, then the MultiBox one)
    rf = RunFolder(out_dir, COMMAND, getattr(cfg.model, "kind", "rcnn"), cfg, resume=resume, metric="val_mAP",
                   group="member", write=rank == 0, free=FREE_KEYS).check()
    if train_mb:
        multibox_run(cfg, mb_dir, cfg.data.train_split, resume=resume).check()
    train_set = load_dataset(cfg.data, cfg.data.train_split).require_images()
    if cfg.model.init:  # a wrong --init file fails now, not after the proposals are computed
        build_member(cfg, len(train_set.classes), 0)
    if train_mb:
        _train_multibox(cfg, mb_dir, device, resume, progress)
    uses_multibox = cfg.proposals.uses_multibox
    multibox_obj = safe_torch_load(cfg.proposals.multibox_checkpoint, "MultiBox checkpoint") if uses_multibox else None
    task = DetectorTask(cfg, rf, train_set, multibox_obj, device)
    trainer = Trainer(task, rf, device)
    if trainer.done and os.path.isfile(rf.model_path) and not rf.config_changed:
        rf.say(f"{out_dir} is already trained ({trainer.done}): {rf.model_path}")
        barrier()
        return rf.model_path
    if not trainer.done:
        task.prepare_data(cache_dir)
    barrier()
    rf.start()  # run.json, config.yaml; the log trimmed to the rows the state covers
    barrier()
    trainer.fit(progress)
    task.reads.report()
    task.save_model(trainer.records)
    task.save_best(trainer, None)
    barrier()
    return rf.model_path


def _multibox_stage(cfg: DetectorConfig, out_dir: str, mb_dir: str, device, resume: bool, progress: bool) -> str:
    """``--stage multibox``: MultiBox alone into ``OUT/multibox``; a note when the config does not use it yet."""
    check_owner(out_dir, COMMAND)  # OUT may hold this command's detector run, nobody else's
    multibox_run(cfg, mb_dir, cfg.data.train_split, resume=resume).check()  # on every rank, before rank 0 trains
    main = dist_info()[0] == 0
    path = _train_multibox(cfg, mb_dir, device, resume, progress)
    if main and (not cfg.proposals.uses_multibox or not cfg.proposals.multibox_checkpoint
                 or os.path.abspath(cfg.proposals.multibox_checkpoint) != path):
        print(f"{COMMAND}: note: the config's proposals (proposals.method={cfg.proposals.method}, "
              f"proposals.multibox_checkpoint={cfg.proposals.multibox_checkpoint}) do not use this MultiBox yet; "
              f"to use it set proposals.method=ss+multibox (or multibox) and proposals.multibox_checkpoint={path}",
              file=sys.stderr)
    return path


def _settle_config(cfg: DetectorConfig, stage: str, mb_dir: str, main: bool) -> bool:
    """Settle what the saved config records before it is compared (the MultiBox path, ``model.init``'s
    weights, ``model.transform_input``); True when this call trains MultiBox first."""
    uses_multibox = cfg.proposals.uses_multibox
    train_mb = stage == "all" and uses_multibox and not cfg.proposals.multibox_checkpoint
    if train_mb:  # the path is known now: the config (saved, compared on resume) carries it
        cfg.proposals.multibox_checkpoint = os.path.join(mb_dir, MULTIBOX_FILE)
    if uses_multibox and not cfg.proposals.multibox_checkpoint:
        raise UserError("proposals.method uses MultiBox but proposals.multibox_checkpoint is not set: "
                        "train it first (--stage multibox or --stage all) or use proposals.method=ss")
    if cfg.proposals.uses_trunk and cfg.proposals.trunk.priors is None:  # recorded by the config, as the weights
        t, f = cfg.proposals.trunk, cfg.model.fast
        cfg.proposals.trunk.priors = training_shapes(load_dataset(cfg.data, cfg.data.train_split), t.num_priors,
                                                     f.min_side, f.max_side, seed=cfg.train.seed)
    init_line = prepare_init(cfg.model)  # before the config is compared and saved: it records the weights
    if init_line and main:
        print(f"{COMMAND}: {init_line}", file=sys.stderr)
    resolve_transform_input(cfg)  # before the config is compared and saved: the checkpoint carries the answer
    return train_mb


class DetectorTask(Task):
    """The members' training (:class:`.trainer.Task`): R-CNN / Fast R-CNN members on region batches."""

    def __init__(self, cfg: DetectorConfig, rf: RunFolder, train_set, multibox, device):
        t = cfg.train
        self.cfg, self.rf, self.train_set, self.multibox, self.device = cfg, rf, train_set, multibox, device
        self.classes, self.kind = train_set.classes, kind_of(cfg)
        self.members, self.epochs, self.seed, self.size = cfg.model.members, t.epochs, t.seed, len(train_set)
        self.per_step, self.max_steps, self.checkpoint_every = t.images_per_batch, t.max_steps, t.checkpoint_every
        self.workers, self.clip, self.metric, self.members_named = t.workers, t.clip_grad_norm, "val_mAP", True
        self.scale = lr_scale(cfg, dist_info()[1])
        self.schedule = Schedule(t.lr, gamma=t.lr_gamma, decay_epochs=tuple(t.lr_steps), warmup_steps=t.warmup_steps,
                                 scale=self.scale)
        # damaged images (the proposals' pass, then training's, in this process or the loader's
        # workers): one warning each kind, each file told once
        self.reads = ImageReads(f"training images of dataset {train_set.root} split {train_set.split}",
                                "left out of training")
        self.val_set, self.val_props = None, None

    def prepare_data(self, cache_dir: str | None) -> None:
        """Proposals of the training split (every rank computes its share, then all read them per
        image), the validation split and its proposals, the batcher."""
        cfg, rf, device = self.cfg, self.rf, self.device
        if cfg.proposals.uses_trunk and cfg.proposals.trunk.mix_ss:  # selective search's boxes, for training only
            train_props = ensure_proposals(self.train_set, replace(cfg.proposals, method="ss"), cache_dir=cache_dir,
                                           device=str(device), sync=rank_sync("proposals"), reads=self.reads)
        elif cfg.proposals.uses_trunk:  # the members propose: no proposal stage
            train_props = [np.zeros((0, 4), np.float32)] * len(self.train_set)
        else:
            train_props = ensure_proposals(self.train_set, cfg.proposals, cache_dir=cache_dir, device=str(device),
                                           sync=rank_sync("proposals"), reads=self.reads)
        if cfg.train.val_every:  # every rank validates its share
            self.val_set = _validation_set(cfg, rf, self.classes)
            if self.val_set is not None:
                vs = self.val_set if not cfg.train.val_images else _head(self.val_set, cfg.train.val_images)
                self.val_props = None if cfg.proposals.uses_trunk else ensure_proposals(
                    vs, cfg.proposals, cache_dir=cache_dir, device=str(device), sync=rank_sync("val proposals"))
        build_on = device if cfg.train.workers == 0 else torch.device("cpu")  # workers build on the CPU
        self.batcher = self.kind.RegionBatcher(cfg, self.train_set, train_props, build_on)
        if self.scale != 1:
            rf.say(f"learning rate x {self.scale:g} for {dist_info()[1]} processes (linear scaling, "
                   f"train.reference_world_size {cfg.train.reference_world_size}): "
                   f"train.lr {cfg.train.lr:g} -> {cfg.train.lr * self.scale:g}")

    def build(self, index: int, seed_: int, record):
        cfg = self.cfg
        model = to_device_format(build_member(cfg, len(self.classes), seed(seed_, 0)).to(self.device), self.device)
        opt = torch.optim.SGD(self.kind.param_groups(model, cfg), lr=cfg.train.lr * self.scale,
                              momentum=cfg.train.momentum)
        return model, opt

    def loss(self, m, b):
        out = self.kind.forward(m.net, b)
        return out, self.kind.region_loss(out, b, self.cfg)[0]

    def new_metrics(self) -> dict:
        return {"losses": [], "correct": 0, "fg_correct": 0, "fg_total": 0, "total": 0}

    def count(self, acc: dict, out, b, loss: float) -> None:
        _count(acc, loss, out.logits.argmax(1), b.labels)

    def note(self, kind: str, text: str) -> None:
        self.reads.note(kind, text)

    def end_epoch(self, m, epoch: int, acc: dict, trainer) -> tuple[dict, str]:
        cfg, E = self.cfg, self.epochs
        row = _epoch_row(acc, m.index, epoch, lr_at(cfg, epoch, 10**9, self.scale))
        if self.val_set is not None and (epoch + 1 == E or (epoch + 1) % cfg.train.val_every == 0):
            m.model.eval()
            row.update(validate(cfg, self.classes, [m.model], self.val_set, self.val_props, self.device))  # every rank
        return row, _row_line(row, self.members, E)

    def best_state(self, m) -> dict:
        return {"state": inference_state(m.model.state_dict())}

    def save_best(self, trainer, m) -> None:
        """best.pt: every member at its best validation mAP, once every member has been validated."""
        records, members = trainer.records, self.members
        if len(records) >= members and all(r.get("best") for r in records[:members]):
            states = [r["best"]["state"] for r in records[:members]]
            self.rf.save_best(lambda p: save_detector(p, to_dict(self.cfg), self.classes, states,
                                                      multibox=self.multibox))

    def save_model(self, records: list[dict]) -> None:
        members = [r["model"] for r in records[:self.members]]
        self.rf.save_model(lambda p: save_detector(p, to_dict(self.cfg), self.classes, members,
                                                   multibox=self.multibox))


def _count(acc: dict, loss: float, pred, y) -> None:
    """A step's loss and accuracies into the epoch's running metrics."""
    acc["losses"].append(loss)
    acc["correct"] += (pred == y).sum().item()
    acc["total"] += len(y)
    fg = y > 0
    acc["fg_correct"] += (pred[fg] == y[fg]).sum().item()
    acc["fg_total"] += fg.sum().item()


def _epoch_row(acc: dict, member: int, epoch: int, lr: float) -> dict:
    n_loss = acc["losses"]
    return {"member": member + 1, "epoch": epoch + 1, "loss": float(np.mean(n_loss)) if n_loss else None,
            "acc": acc["correct"] / max(1, acc["total"]), "fg_acc": acc["fg_correct"] / max(1, acc["fg_total"]),
            "lr": lr, "seconds": round(acc["seconds"], 1)}


def _row_line(row: dict, M: int, E: int) -> str:
    loss_txt = "n/a (no step)" if row["loss"] is None else f"{row['loss']:.4f}"
    msg = (f"member {row['member']}/{M} epoch {row['epoch']}/{E}: loss {loss_txt} acc {row['acc']:.3f} "
           f"fg_acc {row['fg_acc']:.3f}")
    if "val_mAP" in row:
        msg += f" val mAP {row['val_mAP']:.4f}"
    return f"{msg} ({row['seconds']} s)"


def _validation_set(cfg: DetectorConfig, rf: RunFolder, classes):
    """The validation split (None, told, when missing or empty)."""
    try:
        val_set = load_dataset(cfg.data, cfg.data.val_split)
    except UserError as e:
        rf.say(f"no validation ({e})")
        return None
    if not len(val_set):   # would score nothing: mAP nan, a best.pt of nan
        rf.say(f"no validation (split {cfg.data.val_split!r} of {val_set.root}: no images)")
        return None
    if val_set.classes != classes:
        raise UserError(f"validation split classes {val_set.classes} differ from training classes {classes}")
    return val_set


def _train_multibox(cfg: DetectorConfig, mb_dir: str, device: torch.device, resume: bool, progress: bool) -> str:
    """Train MultiBox into ``mb_dir`` (every rank: rank 0 writes); its absolute path."""
    path = os.path.abspath(train_multibox(cfg, mb_dir, device=str(device), resume=resume, progress=progress))
    barrier()
    return path


def _head(dataset, n):
    return replace(dataset, records=dataset.records[:n])


