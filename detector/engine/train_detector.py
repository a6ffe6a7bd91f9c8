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
from backbone.errors import UserError
from backbone.io import check_writable, safe_torch_load
from eval import evaluate

from ..classification.init import resolve_transform_input as _resolve_transform_input
from ..config import DetectorConfig
from ..io.checkpoints import inference_state, save_detector
from ..io.datasets import load_dataset
from ..io.images import load_image
from ..kinds import kind_of
from ..model import Detector
from ..proposal_cache import ensure_proposals
from ..sampling import image_shards
from .devices import barrier, broadcast_object, init_distributed
from .run import MODEL_FILE, STATE_FILE, RunFolder, check_owner
from .train_multibox import FINAL_FILE as MULTIBOX_FILE
from .train_multibox import multibox_run, train_multibox

COMMAND = "train-detector"
__all__ = ["train_detector", "lr_at", "build_member", "validate", "resolve_transform_input", "STATE_FILE", "MODEL_FILE"]


def _seed(*parts: int) -> int:
    return int(np.random.SeedSequence(list(parts)).generate_state(1)[0])


def lr_at(cfg: DetectorConfig, epoch: int, step: int) -> float:
    """Step schedule (x lr_gamma at each epoch in lr_steps) with a linear warm-up."""
    t = cfg.train
    lr = t.lr * (t.lr_gamma ** sum(1 for s in t.lr_steps if epoch >= s))
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
    """VOC-style mAP of ``members`` on the validation images (rank 0 only)."""
    det = Detector(cfg, classes, members, device=device)
    n = len(val_set) if not cfg.train.val_images else min(cfg.train.val_images, len(val_set))
    gts, dets = [], []
    for i in range(n):
        rec = val_set.records[i]
        d = det(load_image(rec.path), proposals=val_props[i])
        gts.append({"boxes": rec.boxes, "labels": rec.labels, "difficult": rec.difficult, "blacklist": rec.blacklist})
        dets.append({"boxes": d.boxes, "scores": d.scores, "labels": d.labels})
    res = evaluate(cfg.test.protocol, gts, dets, len(classes))
    return {"val_mAP": float(res["mAP"]), "val_AP": [None if (isinstance(a, float) and math.isnan(a)) else float(a) for a in res["AP"]]}


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
    resolve_transform_input(cfg)  # before the config is compared and saved: the checkpoint carries the answer

    # every refusal before anything is written (this folder, then the MultiBox one)
    kind_name = getattr(cfg.model, "kind", "rcnn")
    rf = RunFolder(out_dir, COMMAND, kind_name, cfg, resume=resume, metric="val_mAP", group="member",
                   write=main).check()
    if train_mb:
        multibox_run(cfg, mb_dir, cfg.data.train_split, resume=resume).check()
    kind = kind_of(cfg)
    train_set = load_dataset(cfg.data, cfg.data.train_split)
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
    if complete and os.path.isfile(rf.model_path) and not rf.config_changed:
        rf.say(f"{out_dir} is already trained ({M} member(s) x {E} epochs): {rf.model_path}")
        barrier()
        return rf.model_path

    val_set = None
    if not complete:
        if train_proposals is None:
            if main:
                ensure_proposals(train_set, cfg.proposals, cache_dir=cache_dir, device=str(device))
            barrier()
            train_proposals = ensure_proposals(train_set, cfg.proposals, cache_dir=cache_dir, device=str(device))
        if cfg.train.val_every and main:
            try:
                val_set = load_dataset(cfg.data, cfg.data.val_split)
            except UserError as e:
                rf.say(f"no validation ({e})")
            if val_set is not None and val_set.classes != classes:
                raise UserError(f"validation split classes {val_set.classes} differ from training classes {classes}")
            if val_set is not None and val_proposals is None:
                vs = val_set if not cfg.train.val_images else _head(val_set, cfg.train.val_images)
                val_proposals = ensure_proposals(vs, cfg.proposals, cache_dir=cache_dir, device=str(device))

    batcher = kind.RegionBatcher(cfg, train_set, train_proposals, device) if not complete else None
    barrier()
    rf.start()  # run.json, config.yaml; the log trimmed to the rows the state covers
    barrier()
    if state is not None and not complete:
        m0 = next(i for i in range(M) if i >= len(records) or records[i]["epochs"] < E)
        e0 = records[m0]["epochs"] if m0 < len(records) else 0
        rf.say(f"resuming member {m0 + 1}/{M} at epoch {e0 + 1}/{E}")

    steps_done = 0
    for member in range(M):
        rec = records[member] if member < len(records) else None
        first_epoch = rec["epochs"] if rec is not None else 0
        if first_epoch >= E:
            continue
        seed = cfg.train.seed + 1000 * member
        model = build_member(cfg, len(classes), _seed(seed, 0)).to(device)
        if device.type == "cpu":
            model = model.to(memory_format=torch.channels_last)
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.SGD(kind.param_groups(model, cfg), lr=cfg.train.lr, momentum=cfg.train.momentum)
        best = None
        if rec is not None:
            model.load_state_dict(rec["model"])
            opt.load_state_dict(rec["optimizer"])
            best = rec.get("best")
        net = DDP(model) if world > 1 else model
        per_epoch = len(image_shards(len(train_set), rank, world, 0)) // cfg.train.images_per_batch
        for epoch in range(first_epoch, E):
            t_epoch = time.time()
            model.train()
            torch.manual_seed(_seed(seed, epoch, rank, 1))
            gen = torch.Generator().manual_seed(_seed(seed, epoch, rank, 2))
            order = image_shards(len(train_set), rank, world, _seed(seed, epoch))
            losses, correct, fg_correct, fg_total, total = [], 0, 0, 0, 0
            bar = tqdm(range(per_epoch), desc=f"member {member + 1}/{M} epoch {epoch + 1}/{E}",
                       disable=not (progress and main and sys.stderr.isatty()), leave=False)
            for step in bar:
                idx = order[step * cfg.train.images_per_batch:(step + 1) * cfg.train.images_per_batch]
                b = batcher.batch([int(i) for i in idx], gen)
                if not _all_ranks_agree(b is not None, world, device):
                    continue  # no regions in these images (on some rank): every rank skips the step
                y = b.labels
                for g in opt.param_groups:
                    g["lr"] = lr_at(cfg, epoch, epoch * per_epoch + step)
                out = kind.forward(net, b)
                loss, parts = kind.region_loss(out, b, cfg)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.train.clip_grad_norm:
                    torch.nn.utils.clip_grad_norm_(params, cfg.train.clip_grad_norm)
                opt.step()
                if not math.isfinite(loss.item()):
                    raise UserError(f"training diverged (loss {loss.item()}) at member {member + 1} epoch {epoch + 1}: lower train.lr")
                losses.append(loss.item())
                pred = out.logits.argmax(1)
                correct += (pred == y).sum().item()
                total += len(y)
                fg = y > 0
                fg_correct += (pred[fg] == y[fg]).sum().item()
                fg_total += fg.sum().item()
                bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
                steps_done += 1
                if _stop_after_steps is not None and steps_done >= _stop_after_steps:
                    raise KeyboardInterrupt
            bar.close()
            row = {"member": member + 1, "epoch": epoch + 1, "loss": float(np.mean(losses)) if losses else None,
                   "acc": correct / max(1, total), "fg_acc": fg_correct / max(1, fg_total),
                   "lr": lr_at(cfg, epoch, 10**9), "seconds": round(time.time() - t_epoch, 1)}
            improved = False
            if main and val_set is not None and (epoch + 1 == E or (epoch + 1) % cfg.train.val_every == 0):
                model.eval()
                row.update(validate(cfg, classes, [model], val_set, val_proposals, device))
                if best is None or row["val_mAP"] > best["val_mAP"]:
                    best = {"val_mAP": row["val_mAP"], "epoch": epoch + 1, "state": inference_state(model.state_dict())}
                    improved = True
            rec = {"model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                   "optimizer": opt.state_dict(), "epochs": epoch + 1, "best": best}
            if member < len(records):
                records[member] = rec
            else:
                records.append(rec)
            loss_txt = "n/a (no step)" if row["loss"] is None else f"{row['loss']:.4f}"
            msg = f"member {member + 1}/{M} epoch {epoch + 1}/{E}: loss {loss_txt} acc {row['acc']:.3f} fg_acc {row['fg_acc']:.3f}"
            if "val_mAP" in row:
                msg += f" val mAP {row['val_mAP']:.4f}"
            rf.log(row, f"{msg} ({row['seconds']} s)")  # the row first, then the state that covers it
            if improved:
                _save_best(rf, cfg, classes, records, M, multibox_obj)
            rf.save_state({"members": records}, epochs_done=sum(r["epochs"] for r in records))
            barrier()
    members = [r["model"] for r in records[:M]]
    rf.save_model(lambda p: save_detector(p, to_dict(cfg), classes, members, multibox=multibox_obj))
    _save_best(rf, cfg, classes, records, M, multibox_obj)
    barrier()
    return rf.model_path


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


def _head(dataset, n):
    return replace(dataset, records=dataset.records[:n])


