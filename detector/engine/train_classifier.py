"""train-classifier's loop: a GoogLeNet classifier with the paper's recipe (section 7) from a
:class:`~detector.config.ClassifierConfig`, in a run folder.

The recipe's pieces are :mod:`backbone.engine` (SGD with momentum, Polyak averaging, aux
losses) and here the schedule (lr x ``train.lr_gamma`` every ``train.lr_step_epochs`` epochs
applied per step, :func:`make_scheduler` over :func:`.loop.lr_at`) and the epoch of steps
(:func:`train_one_epoch`, each step a :class:`.loop.StepLoop` step); the data
and its augmentation :mod:`detector.classification` (random-area / aspect crops, ``train.flip``,
``train.vflip``, colour jitter: every augmentation is a ``train.*`` setting).

``out_dir`` is a run folder (:mod:`detector.engine.run`: command ``train-classifier``, kind
``classifier``): ``run.json``, ``config.yaml``, ``metrics.jsonl`` (epoch, loss, top1 on the
training batches, lr, steps, seconds; val_loss, val_top1, val_top5 of the Polyak weights when
validated), ``curves.png`` (loss and validation top-1), ``train_state.pt`` (raw weights,
optimizer, scheduler, Polyak average and RNG: :func:`backbone.engine.training_state`),
``model.pt`` (the Polyak-averaged weights when training ends, a classifier checkpoint) and
``best.pt`` (the same format, at the epoch of the best validation top-1, when validation runs).

A killed run ends exactly where an unbroken one ends: epoch e's shuffle and augmentation come
from ``(seed, e)`` (:func:`start_epoch`), the torch RNG is in the state. A resume with a larger
``train.epochs`` continues the same schedule (it does not depend on the epoch count).
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, Iterable

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel
from tqdm import tqdm

from backbone import build_backbone
from backbone.devices import to_device_format
from backbone.engine import (
    averaged_module,
    classification_loss,
    evaluate,
    make_averaged_model,
    make_optimizer,
    restore_training_state,
    to_device,
    training_state,
)
from backbone.errors import UserError

from ..classification.data import build_classification_set, has_split
from ..classification.init import init_weights_file, prepare_init, reinit_convs
from ..classification.transforms import (
    TrainTransform,
    eval_transform,
    seed_worker,
    train_transform,
)
from ..config import ClassifierConfig, validate_config
from ..io.checkpoints import save_classifier
from .loop import StepLoop, lr_at
from .run import RunFolder, releases_run_lock

COMMAND = "train-classifier"
KIND = "classifier"


def make_train_loader(train_set, t) -> torch.utils.data.DataLoader:
    """Shuffled, full batches of ``train_set`` with ``t.workers`` worker processes (``t`` the
    train config); each worker reseeds its copy of the augmentation (:func:`seed_worker`)."""
    return torch.utils.data.DataLoader(train_set, batch_size=t.batch_size, shuffle=True, drop_last=True,
                                       num_workers=t.workers, generator=torch.Generator(),
                                       worker_init_fn=seed_worker, persistent_workers=False)


def start_epoch(loader: torch.utils.data.DataLoader, seed: int, epoch: int) -> None:
    """Seed the shuffle and the augmentation of epoch ``epoch`` from ``(seed, epoch)`` alone, so
    that epoch e draws the same batches whether or not the run was interrupted and resumed.
    Call before iterating: workers are forked at the start of each epoch and copy this state."""
    loader.generator.manual_seed(seed * 100003 + epoch)
    transform = getattr(loader.dataset, "transform", None)
    if isinstance(transform, TrainTransform):
        transform.set_epoch(epoch)


def build_classifier(cfg: ClassifierConfig, num_classes: int) -> torch.nn.Module:
    """The network of ``cfg.model``: from ``model.init`` (class layers fresh) or from scratch
    with the ``model.conv_init`` scheme."""
    m = cfg.model
    kwargs = {}
    if m.init:
        kwargs = {"weights": init_weights_file(m.init, m.arch), "ignore_head": True}
        if m.arch != "googlenet":
            kwargs["transform_input"] = True
    model = build_backbone(m.arch, num_classes, aux_logits=m.aux_logits, dropout=m.dropout, **kwargs)
    if not m.init:
        reinit_convs(model, m.conv_init)
    return model


def make_scheduler(
    optimizer: torch.optim.Optimizer, steps_per_epoch: int, *, gamma: float = 0.96, every_epochs: float = 8,
    warmup_steps: int = 0,
) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step schedule (:func:`.loop.lr_at`): lr x ``gamma`` every ``every_epochs`` epochs
    (step-wise, as the paper), after an optional linear warm-up of ``warmup_steps`` steps. Call
    ``step()`` after every optimizer step."""
    every_steps = max(1, int(round(every_epochs * steps_per_epoch)))

    def factor(step: int) -> float:
        return lr_at(1.0, step, decays=step // every_steps, gamma=gamma, warmup_steps=warmup_steps)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def train_one_epoch(
    model: nn.Module,
    loader: Iterable,
    loop: StepLoop,
    *,
    scheduler: Any = None,
    averaged: AveragedModel | None = None,
    aux_weight: float = 0.3,
    max_steps: int | None = None,
    where: str = "",
    desc: str = "train",
    progress: bool | None = None,
) -> dict[str, float]:
    """One pass over ``loader`` (batches ``(images (N,3,H,W), labels (N,))``), each batch one
    step of ``loop`` (forward in training mode, loss with auxiliary heads, the optimizer step),
    then the scheduler step and the Polyak update. Returns ``{"loss", "top1", "samples",
    "steps", "seconds", "lr"}`` (loss and accuracy of the main head on the training batches,
    averaged over samples)."""
    device = loop.device
    model.train()
    if progress is None:
        progress = sys.stderr.isatty()
    total = len(loader) if hasattr(loader, "__len__") else None
    if max_steps is not None and total is not None:
        total = min(total, max_steps)
    loss_sum, correct, seen, steps = 0.0, 0, 0, 0
    t0 = time.time()
    bar = tqdm(loader, total=total, desc=desc, unit="batch", disable=not progress, leave=False)
    for images, labels in bar:
        images, labels = to_device(images, device), labels.to(device)

        def loss_fn(images=images, labels=labels):
            loss, logits = classification_loss(model(images), labels, aux_weight)
            return logits, loss

        logits = loop.step(loss_fn, where=f"{where}step {steps + 1}".strip())
        if scheduler is not None:
            scheduler.step()
        if averaged is not None:
            averaged.update_parameters(model)
        n = labels.numel()
        loss_sum += loop.last_loss * n
        correct += int((logits.argmax(1) == labels).sum())
        seen += n
        steps += 1
        bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}")
        if max_steps is not None and steps >= max_steps:
            break
    bar.close()
    return {
        "loss": loss_sum / max(seen, 1), "top1": correct / max(seen, 1), "samples": seen, "steps": steps,
        "seconds": time.time() - t0, "lr": loop.opt.param_groups[0]["lr"],
    }


@releases_run_lock
def train_classifier(cfg: ClassifierConfig, out_dir: str, device: torch.device | str = "cpu", *,
                     resume: bool = True, progress: bool = True) -> str:
    """Train ``cfg`` into the run folder ``out_dir``; return the path of ``model.pt``.

    A run found in ``out_dir`` resumes (``resume=False`` refuses it; see :mod:`.run` for the
    rule)."""
    validate_config(cfg)
    device = torch.device(device)
    t, m = cfg.train, cfg.model
    line = prepare_init(m)  # before the config is compared and saved: it records the weights
    if line:
        print(f"{COMMAND}: {line}", file=sys.stderr)
    rf = RunFolder(out_dir, COMMAND, KIND, cfg, resume=resume, metric="val_top1").check()
    state = rf.load_state()
    done = int(state["epochs_done"]) if state is not None else 0
    if done >= t.epochs and os.path.isfile(rf.model_path) and not rf.config_changed:
        rf.say(f"{rf.out_dir} is already trained ({done} of train.epochs={t.epochs} epochs): {rf.model_path}")
        return rf.model_path
    torch.manual_seed(t.seed)

    size = m.input_size
    train_set = build_classification_set(cfg, cfg.data.train_split, transform=train_transform(size, t, seed=t.seed))
    classes = train_set.classes
    if state is not None and list(state["classes"]) != classes:
        raise UserError(f"training state {rf.state_path}: trained on classes {state['classes']}, the data now has {classes}")
    val_set = None
    if t.val_every > 0 and cfg.data.val_split and cfg.data.val_split != cfg.data.train_split:
        if cfg.data.format != "imagefolder" or has_split(cfg.data.root, cfg.data.val_split):
            val_set = build_classification_set(cfg, cfg.data.val_split, classes=classes, transform=eval_transform(size))
    counts = train_set.class_counts()
    rf.say(f"{len(train_set)} training images in {len(classes)} classes ("
           + ", ".join(f"{c} {n}" for c, n in zip(classes, counts)) + ")"
           + (f"; {len(val_set)} validation images ({cfg.data.val_split})" if val_set is not None else ""))
    if len(train_set) < t.batch_size:
        raise UserError(f"{train_set.source}: {len(train_set)} training images, fewer than train.batch_size {t.batch_size}")

    loader = make_train_loader(train_set, t)
    val_loader = None
    if val_set is not None:
        val_loader = torch.utils.data.DataLoader(val_set, batch_size=max(t.batch_size, 128), num_workers=t.workers)
    model = to_device_format(build_classifier(cfg, len(classes)).to(device), device)
    transform_input = bool(getattr(model, "transform_input", False))
    steps_per_epoch = len(loader) if t.max_steps_per_epoch is None else min(len(loader), t.max_steps_per_epoch)
    optimizer = make_optimizer(model, t.lr, t.momentum, t.weight_decay)
    scheduler = make_scheduler(optimizer, steps_per_epoch, gamma=t.lr_gamma, every_epochs=t.lr_step_epochs,
                               warmup_steps=int(round(t.warmup_epochs * steps_per_epoch)))
    averaged = make_averaged_model(model, t.polyak_decay)
    best = None
    if state is not None:
        restore_training_state(state["train"], model, optimizer, scheduler, averaged)
        best = state.get("best")
    rf.start()
    if state is not None:
        rf.say(f"resuming {rf.out_dir} after epoch {done}")
    meta = dict(arch=m.arch, classes=classes, input_size=size, config=cfg, transform_input=transform_input)
    show = progress and sys.stderr.isatty()
    loop = StepLoop(optimizer, [p for p in model.parameters() if p.requires_grad], device)  # no clipping setting

    for epoch in range(done + 1, t.epochs + 1):
        start_epoch(loader, t.seed, epoch)  # shuffle and augmentation of epoch e: the same after a resume
        loop.hint = "lower train.lr" + (f"; the last good state is {rf.state_path}" if epoch > 1 else "")
        tr = train_one_epoch(model, loader, loop, scheduler=scheduler, averaged=averaged, aux_weight=t.aux_weight,
                             max_steps=t.max_steps_per_epoch, where=f"epoch {epoch} ",
                             desc=f"epoch {epoch}/{t.epochs}", progress=show)
        row = {"epoch": epoch, "loss": round(tr["loss"], 5), "top1": round(tr["top1"], 5),
               "lr": tr["lr"], "steps": tr["steps"], "seconds": round(tr["seconds"], 1)}
        polyak = averaged_module(averaged)
        if val_loader is not None and (epoch % t.val_every == 0 or epoch == t.epochs):
            v = evaluate(polyak, val_loader, device=device, desc="val", progress=show)
            row.update(val_loss=round(v["loss"], 5), val_top1=round(v["top1"], 5), val_top5=round(v["top5"], 5))
        msg = f"epoch {epoch}/{t.epochs}: loss {row['loss']:.4f} train top-1 {row['top1']:.4f}"
        if "val_top1" in row:
            msg += f" val loss {row['val_loss']:.4f} top-1 {row['val_top1']:.4f}"
        rf.log(row, msg + f" lr {row['lr']:.5f} ({row['seconds']} s)")  # the row first, then the state covering it
        if "val_top1" in row and (best is None or row["val_top1"] > best["val_top1"]):
            best = {"val_top1": row["val_top1"], "epoch": epoch}
            rf.save_best(lambda p: save_classifier(p, polyak, epoch=epoch, metrics=row, **meta))
        rf.save_state({"train": training_state(epoch, model, optimizer, scheduler, averaged), "classes": classes,
                       "best": best}, epochs_done=epoch)
    epochs = max(done, t.epochs)
    last = rf.rows[-1] if rf.rows else {}
    rf.save_model(lambda p: save_classifier(p, averaged_module(averaged), epoch=epochs, metrics=last, **meta))
    return rf.model_path


__all__ = ["train_classifier", "make_train_loader", "make_scheduler", "start_epoch", "train_one_epoch",
           "build_classifier", "COMMAND", "KIND"]
