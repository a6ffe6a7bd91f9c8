"""train-classifier: a GoogLeNet classifier with the paper's recipe (section 7) from a
:class:`~detector.config.ClassifierConfig`, in a run folder, as a :class:`.trainer.Task` of the
one run loop (:class:`.trainer.Trainer`: ``train.max_steps``, ``train.checkpoint_every``,
``train.workers``, torchrun, autocast, the divergence check, resumes inside an epoch).

The recipe: SGD with momentum (:func:`backbone.engine.make_optimizer`), lr x ``train.lr_gamma``
every ``train.lr_step_epochs`` epochs applied per step (:class:`.trainer.Schedule`), Polyak
averaging after every step (a step hook), auxiliary losses (:func:`backbone.engine.classification_loss`);
the data and its augmentation :mod:`detector.classification` (random-area / aspect crops,
``train.flip``, ``train.vflip``, colour jitter: every augmentation is a ``train.*`` setting),
each step's augmentation restarted from the step's generator (the same in any worker process).

``out_dir`` is a run folder (:mod:`detector.engine.run`: command ``train-classifier``, kind
``classifier``): ``run.json``, ``config.yaml``, ``metrics.jsonl`` (epoch, loss, top1 on the
training batches, lr, steps, seconds; val_loss, val_top1, val_top5 of the Polyak weights when
validated), ``curves.png`` (loss and validation top-1), ``train_state.pt`` (the trainer's
member record: raw weights, optimizer, Polyak average, the step inside the epoch),
``model.pt`` (the Polyak-averaged weights when training ends, a classifier checkpoint) and
``best.pt`` (the same format, at the epoch of the best validation top-1, when validation runs).
A resume with a larger ``train.epochs`` continues the same schedule (it does not depend on the
epoch count).
"""

from __future__ import annotations

import os
import sys

import torch

from backbone import build_backbone
from backbone.devices import to_device_format
from backbone.engine import (
    averaged_module,
    classification_loss,
    evaluate,
    make_averaged_model,
    make_optimizer,
    to_device,
)
from backbone.errors import UserError

from ..classification.data import build_classification_set, has_split
from ..classification.init import init_weights_file, prepare_init, reinit_convs
from ..classification.transforms import TrainTransform, eval_transform, train_transform
from ..config import ClassifierConfig, validate_config
from ..io.checkpoints import save_classifier
from .devices import dist_info
from .run import RunFolder, releases_run_lock
from .trainer import FREE_KEYS, Member, Schedule, Task, Trainer

COMMAND = "train-classifier"
KIND = "classifier"


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


class _Batch:
    """A step's images ``(N, 3, S, S)`` and labels ``(N,)``."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        self.images, self.labels = images, labels

    def to(self, device, non_blocking: bool = False) -> "_Batch":
        return _Batch(to_device(self.images, torch.device(device)), self.labels.to(device, non_blocking=non_blocking))


class _Batcher:
    """The classifier's batches for :class:`.trainer.Trainer`: the step's images through the
    training augmentation, its random stream restarted from the step's generator."""

    def __init__(self, train_set):
        self.train_set = train_set

    def batch(self, indices: list[int], generator: torch.Generator) -> _Batch:
        transform = self.train_set.transform
        if isinstance(transform, TrainTransform):
            transform.reseed_from(int(torch.randint(0, 2**62, (1,), generator=generator)))
        items = [self.train_set[i] for i in indices]
        return _Batch(torch.stack([x for x, _ in items]), torch.tensor([y for _, y in items], dtype=torch.int64))


class _Polyak:
    """Step hook: the Polyak average follows the weights after every optimizer step."""

    def __init__(self, averaged, model):
        self.averaged, self.model = averaged, model

    def after_step(self, loop) -> None:
        self.averaged.update_parameters(self.model)


class _ClassifierTask(Task):
    """The classifier as a :class:`.trainer.Task`: one member, the paper's step schedule, Polyak
    averaging (a step hook), validation of the Polyak weights, best.pt on a better top-1."""

    def __init__(self, cfg: ClassifierConfig, rf: RunFolder, train_set, val_loader, device):
        t, m = cfg.train, cfg.model
        self.cfg, self.rf, self.train_set, self.val_loader, self.device = cfg, rf, train_set, val_loader, device
        self.classes = train_set.classes
        self.epochs, self.seed, self.size, self.per_step = t.epochs, t.seed, len(train_set), t.batch_size
        self.max_steps_per_epoch, self.max_steps, self.checkpoint_every = t.max_steps_per_epoch, t.max_steps, t.checkpoint_every
        self.workers, self.metric = t.workers, "val_top1"
        world = dist_info()[1]
        per_epoch = (-(-len(train_set) // world)) // t.batch_size
        if t.max_steps_per_epoch is not None:
            per_epoch = min(per_epoch, t.max_steps_per_epoch)
        self.schedule = Schedule(t.lr, gamma=t.lr_gamma, every_epochs=t.lr_step_epochs,
                                 warmup_steps=int(round(t.warmup_epochs * per_epoch)))
        self.batcher = _Batcher(train_set)
        self.meta = dict(arch=m.arch, classes=self.classes, input_size=m.input_size, config=cfg)
        self.last_row: dict = {}

    def build(self, index: int, seed_: int, record):
        torch.manual_seed(seed_)
        model = to_device_format(build_classifier(self.cfg, len(self.classes)).to(self.device), self.device)
        self.meta["transform_input"] = bool(getattr(model, "transform_input", False))
        t = self.cfg.train
        return model, make_optimizer(model, t.lr, t.momentum, t.weight_decay)

    def setup(self, m: Member, record) -> None:
        m.extra["averaged"] = make_averaged_model(m.model, self.cfg.train.polyak_decay)
        if record is not None and record.get("averaged") is not None:
            m.extra["averaged"].load_state_dict(record["averaged"])

    def state(self, m: Member) -> dict:
        return {"averaged": m.extra["averaged"].state_dict()}

    def hooks(self, m: Member) -> list:
        return [_Polyak(m.extra["averaged"], m.model)]

    def label(self, m, epoch: int) -> str:
        return f"epoch {epoch + 1}/{self.epochs}"

    def where(self, m, epoch: int, step: int) -> str:
        return f"epoch {epoch + 1} step {step + 1}"

    def loss(self, m, b: _Batch):
        loss, logits = classification_loss(m.net(b.images), b.labels, self.cfg.train.aux_weight)
        return logits, loss

    def new_metrics(self) -> dict:
        return {"loss_sum": 0.0, "correct": 0, "seen": 0, "steps": 0}

    def count(self, acc: dict, logits, b: _Batch, loss: float) -> None:
        n = b.labels.numel()
        acc["loss_sum"] += loss * n
        acc["correct"] += int((logits.argmax(1) == b.labels).sum())
        acc["seen"] += n
        acc["steps"] += 1

    def end_epoch(self, m, epoch: int, acc: dict, trainer) -> tuple[dict, str]:
        t, seen = self.cfg.train, max(acc["seen"], 1)
        row = {"epoch": epoch + 1, "loss": round(acc["loss_sum"] / seen, 5), "top1": round(acc["correct"] / seen, 5),
               "lr": m.opt.param_groups[0]["lr"], "steps": acc["steps"], "seconds": round(acc["seconds"], 1)}
        if self.val_loader is not None and ((epoch + 1) % t.val_every == 0 or epoch + 1 == t.epochs):
            show = trainer.progress and sys.stderr.isatty()
            v = evaluate(averaged_module(m.extra["averaged"]), self.val_loader, device=self.device, desc="val",
                         progress=show)
            row.update(val_loss=round(v["loss"], 5), val_top1=round(v["top1"], 5), val_top5=round(v["top5"], 5))
        msg = f"epoch {epoch + 1}/{t.epochs}: loss {row['loss']:.4f} train top-1 {row['top1']:.4f}"
        if "val_top1" in row:
            msg += f" val loss {row['val_loss']:.4f} top-1 {row['val_top1']:.4f}"
        self.last_row = row
        return row, msg + f" lr {row['lr']:.5f} ({row['seconds']} s)"

    def save_best(self, trainer, m: Member) -> None:
        polyak, row = averaged_module(m.extra["averaged"]), self.last_row
        self.rf.save_best(lambda p: save_classifier(p, polyak, epoch=row["epoch"], metrics=row, **self.meta))

    def payload(self) -> dict:
        return {"classes": self.classes}

    def polyak(self, record: dict) -> torch.nn.Module:
        """The Polyak-averaged network of a member's record."""
        model, opt = self.build(0, self.seed, record)
        m = Member(0, self.seed, model, opt)
        self.setup(m, record)
        return averaged_module(m.extra["averaged"])


@releases_run_lock
def train_classifier(cfg: ClassifierConfig, out_dir: str, device: torch.device | str = "cpu", *,
                     resume: bool = True, progress: bool = True) -> str:
    """Train ``cfg`` into the run folder ``out_dir``; return the path of ``model.pt``.

    A run found in ``out_dir`` resumes (``resume=False`` refuses it; see :mod:`.run` for the
    rule). The run is a :class:`.trainer.Trainer`'s (``train.max_steps``,
    ``train.checkpoint_every``, ``train.workers``, torchrun, autocast)."""
    validate_config(cfg)
    device = torch.device(device)
    t, m = cfg.train, cfg.model
    line = prepare_init(m)  # before the config is compared and saved: it records the weights
    if line:
        print(f"{COMMAND}: {line}", file=sys.stderr)
    rf = RunFolder(out_dir, COMMAND, KIND, cfg, resume=resume, metric="val_top1", write=dist_info()[0] == 0,
                   free=FREE_KEYS).check()
    state = rf.load_state()
    train_set = build_classification_set(cfg, cfg.data.train_split, transform=train_transform(m.input_size, t,
                                                                                              seed=t.seed))
    classes = train_set.classes
    if state is not None and list(state["classes"]) != classes:
        raise UserError(f"training state {rf.state_path}: trained on classes {state['classes']}, the data now has {classes}")
    val_set = _validation_set(cfg, classes)
    task = _ClassifierTask(cfg, rf, train_set, _val_loader(val_set, t), device)
    trainer = Trainer(task, rf, device)
    if trainer.done and os.path.isfile(rf.model_path) and not rf.config_changed:
        rf.say(f"{rf.out_dir} is already trained ({trainer.done}): {rf.model_path}")
        return rf.model_path
    counts = train_set.class_counts()
    rf.say(f"{len(train_set)} training images in {len(classes)} classes ("
           + ", ".join(f"{c} {n}" for c, n in zip(classes, counts)) + ")"
           + (f"; {len(val_set)} validation images ({cfg.data.val_split})" if val_set is not None else ""))
    if len(train_set) < t.batch_size:
        raise UserError(f"{train_set.source}: {len(train_set)} training images, fewer than train.batch_size {t.batch_size}")
    rf.start()
    trainer.fit(progress)
    record = trainer.records[0]
    last = rf.rows[-1] if rf.rows else {}
    polyak = task.polyak(record)
    rf.save_model(lambda p: save_classifier(p, polyak, epoch=record["epochs"], metrics=last, **task.meta))
    return rf.model_path


def _validation_set(cfg: ClassifierConfig, classes):
    t = cfg.train
    if t.val_every > 0 and cfg.data.val_split and cfg.data.val_split != cfg.data.train_split:
        if cfg.data.format != "imagefolder" or has_split(cfg.data.root, cfg.data.val_split):
            return build_classification_set(cfg, cfg.data.val_split, classes=classes,
                                            transform=eval_transform(cfg.model.input_size))
    return None


def _val_loader(val_set, t):
    if val_set is None:
        return None
    return torch.utils.data.DataLoader(val_set, batch_size=max(t.batch_size, 128), num_workers=t.workers)


__all__ = ["train_classifier", "build_classifier", "COMMAND", "KIND"]
