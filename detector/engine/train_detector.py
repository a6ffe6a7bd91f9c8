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
import time
from dataclasses import replace

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

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
from ..sampling import epoch_steps
from . import loop
from .devices import (
    all_gather_list,
    barrier,
    broadcast_object,
    dist_info,
    init_distributed,
    rank_sync,
)
from .loop import StepLoop, all_ranks_agree, seed, step_loader
from .run import MODEL_FILE, STATE_FILE, RunFolder, check_owner, releases_run_lock
from .train_multibox import FINAL_FILE as MULTIBOX_FILE
from .train_multibox import multibox_run, train_multibox

COMMAND = "train-detector"
#: settings a resume may change (they do not change the result): see :class:`detector.config.TrainConfig`
FREE_KEYS = ("train.workers", "train.max_steps", "train.checkpoint_every")
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
        _train_multibox(cfg, mb_dir, device, rank == 0, resume, progress)
    uses_multibox = cfg.proposals.uses_multibox
    multibox_obj = safe_torch_load(cfg.proposals.multibox_checkpoint, "MultiBox checkpoint") if uses_multibox else None
    state = rf.load_state()
    run = _Run(cfg, rf, train_set, list(state["members"]) if state is not None else [], multibox_obj, device)
    if run.done and os.path.isfile(rf.model_path) and not rf.config_changed:
        rf.say(f"{out_dir} is already trained ({run.done}): {rf.model_path}")
        barrier()
        return rf.model_path
    if not run.done:
        run.prepare_data(cache_dir)
    barrier()
    rf.start()  # run.json, config.yaml; the log trimmed to the rows the state covers
    barrier()
    if not run.done:
        run.train_members(progress)
    run.reads.report()
    members = [r["model"] for r in run.records[:cfg.model.members]]
    rf.save_model(lambda p: save_detector(p, to_dict(cfg), train_set.classes, members, multibox=multibox_obj))
    run.save_best()
    barrier()
    return rf.model_path


def _multibox_stage(cfg: DetectorConfig, out_dir: str, mb_dir: str, device, resume: bool, progress: bool) -> str:
    """``--stage multibox``: MultiBox alone into ``OUT/multibox``; a note when the config does not use it yet."""
    check_owner(out_dir, COMMAND)  # OUT may hold this command's detector run, nobody else's
    multibox_run(cfg, mb_dir, cfg.data.train_split, resume=resume).check()  # on every rank, before rank 0 trains
    main = dist_info()[0] == 0
    path = _train_multibox(cfg, mb_dir, device, main, resume, progress)
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


class _Run:
    """The members' training of one call: the records (the state's members), the data, the loader."""

    def __init__(self, cfg: DetectorConfig, rf: RunFolder, train_set, records: list[dict], multibox, device):
        self.cfg, self.rf, self.train_set, self.records, self.multibox = cfg, rf, train_set, records, multibox
        self.classes, self.device = train_set.classes, device
        self.rank, self.world = dist_info()
        M, E = cfg.model.members, cfg.train.epochs
        complete = len(records) >= M and all(r["epochs"] >= E for r in records[:M])
        at_max = bool(cfg.train.max_steps) and self.steps_total() >= cfg.train.max_steps
        self.done = (f"{M} member(s) x {E} epochs" if complete else
                     f"train.max_steps {cfg.train.max_steps}" if at_max else "")
        # damaged images (the proposals' pass, then training's, in this process or the loader's
        # workers): one warning each kind, each file told once
        self.reads = ImageReads(f"training images of dataset {train_set.root} split {train_set.split}",
                                "left out of training")
        self.val_set, self.val_props = None, None
        self.scale = lr_scale(cfg, self.world)
        self.stopped = False

    def steps_total(self) -> int:
        return sum(r.get("steps", 0) for r in self.records)

    def prepare_data(self, cache_dir: str | None) -> None:
        """Proposals of the training split (every rank computes its share, then all read them per
        image), the validation split and its proposals, the batcher and its loader."""
        cfg, rf, device = self.cfg, self.rf, self.device
        if cfg.proposals.uses_trunk:  # the members propose: no proposal stage
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
        workers = cfg.train.workers
        build_on = device if workers == 0 else torch.device("cpu")  # workers build on the CPU, the main process copies
        batcher = kind_of(cfg).RegionBatcher(cfg, self.train_set, train_props, build_on)
        self.loader, self.sampler = step_loader(batcher, workers, device, self.rank)

    def train_members(self, progress: bool) -> None:
        """Every member in order, each from where its record stopped, until ``train.max_steps``."""
        cfg, rf, records = self.cfg, self.rf, self.records
        M, E = cfg.model.members, cfg.train.epochs
        m0 = next(i for i in range(M) if i >= len(records) or records[i]["epochs"] < E)
        if records:
            e0 = records[m0]["epochs"] if m0 < len(records) else 0
            s0 = records[m0].get("step", 0) if m0 < len(records) else 0
            rf.say(f"resuming member {m0 + 1}/{M} at epoch {e0 + 1}/{E}" + (f", after its step {s0}" if s0 else ""))
        if self.scale != 1:
            rf.say(f"learning rate x {self.scale:g} for {self.world} processes (linear scaling, "
                   f"train.reference_world_size {cfg.train.reference_world_size}): "
                   f"train.lr {cfg.train.lr:g} -> {cfg.train.lr * self.scale:g}")
        for member in range(m0, M):
            if member < len(records) and records[member]["epochs"] >= E:
                continue
            self.train_member(member, progress)
            if self.stopped:
                break

    def train_member(self, member: int, progress: bool) -> None:
        """Member ``member``'s epochs from its record (or fresh), validated and saved after each."""
        cfg, rf, device = self.cfg, self.rf, self.device
        M, E = cfg.model.members, cfg.train.epochs
        rec = self.records[member] if member < len(self.records) else None
        kind = kind_of(cfg)
        seed_ = cfg.train.seed + 1000 * member
        model = to_device_format(build_member(cfg, len(self.classes), seed(seed_, 0)).to(device), device)
        opt = torch.optim.SGD(kind.param_groups(model, cfg), lr=cfg.train.lr * self.scale, momentum=cfg.train.momentum)
        m = _Member(member, seed_, model, opt, rec)
        m.loop = StepLoop(opt, [p for p in model.parameters() if p.requires_grad], device,
                          clip=cfg.train.clip_grad_norm)
        m.net = DDP(model) if self.world > 1 else model
        for epoch in range(m.epochs, E):
            acc, cut = self.train_epoch(m, epoch, progress)
            if cut:
                return
            row = _epoch_row(acc, member, epoch, lr_at(cfg, epoch, 10**9, self.scale))
            improved = False
            if self.val_set is not None and (epoch + 1 == E or (epoch + 1) % cfg.train.val_every == 0):
                model.eval()
                row.update(validate(cfg, self.classes, [model], self.val_set, self.val_props, device))  # every rank
                if m.best is None or row["val_mAP"] > m.best["val_mAP"]:
                    m.best = {"val_mAP": row["val_mAP"], "epoch": epoch + 1,
                              "state": inference_state(model.state_dict())}
                    improved = True
            m.epochs = epoch + 1
            self.put(m)
            rf.log(row, _row_line(row, M, E))  # the row first, then the state that covers it
            if improved:
                self.save_best()
            rf.save_state({"members": self.records}, epochs_done=sum(r["epochs"] for r in self.records))
            barrier()
            if self.stopped:
                if epoch + 1 < E or member + 1 < M:
                    rf.say(f"stopped at train.max_steps {cfg.train.max_steps} (member {member + 1}/{M} after epoch "
                           f"{epoch + 1}/{E}); a resume with a larger train.max_steps trains on")
                return

    def train_epoch(self, m: _Member, epoch: int, progress: bool) -> tuple[dict, bool]:
        """One epoch of member ``m`` from its step ``m.step``; ``(running metrics, cut by train.max_steps)``."""
        cfg, rank, world, device = self.cfg, self.rank, self.world, self.device
        M, E, every, max_steps = cfg.model.members, cfg.train.epochs, cfg.train.checkpoint_every, cfg.train.max_steps
        kind, sampler = kind_of(cfg), self.sampler
        t_epoch = time.time()
        m.model.train()
        sampler.steps = epoch_steps(len(self.train_set), rank, world, seed(m.seed, epoch), cfg.train.images_per_batch)
        sampler.key, sampler.start = (m.seed, epoch, rank, 2), m.step
        per_epoch = len(sampler.steps)
        acc = dict(m.partial) if m.partial else {"losses": [], "correct": 0, "fg_correct": 0, "fg_total": 0,
                                                 "total": 0, "seconds": 0.0}
        acc["losses"] = list(acc["losses"])
        bar = tqdm(self.loader, total=len(sampler), desc=f"member {m.index + 1}/{M} epoch {epoch + 1}/{E}",
                   disable=not (progress and rank == 0 and sys.stderr.isatty()), leave=False)
        cut, where = False, f"member {m.index + 1} epoch {epoch + 1}"
        for step, b, notes in bar:
            for kind_, text in notes:
                self.reads.note(kind_, text)
            # dropout: seeded per step, so that a resume inside the epoch draws what an unbroken run draws
            torch.manual_seed(seed(m.seed, epoch, rank, 1, step))
            if all_ranks_agree(b is not None, world, device):  # else no regions (on some rank): all skip it
                b = b.to(device, non_blocking=True)

                def loss_fn(b=b):
                    out = kind.forward(m.net, b)
                    return out, kind.region_loss(out, b, cfg)[0]

                out = m.loop.step(loss_fn, lr_at(cfg, epoch, epoch * per_epoch + step, self.scale), where=where)
                _count(acc, m.loop.last_loss, out.logits.argmax(1), b.labels)
                bar.set_postfix(loss=f"{np.mean(acc['losses'][-20:]):.3f}")
                m.steps += 1
            self.stopped = bool(max_steps) and self.steps_total() + (m.steps - m.saved_steps) >= max_steps
            if step + 1 < per_epoch and (self.stopped or (every and (step + 1) % every == 0)):
                m.step, m.partial = step + 1, dict(acc, seconds=acc["seconds"] + time.time() - t_epoch)
                self.put(m)
                self.rf.save_state({"members": self.records}, epochs_done=sum(r["epochs"] for r in self.records))
                barrier()
                cut = self.stopped
            if cut:
                break
        bar.close()
        m.step, m.partial = 0, None
        if cut:
            self.rf.say(f"stopped at train.max_steps {max_steps} (member {m.index + 1}/{M} epoch {epoch + 1}/{E}, "
                        f"step {step + 1}/{per_epoch}); a resume with a larger train.max_steps trains on")
        acc["seconds"] += time.time() - t_epoch
        return acc, cut

    def put(self, m: _Member) -> None:
        """Member ``m``'s record (its resumable state) into the records."""
        rec = {"model": {k: v.detach().cpu() for k, v in m.model.state_dict().items()},
               "optimizer": m.opt.state_dict(), "epochs": m.epochs, "step": m.step, "partial": m.partial,
               "steps": m.steps, "best": m.best}
        if m.index < len(self.records):
            self.records[m.index] = rec
        else:
            self.records.append(rec)
        m.saved_steps = m.steps

    def save_best(self) -> None:
        """best.pt: every member at its best validation mAP, once every member has been validated."""
        records, members = self.records, self.cfg.model.members
        if len(records) >= members and all(r.get("best") for r in records[:members]):
            states = [r["best"]["state"] for r in records[:members]]
            self.rf.save_best(lambda p: save_detector(p, to_dict(self.cfg), self.classes, states,
                                                      multibox=self.multibox))


class _Member:
    """One member being trained: its model, optimizer, loop and where its record stands."""

    def __init__(self, index: int, seed_: int, model, opt, rec: dict | None):
        self.index, self.seed, self.model, self.opt = index, seed_, model, opt
        self.epochs, self.step, self.partial, self.steps, self.best = 0, 0, None, 0, None
        if rec is not None:
            model.load_state_dict(rec["model"])
            opt.load_state_dict(rec["optimizer"])
            self.epochs, self.best, self.step = rec["epochs"], rec.get("best"), rec.get("step", 0)
            self.partial, self.steps = rec.get("partial"), rec.get("steps", 0)
        self.saved_steps = self.steps  # the steps its record counts
        self.loop = self.net = None


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


def _train_multibox(cfg: DetectorConfig, mb_dir: str, device: torch.device, main: bool, resume: bool,
                    progress: bool) -> str:
    """Train MultiBox into ``mb_dir`` on rank 0 (the others wait); its absolute path."""
    path = None
    if main:
        path = os.path.abspath(train_multibox(cfg, mb_dir, device=str(device), resume=resume, progress=progress))
    barrier()
    return broadcast_object(path)

def _head(dataset, n):
    return replace(dataset, records=dataset.records[:n])


