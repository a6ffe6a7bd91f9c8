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
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import replace

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

from backbone.config import to_dict
from backbone.devices import autocast, to_device_format
from backbone.errors import UserError
from backbone.io import check_writable, json_safe, safe_torch_load
from eval import evaluate

from ..classification.init import prepare_init
from ..classification.init import resolve_transform_input as _resolve_transform_input
from ..config import DetectorConfig
from ..io.checkpoints import inference_state, save_detector
from ..io.datasets import load_dataset
from ..io.images import ImageReads
from ..kinds import kind_of
from ..model import Detector
from ..proposal_cache import ensure_proposals
from ..sampling import StepSampler, epoch_steps
from .devices import (
    all_gather_list,
    barrier,
    broadcast_object,
    dist_info,
    init_distributed,
    rank_sync,
)
from .run import MODEL_FILE, STATE_FILE, RunFolder, check_owner, releases_run_lock
from .train_multibox import FINAL_FILE as MULTIBOX_FILE
from .train_multibox import multibox_run, train_multibox

COMMAND = "train-detector"
#: settings a resume may change (they do not change the result): see :class:`detector.config.TrainConfig`
FREE_KEYS = ("train.workers", "train.max_steps", "train.checkpoint_every")
__all__ = ["MODEL_FILE", "STATE_FILE", "build_member", "lr_at", "lr_scale", "resolve_transform_input", "train_detector",
           "validate"]


def _seed(*parts: int) -> int:
    return int(np.random.SeedSequence(list(parts)).generate_state(1)[0])


def lr_scale(cfg: DetectorConfig, world: int) -> float:
    """The linear scaling rule: ``world`` processes take ``world`` times the images per step of
    one, so the rate is ``train.lr x world / train.reference_world_size``."""
    return world / cfg.train.reference_world_size


def lr_at(cfg: DetectorConfig, epoch: int, step: int, scale: float = 1.0) -> float:
    """Step schedule (x lr_gamma at each epoch in lr_steps) with a linear warm-up, of the rate
    ``train.lr x scale`` (:func:`lr_scale`)."""
    t = cfg.train
    lr = t.lr * scale * (t.lr_gamma ** sum(1 for s in t.lr_steps if epoch >= s))
    if t.warmup_steps and step < t.warmup_steps:
        lr *= (step + 1) / t.warmup_steps
    return lr


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
        d = det(image, proposals=val_props[i])
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
                   resume: bool = True, stage: str = "classifier", progress: bool = True,
                   train_proposals: list | None = None, val_proposals: list | None = None,
                   _stop_after_steps: int | None = None) -> str:
    """Train (stage ``multibox``, ``classifier`` or ``all``) into the run folder ``out_dir``;
    return the model path (``OUT/multibox/multibox.pt`` for stage ``multibox``).

    A run found in ``out_dir`` resumes (``resume=False`` refuses it; see :mod:`.run` for the
    rule). ``train_proposals`` / ``val_proposals`` (lists aligned with the splits' records)
    bypass the proposal cache (tests). ``_stop_after_steps`` simulates a kill (tests of resume).
    """
    if stage not in ("multibox", "classifier", "all"):
        raise UserError(f"--stage {stage}: choose multibox, classifier or all")
    rank, world = init_distributed(device)
    main = rank == 0
    out_dir = check_writable(out_dir, what="--out", folder=True)
    mb_dir = os.path.join(out_dir, "multibox")
    uses_multibox = cfg.proposals.uses_multibox
    if stage == "multibox":  # MultiBox only, whatever the config's proposals use
        check_owner(out_dir, COMMAND)  # OUT may hold this command's detector run, nobody else's
        multibox_run(cfg, mb_dir, cfg.data.train_split, resume=resume).check()  # on every rank, before rank 0 trains
        path = _train_multibox(cfg, mb_dir, device, main, resume, progress)
        if main and (not uses_multibox or not cfg.proposals.multibox_checkpoint
                     or os.path.abspath(cfg.proposals.multibox_checkpoint) != path):
            print(f"{COMMAND}: note: the config's proposals (proposals.method={cfg.proposals.method}, "
                  f"proposals.multibox_checkpoint={cfg.proposals.multibox_checkpoint}) do not use this MultiBox yet; "
                  f"to use it set proposals.method=ss+multibox (or multibox) and proposals.multibox_checkpoint={path}",
                  file=sys.stderr)
        return path
    train_mb = stage == "all" and uses_multibox and not cfg.proposals.multibox_checkpoint
    if train_mb:  # the path is known now: the config (saved, compared on resume) carries it
        cfg.proposals.multibox_checkpoint = os.path.join(mb_dir, MULTIBOX_FILE)
    if uses_multibox and not cfg.proposals.multibox_checkpoint:
        raise UserError("proposals.method uses MultiBox but proposals.multibox_checkpoint is not set: "
                        "train it first (--stage multibox or --stage all) or use proposals.method=ss")
    init_line = prepare_init(cfg.model)  # before the config is compared and saved: it records the weights
    if init_line and main:
        print(f"{COMMAND}: {init_line}", file=sys.stderr)
    resolve_transform_input(cfg)  # before the config is compared and saved: the checkpoint carries the answer

    # every refusal before anything is written (this folder, then the MultiBox one)
    kind_name = getattr(cfg.model, "kind", "rcnn")
    rf = RunFolder(out_dir, COMMAND, kind_name, cfg, resume=resume, metric="val_mAP", group="member",
                   write=main, free=FREE_KEYS).check()
    if train_mb:
        multibox_run(cfg, mb_dir, cfg.data.train_split, resume=resume).check()
    kind = kind_of(cfg)
    train_set = load_dataset(cfg.data, cfg.data.train_split).require_images()
    classes = train_set.classes
    if cfg.model.init:  # a wrong --init file fails now, not after the proposals are computed
        build_member(cfg, len(classes), 0)
    if train_mb:
        _train_multibox(cfg, mb_dir, device, main, resume, progress)
    multibox_obj = safe_torch_load(cfg.proposals.multibox_checkpoint, "MultiBox checkpoint") if uses_multibox else None

    state = rf.load_state()
    records: list[dict] = list(state["members"]) if state is not None else []
    M, E = cfg.model.members, cfg.train.epochs
    complete = len(records) >= M and all(r["epochs"] >= E for r in records[:M])
    at_max = bool(cfg.train.max_steps) and sum(r.get("steps", 0) for r in records) >= cfg.train.max_steps
    done = complete or at_max
    if done and os.path.isfile(rf.model_path) and not rf.config_changed:
        how = f"{M} member(s) x {E} epochs" if complete else f"train.max_steps {cfg.train.max_steps}"
        rf.say(f"{out_dir} is already trained ({how}): {rf.model_path}")
        barrier()
        return rf.model_path

    # damaged images (the proposals' pass, then training's, in this process or the loader's
    # workers): one warning each kind, each file told once
    reads = ImageReads(f"training images of dataset {train_set.root} split {train_set.split}", "left out of training")
    val_set = None
    if not done:
        if train_proposals is None:
            # every rank computes its share, then all read them per image
            train_proposals = ensure_proposals(train_set, cfg.proposals, cache_dir=cache_dir, device=str(device),
                                               sync=rank_sync("proposals"), reads=reads)
        if cfg.train.val_every:  # every rank validates its share
            try:
                val_set = load_dataset(cfg.data, cfg.data.val_split)
            except UserError as e:
                rf.say(f"no validation ({e})")
            if val_set is not None and not len(val_set):   # would score nothing: mAP nan, a best.pt of nan
                rf.say(f"no validation (split {cfg.data.val_split!r} of {val_set.root}: no images)")
                val_set = None
            if val_set is not None and val_set.classes != classes:
                raise UserError(f"validation split classes {val_set.classes} differ from training classes {classes}")
            if val_set is not None and val_proposals is None:
                vs = val_set if not cfg.train.val_images else _head(val_set, cfg.train.val_images)
                val_proposals = ensure_proposals(vs, cfg.proposals, cache_dir=cache_dir, device=str(device),
                                                 sync=rank_sync("val proposals"))

    workers = cfg.train.workers
    build_on = device if workers == 0 else torch.device("cpu")  # workers build on the CPU, the main process copies
    batcher = kind.RegionBatcher(cfg, train_set, train_proposals, build_on) if not done else None
    barrier()
    rf.start()  # run.json, config.yaml; the log trimmed to the rows the state covers
    barrier()
    if state is not None and not done:
        m0 = next(i for i in range(M) if i >= len(records) or records[i]["epochs"] < E)
        e0 = records[m0]["epochs"] if m0 < len(records) else 0
        s0 = records[m0].get("step", 0) if m0 < len(records) else 0
        rf.say(f"resuming member {m0 + 1}/{M} at epoch {e0 + 1}/{E}" + (f", after its step {s0}" if s0 else ""))
    scale = lr_scale(cfg, world)
    if scale != 1 and not done:
        rf.say(f"learning rate x {scale:g} for {world} processes (linear scaling, train.reference_world_size "
               f"{cfg.train.reference_world_size}): train.lr {cfg.train.lr:g} -> {cfg.train.lr * scale:g}")
    loader, sampler = _step_loader(batcher, workers, device, rank) if not done else (None, None)

    ipb, max_steps, every = cfg.train.images_per_batch, cfg.train.max_steps, cfg.train.checkpoint_every
    steps_total = sum(r.get("steps", 0) for r in records)
    steps_done = 0  # optimizer steps of this call (_stop_after_steps)
    stopped = done
    for member in range(M):
        rec = records[member] if member < len(records) else None
        first_epoch = rec["epochs"] if rec is not None else 0
        if stopped or first_epoch >= E:
            continue
        seed = cfg.train.seed + 1000 * member
        model = to_device_format(build_member(cfg, len(classes), _seed(seed, 0)).to(device), device)
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.SGD(kind.param_groups(model, cfg), lr=cfg.train.lr * scale, momentum=cfg.train.momentum)
        best, first_step, partial, member_steps = None, 0, None, 0
        if rec is not None:
            model.load_state_dict(rec["model"])
            opt.load_state_dict(rec["optimizer"])
            best, first_step = rec.get("best"), rec.get("step", 0)
            partial, member_steps = rec.get("partial"), rec.get("steps", 0)
        net = DDP(model) if world > 1 else model

        for epoch in range(first_epoch, E):
            t_epoch = time.time()
            model.train()
            sampler.steps = epoch_steps(len(train_set), rank, world, _seed(seed, epoch), ipb)
            sampler.key, sampler.start = (seed, epoch, rank, 2), first_step
            per_epoch = len(sampler.steps)
            acc = dict(partial) if partial else {"losses": [], "correct": 0, "fg_correct": 0, "fg_total": 0,
                                                 "total": 0, "seconds": 0.0}
            acc["losses"] = list(acc["losses"])
            bar = tqdm(loader, total=len(sampler), desc=f"member {member + 1}/{M} epoch {epoch + 1}/{E}",
                       disable=not (progress and main and sys.stderr.isatty()), leave=False)
            cut = False
            for step, b, notes in bar:
                for kind_, text in notes:
                    reads.note(kind_, text)
                # dropout: seeded per step, so that a resume inside the epoch draws what an unbroken run draws
                torch.manual_seed(_seed(seed, epoch, rank, 1, step))
                if _all_ranks_agree(b is not None, world, device):  # else no regions (on some rank): all skip it
                    b = b.to(device, non_blocking=True)
                    y = b.labels
                    for g in opt.param_groups:
                        g["lr"] = lr_at(cfg, epoch, epoch * per_epoch + step, scale)
                    with autocast(device):
                        out = kind.forward(net, b)
                        loss, _ = kind.region_loss(out, b, cfg)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    if cfg.train.clip_grad_norm:
                        torch.nn.utils.clip_grad_norm_(params, cfg.train.clip_grad_norm)
                    opt.step()
                    if not math.isfinite(loss.item()):
                        raise UserError(f"training diverged (loss {loss.item()}) at member {member + 1} epoch "
                                        f"{epoch + 1}: lower train.lr")
                    acc["losses"].append(loss.item())
                    pred = out.logits.argmax(1)
                    acc["correct"] += (pred == y).sum().item()
                    acc["total"] += len(y)
                    fg = y > 0
                    acc["fg_correct"] += (pred[fg] == y[fg]).sum().item()
                    acc["fg_total"] += fg.sum().item()
                    bar.set_postfix(loss=f"{np.mean(acc['losses'][-20:]):.3f}")
                    steps_done, steps_total, member_steps = steps_done + 1, steps_total + 1, member_steps + 1
                stopped = bool(max_steps) and steps_total >= max_steps
                if step + 1 < per_epoch and (stopped or (every and (step + 1) % every == 0)):
                    part = dict(acc, seconds=acc["seconds"] + time.time() - t_epoch)
                    _put(records, member, _member_state(model, opt, epoch, step + 1, part, member_steps, best))
                    rf.save_state({"members": records}, epochs_done=sum(r["epochs"] for r in records))
                    barrier()
                    cut = stopped
                if _stop_after_steps is not None and steps_done >= _stop_after_steps:
                    raise KeyboardInterrupt
                if cut:
                    break
            bar.close()
            first_step, partial = 0, None
            if cut:
                rf.say(f"stopped at train.max_steps {max_steps} (member {member + 1}/{M} epoch {epoch + 1}/{E}, "
                       f"step {step + 1}/{per_epoch}); a resume with a larger train.max_steps trains on")
                break
            n_loss = acc["losses"]
            row = {"member": member + 1, "epoch": epoch + 1, "loss": float(np.mean(n_loss)) if n_loss else None,
                   "acc": acc["correct"] / max(1, acc["total"]), "fg_acc": acc["fg_correct"] / max(1, acc["fg_total"]),
                   "lr": lr_at(cfg, epoch, 10**9, scale), "seconds": round(acc["seconds"] + time.time() - t_epoch, 1)}
            improved = False
            if val_set is not None and (epoch + 1 == E or (epoch + 1) % cfg.train.val_every == 0):
                model.eval()
                row.update(validate(cfg, classes, [model], val_set, val_proposals, device))  # on every rank
                if best is None or row["val_mAP"] > best["val_mAP"]:
                    best = {"val_mAP": row["val_mAP"], "epoch": epoch + 1, "state": inference_state(model.state_dict())}
                    improved = True
            _put(records, member, _member_state(model, opt, epoch + 1, 0, None, member_steps, best))
            loss_txt = "n/a (no step)" if row["loss"] is None else f"{row['loss']:.4f}"
            msg = f"member {member + 1}/{M} epoch {epoch + 1}/{E}: loss {loss_txt} acc {row['acc']:.3f} fg_acc {row['fg_acc']:.3f}"
            if "val_mAP" in row:
                msg += f" val mAP {row['val_mAP']:.4f}"
            rf.log(row, f"{msg} ({row['seconds']} s)")  # the row first, then the state that covers it
            if improved:
                _save_best(rf, cfg, classes, records, M, multibox_obj)
            rf.save_state({"members": records}, epochs_done=sum(r["epochs"] for r in records))
            barrier()
            if stopped:
                if epoch + 1 < E or member + 1 < M:
                    rf.say(f"stopped at train.max_steps {max_steps} (member {member + 1}/{M} after epoch "
                           f"{epoch + 1}/{E}); a resume with a larger train.max_steps trains on")
                break
    reads.report()
    members = [r["model"] for r in records[:M]]
    rf.save_model(lambda p: save_detector(p, to_dict(cfg), classes, members, multibox=multibox_obj))
    _save_best(rf, cfg, classes, records, M, multibox_obj)
    barrier()
    return rf.model_path


def _member_state(model, opt, epochs: int, step: int, partial: dict | None, steps: int, best) -> dict:
    """A member's resumable state after ``epochs`` whole epochs and ``step`` steps of the next
    (``partial``: that epoch's running metrics), ``steps`` optimizer steps in all."""
    return {"model": {k: v.detach().cpu() for k, v in model.state_dict().items()}, "optimizer": opt.state_dict(),
            "epochs": epochs, "step": step, "partial": partial, "steps": steps, "best": best}


def _put(records: list[dict], member: int, state: dict) -> None:
    if member < len(records):
        records[member] = state
    else:
        records.append(state)


def _save_best(rf: RunFolder, cfg: DetectorConfig, classes, records: list[dict], members: int, multibox) -> None:
    """best.pt: every member at its best validation mAP, once every member has been validated."""
    if len(records) >= members and all(r.get("best") for r in records[:members]):
        states = [r["best"]["state"] for r in records[:members]]
        rf.save_best(lambda p: save_detector(p, to_dict(cfg), classes, states, multibox=multibox))


def _train_multibox(cfg: DetectorConfig, mb_dir: str, device: torch.device, main: bool, resume: bool,
                    progress: bool) -> str:
    """Train MultiBox into ``mb_dir`` on rank 0 (the others wait); its absolute path."""
    path = None
    if main:
        path = os.path.abspath(train_multibox(cfg, mb_dir, device=str(device), resume=resume, progress=progress))
    barrier()
    return broadcast_object(path)

def _all_ranks_agree(ok: bool, world: int, device: torch.device) -> bool:
    """True when ``ok`` holds on every rank (one all-reduce under torchrun): a step that one
    rank cannot take is skipped by all of them, or the others would wait in DDP's all-reduce."""
    if world == 1:
        return ok
    flag = torch.tensor([1 if ok else 0], dtype=torch.int32, device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item())


class _StepBatches(torch.utils.data.Dataset):
    """A step's batch from its :class:`StepSampler` key ``((seed parts), step, indices)``: the
    generator is seeded by the parts and the step alone, so the batch does not depend on the
    process (main or worker) that builds it. Yields ``(step, batch or None, notes)``: ``notes`` the ``(kind, file)`` of the damaged
    images met (:class:`detector.io.images.ImageReads`), counted by the main process."""

    def __init__(self, batcher):
        self.batcher = batcher

    def __getitem__(self, key):
        parts, step, indices = key
        batch = self.batcher.batch(list(indices), torch.Generator().manual_seed(_seed(*parts, step)))
        notes = list(getattr(self.batcher, "notes", ()))  # truncated / undecodable images: told to the main process
        if notes:
            del self.batcher.notes[:]
        return step, batch, notes


def _as_is(item):
    return item


def _step_loader(batcher, workers: int, device: torch.device, rank: int):
    """The training ``DataLoader`` (``train.workers`` processes, kept across epochs and members;
    pinned memory on CUDA) and its :class:`StepSampler`, set before each epoch's iteration."""
    sampler = StepSampler([], None)
    loader = torch.utils.data.DataLoader(
        _StepBatches(batcher), sampler=sampler, batch_size=None, collate_fn=_as_is, num_workers=workers,
        pin_memory=workers > 0 and device.type == "cuda", persistent_workers=workers > 0,
        generator=torch.Generator().manual_seed(rank))  # its own generator: the global one seeds dropout
    return loader, sampler


def _head(dataset, n):
    return replace(dataset, records=dataset.records[:n])


