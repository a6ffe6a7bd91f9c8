"""The one run-level loop every trainer uses (the detector of either kind, MultiBox, the classifier).

A trainer describes its run as a :class:`Task` (members x epochs x steps); :class:`Trainer` runs it:

- members in order, each built by ``task.build`` (its model and optimizer), DDP-wrapped under
  torchrun, one :class:`.loop.StepLoop` each (the rate of the step, autocast, clipping, the
  divergence check before ``opt.step()``, the task's step hooks, e.g. Polyak averaging);
- epochs of steps: epoch e's image indices from :func:`detector.sampling.epoch_steps` seeded
  ``seed(member seed, e)`` (each rank its share), built by the task's batcher in the
  ``train.workers`` processes of :func:`.loop.step_loader` (key ``(member seed, e, rank, 2)``),
  the global torch stream (dropout) seeded per step ``seed(member seed, e, rank, 1, step)``;
- the rate of every step from the task's :class:`Schedule` (one family: steps of ``gamma`` at
  given epochs or every N epochs, or cosine; a linear warm-up; linear scaling under torchrun);
- ``train_state.pt`` through the :class:`.run.RunFolder`: ``{"members": [record, ...], ...}``,
  a record per member started (weights, optimizer, epochs, the step inside the epoch and its
  partial metrics, steps taken, best validation, and the task's own state), saved after every
  epoch, every ``checkpoint_every`` steps and when ``max_steps`` stops the run; a killed run
  resumes from it and ends where an unbroken one ends, bitwise;
- after every epoch the task's row (its validation included) into ``metrics.jsonl`` /
  ``curves.png`` (:meth:`RunFolder.log`), the best validation tracked per member
  (``task.metric``) and ``task.save_best`` called when it improves.

Designed after detectron2's ``TrainerBase`` with hooks, mmengine's ``Runner`` and pytorch-ignite's
``Engine``, reduced to what these trainers share.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field

import torch
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

from ..sampling import epoch_steps, image_shards
from .devices import barrier, dist_info
from .loop import StepLoop, all_ranks_agree, lr_at, lr_scale, seed, step_loader
from .run import RunFolder


#: settings a resume may change (they do not change the result): see :class:`detector.config.TrainConfig`
FREE_KEYS = ("train.workers", "train.max_steps", "train.checkpoint_every")


@dataclass
class Schedule:
    """The learning rate of every step: ``lr x scale``, times ``gamma`` per decay passed, with a
    linear warm-up of ``warmup_steps`` (:func:`.loop.lr_at`). Decays: once each epoch of
    ``decay_epochs`` is reached (the detector's ``train.lr_steps``), or every ``every_epochs``
    epochs counted in steps (the classifier's 0.96 every 8 epochs); or, with ``cosine``, a cosine
    from the rate to 0 over ``epochs`` epochs (MultiBox)."""

    lr: float
    gamma: float = 1.0
    decay_epochs: tuple = ()
    every_epochs: float = 0.0
    cosine: bool = False
    epochs: int = 1
    warmup_steps: int = 0
    scale: float = 1.0

    def at(self, epoch: int, step: int, per_epoch: int) -> float:
        """The rate of step ``step`` (from 0) of epoch ``epoch`` (from 0) of ``per_epoch`` steps."""
        g = epoch * per_epoch + step
        if self.cosine:
            t = min(1.0, g / max(1, self.epochs * per_epoch))
            return lr_at(self.lr * 0.5 * (1 + math.cos(math.pi * t)), g, warmup_steps=self.warmup_steps,
                         scale=self.scale)
        if self.every_epochs:
            decays = g // max(1, int(round(self.every_epochs * per_epoch)))
        else:
            decays = sum(1 for s in self.decay_epochs if epoch >= s)
        return lr_at(self.lr, g, decays=decays, gamma=self.gamma, warmup_steps=self.warmup_steps, scale=self.scale)


@dataclass
class Member:
    """One member being trained: its model (``net`` the DDP-wrapped one), optimizer, loop and
    where its record stands; ``extra`` the task's own objects (e.g. the Polyak average)."""

    index: int
    seed: int
    model: torch.nn.Module
    opt: torch.optim.Optimizer
    epochs: int = 0
    step: int = 0
    partial: dict | None = None
    steps: int = 0
    best: dict | None = None
    saved_steps: int = 0
    net: torch.nn.Module | None = None
    loop: StepLoop | None = None
    extra: dict = field(default_factory=dict)


class Task:
    """What a trainer supplies (override what differs; see the module docstring).

    Attributes: ``members``, ``epochs``, ``seed`` (member i's seed is ``seed + 1000 i``),
    ``size`` (images of the split), ``per_step`` (images per step), ``keep_last`` (a short
    last step of the remainder, else dropped), ``max_steps_per_epoch``,
    ``max_steps`` / ``checkpoint_every`` / ``workers`` (the ``train.*`` settings), ``clip``,
    ``hint`` (what the divergence error says to lower), ``metric`` (the validation metric of
    best, higher better; None: no best), ``schedule`` (a :class:`Schedule`), ``batcher`` (with
    ``batch(indices, generator)``, returning a batch with ``.to(device, non_blocking=)``, or None
    for a step without data) and ``build_device`` (where the batcher builds)."""

    members, epochs, seed, size, per_step = 1, 1, 0, 0, 1
    max_steps_per_epoch: int | None = None
    keep_last = False
    unused_parameters = False  # DDP's find_unused_parameters: a model whose loss leaves some unused
    members_named = False  # the detector's: "1 member(s) x E epochs" even for one member
    max_steps = checkpoint_every = workers = 0
    clip, hint, metric = 0.0, "lower train.lr", None
    schedule: Schedule
    batcher = None

    def build(self, index: int, seed_: int, record: dict | None) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
        """Member ``index``'s model (on the device) and optimizer (its record is loaded after)."""
        raise NotImplementedError

    def setup(self, m: Member, record: dict | None) -> None:
        """The task's own objects of member ``m`` into ``m.extra`` (from its record on a resume)."""

    def state(self, m: Member) -> dict:
        """The task's own state of member ``m`` for its record (tensors and plain data)."""
        return {}

    def hooks(self, m: Member) -> list:
        """Step hooks of member ``m``'s loop (``before_step(loop)`` / ``after_step(loop)``)."""
        return []

    def label(self, m: Member, epoch: int) -> str:
        return f"member {m.index + 1}/{self.members} epoch {epoch + 1}/{self.epochs}"

    def where(self, m: Member, epoch: int, step: int) -> str:
        """The place named by the divergence error."""
        return f"member {m.index + 1} epoch {epoch + 1}"

    def loss(self, m: Member, batch) -> tuple:
        """``(output, loss)`` of one step (run under autocast)."""
        raise NotImplementedError

    def new_metrics(self) -> dict:
        return {"loss": 0.0, "steps": 0}

    def count(self, acc: dict, out, batch, loss: float) -> None:
        """A step's numbers into the epoch's running metrics ``acc`` (plain data: saved mid-epoch)."""
        acc["loss"] += loss
        acc["steps"] += 1

    def end_epoch(self, m: Member, epoch: int, acc: dict, trainer: Trainer) -> tuple[dict, str]:
        """``(metrics row, console line)`` of member ``m``'s epoch, its validation included."""
        raise NotImplementedError

    def best_state(self, m: Member) -> dict:
        """What a member's best record keeps beside the metric and the epoch."""
        return {}

    def save_best(self, trainer: Trainer, m: Member) -> None:
        """Write best.pt after member ``m``'s validation improved."""

    def note(self, kind: str, text: str) -> None:
        """A damaged image met by the batcher (in this process or a worker), told once by the task."""

    def payload(self) -> dict:
        """Keys of train_state.pt beside ``members``."""
        return {}


class Trainer:
    """Runs a :class:`Task` in a run folder: :attr:`done` (why nothing is left, or ""), :meth:`fit`."""

    def __init__(self, task: Task, rf: RunFolder, device: torch.device):
        self.task, self.rf, self.device = task, rf, torch.device(device)
        state = rf.load_state()
        self.records: list[dict] = list(state["members"]) if state is not None else []
        self.rank, self.world = dist_info()
        self.stopped, self.progress = False, True
        self.loader = self.sampler = None
        M, E, t = task.members, task.epochs, task
        complete = len(self.records) >= M and all(r["epochs"] >= E for r in self.records[:M])
        at_max = bool(t.max_steps) and self.steps_total() >= t.max_steps
        trained = f"{M} member(s) x {E} epochs" if M > 1 or t.members_named else f"{E} epochs"
        self.done = trained if complete else f"train.max_steps {t.max_steps}" if at_max else ""

    def steps_total(self) -> int:
        return sum(r.get("steps", 0) for r in self.records)

    def fit(self, progress: bool = True) -> None:
        """Every member in order, each from where its record stopped, until ``max_steps``."""
        t, records = self.task, self.records
        M, E = t.members, t.epochs
        self.progress = progress
        if self.done:
            return
        m0 = next(i for i in range(M) if i >= len(records) or records[i]["epochs"] < E)
        if records and m0 < len(records):
            s0 = records[m0].get("step", 0)
            self.rf.say(f"resuming {t.label(_Stub(m0), records[m0]['epochs'])}" + (f", after its step {s0}" if s0 else ""))
        elif records:
            self.rf.say(f"resuming {t.label(_Stub(m0), 0)}")
        if self.loader is None:
            self.loader, self.sampler = step_loader(t.batcher, t.workers, self.device, self.rank)
        for member in range(m0, M):
            if member < len(records) and records[member]["epochs"] >= E:
                continue
            self.train_member(member, progress)
            if self.stopped:
                break

    def train_member(self, index: int, progress: bool) -> None:
        """Member ``index``'s epochs from its record (or fresh), its row and state saved after each."""
        t, rf = self.task, self.rf
        rec = self.records[index] if index < len(self.records) else None
        seed_ = t.seed + 1000 * index
        model, opt = t.build(index, seed_, rec)
        m = Member(index, seed_, model, opt)
        if rec is not None:
            model.load_state_dict(rec["model"])
            opt.load_state_dict(rec["optimizer"])
            m.epochs, m.best, m.step = rec["epochs"], rec.get("best"), rec.get("step", 0)
            m.partial, m.steps = rec.get("partial"), rec.get("steps", 0)
        m.saved_steps = m.steps
        t.setup(m, rec)
        m.loop = StepLoop(opt, [p for p in model.parameters() if p.requires_grad], self.device, clip=t.clip,
                          hint=t.hint, hooks=t.hooks(m))
        m.net = DDP(model, find_unused_parameters=t.unused_parameters) if self.world > 1 else model
        for epoch in range(m.epochs, t.epochs):
            acc, cut = self.train_epoch(m, epoch, progress)
            if cut:
                return
            row, line = t.end_epoch(m, epoch, acc, self)
            improved = False
            if t.metric and row.get(t.metric) is not None:
                if m.best is None or row[t.metric] > m.best[t.metric]:
                    m.best = {t.metric: row[t.metric], "epoch": epoch + 1, **t.best_state(m)}
                    improved = True
            m.epochs = epoch + 1
            self.put(m)
            rf.log(row, line)  # the row first, then the state that covers it
            if improved:
                t.save_best(self, m)
            self.save_state()
            if self.stopped:
                if epoch + 1 < t.epochs or index + 1 < t.members:
                    rf.say(f"stopped at train.max_steps {t.max_steps} ({t.label(m, epoch)} done); "
                           "a resume with a larger train.max_steps trains on")
                return

    def plan(self, m: Member, epoch: int) -> list[list[int]]:
        """The image indices of this rank's steps of member ``m``'s epoch ``epoch``."""
        t = self.task
        steps = epoch_steps(t.size, self.rank, self.world, seed(m.seed, epoch), t.per_step)
        if t.keep_last:  # the short remainder as a last step (the same length on every rank)
            order = image_shards(t.size, self.rank, self.world, seed(m.seed, epoch))
            if len(order) % t.per_step:
                steps.append([int(i) for i in order[len(steps) * t.per_step:]])
        return steps[:t.max_steps_per_epoch] if t.max_steps_per_epoch else steps

    def train_epoch(self, m: Member, epoch: int, progress: bool) -> tuple[dict, bool]:
        """One epoch of member ``m`` from its step ``m.step``; ``(running metrics, cut by max_steps)``."""
        t, rank, world, device, sampler = self.task, self.rank, self.world, self.device, self.sampler
        t_epoch = time.time()
        m.model.train()
        sampler.steps = self.plan(m, epoch)
        sampler.key, sampler.start = (m.seed, epoch, rank, 2), m.step
        per_epoch = len(sampler.steps)
        acc = dict(m.partial) if m.partial else dict(t.new_metrics(), seconds=0.0)
        acc = {k: list(v) if isinstance(v, list) else v for k, v in acc.items()}
        bar = tqdm(self.loader, total=len(sampler), desc=t.label(m, epoch),
                   disable=not (progress and rank == 0 and sys.stderr.isatty()), leave=False)
        cut, step = False, m.step - 1
        for step, b, notes in bar:
            for kind_, text in notes:
                t.note(kind_, text)
            # dropout: seeded per step, so that a resume inside the epoch draws what an unbroken run draws
            torch.manual_seed(seed(m.seed, epoch, rank, 1, step))
            if all_ranks_agree(b is not None, world, device):  # else no data (on some rank): all skip it
                b = b.to(device, non_blocking=True)
                out = m.loop.step(lambda b=b: t.loss(m, b), t.schedule.at(epoch, step, per_epoch),
                                  where=t.where(m, epoch, step))
                t.count(acc, out, b, m.loop.last_loss)
                bar.set_postfix(loss=f"{m.loop.last_loss:.3f}")
                m.steps += 1
            self.stopped = bool(t.max_steps) and self.steps_total() + (m.steps - m.saved_steps) >= t.max_steps
            every = t.checkpoint_every
            if step + 1 < per_epoch and (self.stopped or (every and (step + 1) % every == 0)):
                m.step, m.partial = step + 1, dict(acc, seconds=acc["seconds"] + time.time() - t_epoch)
                self.put(m)
                self.save_state()
                cut = self.stopped
            if cut:
                break
        bar.close()
        m.step, m.partial = 0, None
        if cut:
            self.rf.say(f"stopped at train.max_steps {t.max_steps} ({t.label(m, epoch)}, step {step + 1}/{per_epoch}); "
                        "a resume with a larger train.max_steps trains on")
        acc["seconds"] += time.time() - t_epoch
        return acc, cut

    def put(self, m: Member) -> None:
        """Member ``m``'s record (its resumable state) into the records."""
        rec = {"model": {k: v.detach().cpu() for k, v in m.model.state_dict().items()},
               "optimizer": m.opt.state_dict(), "epochs": m.epochs, "step": m.step, "partial": m.partial,
               "steps": m.steps, "best": m.best, **self.task.state(m)}
        if m.index < len(self.records):
            self.records[m.index] = rec
        else:
            self.records.append(rec)
        m.saved_steps = m.steps

    def save_state(self) -> None:
        self.rf.save_state({"members": self.records, **self.task.payload()},
                           epochs_done=sum(r["epochs"] for r in self.records))
        barrier()


@dataclass
class _Stub:
    index: int


__all__ = ["FREE_KEYS", "Member", "Schedule", "Task", "Trainer", "lr_scale"]
