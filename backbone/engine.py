"""The classification engine: the paper's training recipe over any torch Dataset.

Section 7's recipe: SGD with momentum 0.9, the learning rate multiplied by 0.96 every 8
epochs, Polyak averaging of the weights used at test time, auxiliary losses weighted 0.3.
The data side (random crops of 8%-100% of the area, photometric distortions) is the
dataset's transform, not this module's.

Pieces, each doing one job (the file formats of checkpoints and logs live in ``detector``):

- :func:`make_optimizer`, :func:`make_averaged_model`
- :func:`classification_loss`: main + ``aux_weight`` x each auxiliary head
- :func:`evaluate`: the evaluation pass (tqdm bar on a terminal only); the training step, the
  schedule, Polyak averaging per step and the resumable state are the detector engine's
  (``detector.engine.trainer``, the one run loop; ``detector.engine.train_classifier`` its task)
"""

from __future__ import annotations

import sys
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from .devices import to_device_format


def make_optimizer(model: nn.Module, lr: float, momentum: float = 0.9, weight_decay: float = 2e-4) -> torch.optim.SGD:
    """SGD with momentum; no weight decay on biases and normalisation parameters (1-d tensors)."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.SGD(groups, lr=lr, momentum=momentum)


def make_averaged_model(model: nn.Module, decay: float = 0.999) -> AveragedModel:
    """Polyak (exponential moving) average of ``model``'s parameters and buffers, updated with
    ``averaged.update_parameters(model)`` after every step; the first update copies."""
    if not 0.0 <= decay < 1.0:
        raise ValueError(f"Polyak decay must be in [0, 1), got {decay}")
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def classification_loss(output: Tensor | tuple, target: Tensor, aux_weight: float = 0.3) -> tuple[Tensor, Tensor]:
    """Cross-entropy of the main logits plus ``aux_weight`` x that of each auxiliary head
    (training-mode output ``(logits, aux2, aux1)``); returns ``(total loss, main logits)``."""
    if isinstance(output, tuple):
        logits, *aux = output
        loss = F.cross_entropy(logits, target)
        for a in aux:
            if a is not None:
                loss = loss + aux_weight * F.cross_entropy(a, target)
        return loss, logits
    return F.cross_entropy(output, target), output


def to_device(x: Tensor, device: torch.device) -> Tensor:
    """``x`` on ``device`` (channels-last images on the CPU: the device policy)."""
    return to_device_format(x.to(device, non_blocking=True), device)


@torch.inference_mode()
def evaluate(model: nn.Module, loader: Iterable, *, device: torch.device | str = "cpu",
             desc: str = "eval", progress: bool | None = None) -> dict[str, float]:
    """Single-pass evaluation on fixed-size batches: ``{"loss", "top1", "top5", "samples"}``."""
    device = torch.device(device)
    model.eval()
    if progress is None:
        progress = sys.stderr.isatty()
    loss_sum, top1, top5, seen = 0.0, 0, 0, 0
    for images, labels in tqdm(loader, desc=desc, unit="batch", disable=not progress, leave=False):
        images, labels = to_device(images, device), labels.to(device)
        out = model(images)
        logits = out[0] if isinstance(out, tuple) else out
        loss_sum += float(F.cross_entropy(logits, labels, reduction="sum"))
        k = min(5, logits.shape[1])
        topk = logits.topk(k, 1).indices
        top1 += int((topk[:, 0] == labels).sum())
        top5 += int((topk == labels[:, None]).any(1).sum())
        seen += labels.numel()
    d = max(seen, 1)
    return {"loss": loss_sum / d, "top1": top1 / d, "top5": top5 / d, "samples": seen}


def averaged_module(averaged: AveragedModel | nn.Module) -> nn.Module:
    """The network inside an :class:`AveragedModel` (its state dict has the plain key names)."""
    return averaged.module if isinstance(averaged, AveragedModel) else averaged


__all__ = [
    "averaged_module",
    "classification_loss",
    "evaluate",
    "make_averaged_model",
    "make_optimizer",
    "to_device",
]
