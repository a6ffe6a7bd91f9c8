"""The one step loop every trainer uses (the detector of either kind, MultiBox, the classifier).

A trainer supplies its model(s), its batches, its loss (a function returning ``(output, loss)``),
its optimizer and its schedule; :class:`StepLoop` owns what a step does the same everywhere:

- the learning rate of the step (:func:`lr_at`: steps of ``gamma`` with a linear warm-up, of a
  rate scaled by :func:`lr_scale` under torchrun), set on every parameter group;
- autocast (:func:`autocast`), ``zero_grad``, ``backward``, gradient clipping;
- the divergence check, ONE rule: a loss that is not finite stops the run with one
  :class:`~backbone.errors.UserError` line BEFORE ``opt.step()``, so the weights saved so far
  stay finite;
- hooks: :attr:`HOOKS` (process-wide, e.g. :func:`stop_after` of the tests of resume) and the
  loop's own, called before every step (``before_step(loop)``) and after it (``after_step(loop)``).

Per-step seeds come from :func:`seed` (one function: every random stream of a trainer is seeded
by its parts, so a resumed run draws what an unbroken one draws), the detector's batches from
:func:`step_loader` (``train.workers`` processes, batch ``(seed parts, step)``-seeded in whichever
process builds it). The run around the steps (members, epochs, resume, ``max_steps``,
validation, the schedule) is :class:`.trainer.Trainer`'s; the folder, its state file and its
log are :class:`.run.RunFolder`'s.

Designed after detectron2's ``TrainerBase`` and hooks and pytorch-ignite's ``Engine`` (events
around a step function), reduced to what these trainers share.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable

import numpy as np
import torch
import torch.distributed as dist

from backbone.devices import autocast as _autocast
from backbone.errors import UserError

from ..sampling import StepSampler

#: hooks of every loop of this process: objects with ``before_step(loop)`` and/or ``after_step(loop)``
HOOKS: list = []


def seed(*parts: int) -> int:
    """A 32-bit seed from integer parts (``numpy.random.SeedSequence``)."""
    return int(np.random.SeedSequence(list(parts)).generate_state(1)[0])


def lr_scale(world: int, reference_world_size: int) -> float:
    """The linear scaling rule: ``world`` processes take ``world`` times the images per step of
    one, so the rate is ``lr x world / reference_world_size``."""
    return world / reference_world_size


def lr_at(base: float, step: int, *, decays: int = 0, gamma: float = 1.0, warmup_steps: int = 0,
          scale: float = 1.0) -> float:
    """The schedule of every trainer: ``base x scale x gamma ** decays`` (``decays`` the steps of
    the schedule passed), times ``(step + 1) / warmup_steps`` during the warm-up (``step``
    counted from 0 over the whole run)."""
    lr = base * scale * (gamma ** decays)
    if warmup_steps and step < warmup_steps:
        lr *= (step + 1) / warmup_steps
    return lr


def autocast(device: torch.device):
    """The device policy's autocast (:func:`backbone.devices.autocast`: bfloat16 on CUDA,
    float32 on the CPU, as inference)."""
    return _autocast(device)


def all_ranks_agree(ok: bool, world: int, device: torch.device) -> bool:
    """True when ``ok`` holds on every rank (one all-reduce under torchrun): a step that one
    rank cannot take is skipped by all of them, or the others would wait in DDP's all-reduce."""
    if world == 1:
        return ok
    flag = torch.tensor([1 if ok else 0], dtype=torch.int32, device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item())


class StepLoop:
    """One optimizer step at a time: :meth:`step` with the trainer's loss function.

    ``params``: the parameters clipped to ``clip`` (global norm; 0: no clipping). ``where()``
    names the place in the run for the divergence error, ``hint`` what to lower. ``steps`` counts
    the steps taken by this loop (this call of the trainer), ``last_loss`` the last loss."""

    def __init__(self, opt: torch.optim.Optimizer, params: Iterable[torch.Tensor], device: torch.device, *,
                 clip: float = 0.0, hint: str = "lower train.lr", hooks: Iterable = ()):
        self.opt, self.params, self.device = opt, list(params), device
        self.clip, self.hint, self.hooks = clip, hint, list(hooks)
        self.steps, self.last_loss, self.where = 0, None, ""

    def _call(self, event: str) -> None:
        for h in [*HOOKS, *self.hooks]:
            fn = getattr(h, event, None)
            if fn is not None:
                fn(self)

    def step(self, loss_fn: Callable[[], tuple], lr: float | None = None, *, where: str = ""):
        """Set ``lr`` (when given) on every group, run ``loss_fn()`` (``(output, loss)``) under
        autocast, back-propagate, clip, check the loss, step. Returns the output."""
        self.where = where
        self._call("before_step")
        if lr is not None:
            for g in self.opt.param_groups:
                g["lr"] = lr
        with autocast(self.device):
            out, loss = loss_fn()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.clip:
            torch.nn.utils.clip_grad_norm_(self.params, self.clip)
        value = loss.item()
        if not math.isfinite(value):
            raise UserError(f"training diverged (loss {value}){' at ' + where if where else ''}: {self.hint}")
        self.opt.step()
        self.steps += 1
        self.last_loss = value
        self._call("after_step")
        return out


class _StopAfter:
    def __init__(self, n: int):
        self.n = n

    def before_step(self, loop: StepLoop) -> None:
        self.n -= 1
        if self.n < 0:
            raise KeyboardInterrupt


@contextlib.contextmanager
def stop_after(n: int):
    """Within the block, every trainer of this process stops as if killed (``KeyboardInterrupt``)
    before its ``n+1``-th optimizer step (tests of resume)."""
    hook = _StopAfter(n)
    HOOKS.append(hook)
    try:
        yield hook
    finally:
        HOOKS.remove(hook)


class StepBatches(torch.utils.data.Dataset):
    """A step's batch from its :class:`~detector.sampling.StepSampler` key ``((seed parts),
    step, indices)``: the generator is seeded by the parts and the step alone, so the batch does
    not depend on the process (main or worker) that builds it. Yields ``(step, batch or None,
    notes)``: ``notes`` the ``(kind, file)`` of the damaged images met
    (:class:`detector.io.images.ImageReads`), counted by the main process."""

    def __init__(self, batcher):
        self.batcher = batcher

    def __getitem__(self, key):
        parts, step, indices = key
        batch = self.batcher.batch(list(indices), torch.Generator().manual_seed(seed(*parts, step)))
        notes = list(getattr(self.batcher, "notes", ()))  # truncated / undecodable images: told to the main process
        if notes:
            del self.batcher.notes[:]
        return step, batch, notes


def _as_is(item):
    return item


def step_loader(batcher, workers: int, device: torch.device, rank: int):
    """The training ``DataLoader`` (``workers`` processes, kept across epochs and members;
    pinned memory on CUDA) and its :class:`StepSampler`, set before each epoch's iteration."""
    sampler = StepSampler([], None)
    loader = torch.utils.data.DataLoader(
        StepBatches(batcher), sampler=sampler, batch_size=None, collate_fn=_as_is, num_workers=workers,
        pin_memory=workers > 0 and device.type == "cuda", persistent_workers=workers > 0,
        generator=torch.Generator().manual_seed(rank))  # its own generator: the global one seeds dropout
    return loader, sampler


__all__ = ["HOOKS", "StepBatches", "StepLoop", "all_ranks_agree", "autocast", "lr_at", "lr_scale", "seed",
           "step_loader", "stop_after"]
