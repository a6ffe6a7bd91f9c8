"""train-classifier: train a GoogLeNet classifier with the paper's recipe (section 7).

    train-classifier --config configs/bccd_classifier.yaml --out runs/cls1 [--set train.seed=1]
    train-classifier --out runs/cls1 --resume            # continue after an interruption

Data: an ImageFolder-style directory (``data.format: imagefolder``) or a detection dataset
(``voc`` ...) whose ground-truth object crops become the classes. Writes into ``--out``:
``config.yaml`` (resolved), ``last.pt`` (after every epoch, with the optimizer state for
``--resume``), ``model.pt`` (the Polyak-averaged weights only: give it to ``classify``,
``eval-classifier`` or the detector's ``model.init``), ``log.jsonl`` (one JSON object per
epoch) and ``log.png`` (loss and accuracy curves).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import torch

from backbone import build_backbone
from backbone.engine import (
    averaged_module, evaluate, make_averaged_model, make_optimizer, make_scheduler, restore_training_state,
    train_one_epoch, training_state,
)
from backbone.errors import UserError

from ..classifier_io import ClassifierConfig, load_classifier_config, read_classifier, save_classifier, validate_config
from ..config import apply_overrides, from_dict, save_config
from ..datasets.crops import TrainTransform, build_classification_set, eval_transform, seed_worker, train_transform
from .common import add_config_args, add_device_arg, cli_main, resolve_device


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="train-classifier", description=__doc__.split("\n\n")[0])
    add_config_args(p, required=False)
    p.add_argument("--out", required=True, help="output folder (checkpoints, log, plot)")
    p.add_argument("--resume", action="store_true",
                   help="continue from OUT/last.pt (config taken from it; --set may change e.g. train.epochs)")
    add_device_arg(p)
    p.add_argument("--threads", type=int, metavar="N",
                   help="CPU threads for torch (default: torch's choice; 1 is fastest on a shared, busy CPU)")
    return p


def reinit_convs(model: torch.nn.Module, scheme: str) -> None:
    """Re-initialise the convolutions of a network trained from scratch (``model.conv_init``).

    The paper's GoogLeNet has no batch norm, so the scale of the initial weights decides
    whether the first steps are stable: Kaiming fan-in (the backbone's own init) keeps the
    activations O(1), Kaiming fan-out multiplied them through the 57 conv layers (logits of
    about 36 at 64 px; the loss diverged at lr 0.01), Xavier (the reference Caffe model's)
    shrinks them (logits about 0.003)."""
    if scheme == "default":
        return
    for mod in model.modules():
        if isinstance(mod, torch.nn.Conv2d):
            if scheme == "xavier":
                torch.nn.init.xavier_uniform_(mod.weight)
            else:
                torch.nn.init.kaiming_normal_(mod.weight, mode="fan_in", nonlinearity="relu")
            if mod.bias is not None:
                torch.nn.init.zeros_(mod.bias)


def plot_log(rows: list[dict], path: str) -> None:
    """Loss and top-1 accuracy per epoch (training batches, and validation when present) -> PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [r["epoch"] for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.4))
    a.plot(ep, [r["train_loss"] for r in rows], "o-", label="train (with aux)")
    vr = [r for r in rows if "val_loss" in r]
    if vr:
        a.plot([r["epoch"] for r in vr], [r["val_loss"] for r in vr], "s-", label="val (Polyak)")
        b.plot([r["epoch"] for r in vr], [r["val_top1"] for r in vr], "s-", label="val top-1 (Polyak)")
    b.plot(ep, [r["train_top1"] for r in rows], "o-", label="train top-1")
    a.set_xlabel("epoch"), a.set_ylabel("loss"), a.legend(), a.grid(alpha=0.3)
    b.set_xlabel("epoch"), b.set_ylabel("accuracy"), b.legend(), b.grid(alpha=0.3)
    fig.tight_layout()
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    os.replace(tmp, path)


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


def _read_log(path: str, upto: int) -> list[dict]:
    rows = []
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if line:
                    try:
                        r = json.loads(line)
                    except json.JSONDecodeError:
                        continue  # a line cut by a crash
                    if r.get("epoch", 0) <= upto:
                        rows.append(r)
    return rows


def _write_log(rows: list[dict], path: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    os.replace(tmp, path)


@cli_main
def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.threads:
        if args.threads < 1:
            raise UserError(f"--threads {args.threads}: must be >= 1")
        torch.set_num_threads(args.threads)
    out = args.out
    last = os.path.join(out, "last.pt")
    resume_ckpt = None
    if os.path.exists(last):
        if not args.resume:
            raise UserError(f"--out {out}: already holds a training run (last.pt); use --resume to continue "
                            "it or choose another folder")
        resume_ckpt = read_classifier(last)
        if "train_state" not in resume_ckpt:
            raise UserError(f"{last}: has no training state to resume from")
        cfg = from_dict(ClassifierConfig, resume_ckpt["config"], source=last)
        if args.overrides:
            cfg = apply_overrides(cfg, args.overrides)
        if args.data_root:
            cfg.data.root = args.data_root
        validate_config(cfg)
    else:
        if args.resume:
            print(f"train-classifier: nothing to resume in {out}, starting a new run", file=sys.stderr)
        if not args.config and not args.data_root:
            raise UserError("give --config (see configs/bccd_classifier.yaml) or --data-root")
        cfg = load_classifier_config(args.config, args.overrides, args.data_root)
    device = resolve_device(args.device)
    t, m = cfg.train, cfg.model
    torch.manual_seed(t.seed)

    size = m.input_size
    train_set = build_classification_set(cfg, cfg.data.train_split,
                                         transform=train_transform(size, t, seed=t.seed))
    classes = train_set.classes
    if resume_ckpt is not None and list(resume_ckpt["classes"]) != classes:
        raise UserError(f"{last}: trained on classes {resume_ckpt['classes']}, the data now has {classes}")
    val_set = None
    if t.val_every > 0 and cfg.data.val_split and cfg.data.val_split != cfg.data.train_split:
        from ..datasets.imagefolder import has_split

        if cfg.data.format != "imagefolder" or has_split(cfg.data.root, cfg.data.val_split):
            val_set = build_classification_set(cfg, cfg.data.val_split, classes=classes,
                                               transform=eval_transform(size))
    counts = train_set.class_counts()
    print(f"train-classifier: {len(train_set)} training images in {len(classes)} classes ("
          + ", ".join(f"{c} {n}" for c, n in zip(classes, counts)) + ")"
          + (f"; {len(val_set)} validation images ({cfg.data.val_split})" if val_set is not None else ""),
          file=sys.stderr)
    if len(train_set) < t.batch_size:
        raise UserError(f"{train_set.source}: {len(train_set)} training images, fewer than train.batch_size {t.batch_size}")

    loader = make_train_loader(train_set, t)
    val_loader = None
    if val_set is not None:
        val_loader = torch.utils.data.DataLoader(val_set, batch_size=max(t.batch_size, 128), num_workers=t.workers)

    kwargs = {}
    if m.init:
        kwargs = {"weights": m.init, "ignore_head": True}
        if m.arch != "googlenet":
            kwargs["transform_input"] = True
    model = build_backbone(m.arch, len(classes), aux_logits=m.aux_logits, dropout=m.dropout, **kwargs)
    if not m.init:
        reinit_convs(model, m.conv_init)
    model.to(device)
    if device.type == "cpu":
        model.to(memory_format=torch.channels_last)
    transform_input = bool(getattr(model, "transform_input", False))
    steps_per_epoch = len(loader) if t.max_steps_per_epoch is None else min(len(loader), t.max_steps_per_epoch)
    optimizer = make_optimizer(model, t.lr, t.momentum, t.weight_decay)
    scheduler = make_scheduler(optimizer, steps_per_epoch, gamma=t.lr_gamma, every_epochs=t.lr_step_epochs,
                               warmup_steps=int(round(t.warmup_epochs * steps_per_epoch)))
    averaged = make_averaged_model(model, t.polyak_decay)
    start = 0
    if resume_ckpt is not None:
        start = restore_training_state(resume_ckpt["train_state"], model, optimizer, scheduler, averaged)
        print(f"train-classifier: resuming {last} after epoch {start}", file=sys.stderr)
        resume_ckpt = None
    os.makedirs(out, exist_ok=True)
    save_config(cfg, os.path.join(out, "config.yaml"))
    log_path = os.path.join(out, "log.jsonl")
    rows = _read_log(log_path, start)
    if start >= t.epochs:
        print(f"train-classifier: {out} already trained for {start} of train.epochs={t.epochs} epochs", file=sys.stderr)
    meta = dict(arch=m.arch, classes=classes, input_size=size, config=cfg, transform_input=transform_input)

    for epoch in range(start + 1, t.epochs + 1):
        start_epoch(loader, t.seed, epoch)  # shuffle and augmentation of epoch e: the same after a resume
        try:
            tr = train_one_epoch(model, loader, optimizer, device=device, scheduler=scheduler, averaged=averaged,
                                 aux_weight=t.aux_weight, max_steps=t.max_steps_per_epoch,
                                 desc=f"epoch {epoch}/{t.epochs}")
        except FloatingPointError as e:
            raise UserError(f"epoch {epoch}: {e}; the last good checkpoint is {last}" if epoch > 1 else
                            f"epoch {epoch}: {e}") from None
        row = {"epoch": epoch, "train_loss": round(tr["loss"], 5), "train_top1": round(tr["top1"], 5),
               "lr": tr["lr"], "steps": tr["steps"], "seconds": round(tr["seconds"], 1)}
        polyak = averaged_module(averaged)
        if val_loader is not None and (epoch % t.val_every == 0 or epoch == t.epochs):
            v = evaluate(polyak, val_loader, device=device, desc="val")
            row.update(val_loss=round(v["loss"], 5), val_top1=round(v["top1"], 5), val_top5=round(v["top5"], 5))
        rows.append(row)
        save_classifier(last, polyak, epoch=epoch, metrics=row,
                        train_state=training_state(epoch, model, optimizer, scheduler, averaged), **meta)
        save_classifier(os.path.join(out, "model.pt"), polyak, epoch=epoch, metrics=row, **meta)
        _write_log(rows, log_path)
        plot_log(rows, os.path.join(out, "log.png"))
        msg = f"epoch {epoch}/{t.epochs}: loss {row['train_loss']:.4f} train top-1 {row['train_top1']:.4f}"
        if "val_top1" in row:
            msg += f"  val loss {row['val_loss']:.4f} top-1 {row['val_top1']:.4f}"
        print(msg + f"  lr {row['lr']:.5f}  {row['seconds']:.0f} s", file=sys.stderr)
    print(os.path.join(out, "model.pt"))
    return 0


if __name__ == "__main__":  # pragma: no cover
    main()
