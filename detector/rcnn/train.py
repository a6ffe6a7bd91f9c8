"""R-CNN's training pieces for the shared engine (:mod:`detector.engine.train_detector`): a
member, a batch of warped regions, the loss. The engine owns the loop, optimizer, schedule,
resume and DDP; a detector kind provides these."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from ..batching import BatcherBase
from ..boxes import encode_boxes
from ..classification.init import apply_init
from ..config import DetectorConfig
from ..ensemble import RegionOutputs
from ..sampling import sample_regions
from ..transforms import to_tensor_image
from .region_classifier import RegionClassifier
from .warp import warp_regions


def build_member(cfg: DetectorConfig, num_classes: int, seed: int | None = None, *, inference: bool = False
                 ) -> RegionClassifier:
    """A region classifier seeded by ``seed``, its backbone from ``model.init`` if set (not for
    ``inference``: the weights then come from a checkpoint, and there are no aux heads)."""
    if seed is not None:
        torch.manual_seed(seed)
    m = cfg.model
    model = RegionClassifier(m.arch, num_classes, aux_logits=m.aux_logits and not inference, bbox_reg=m.bbox_reg,
                             transform_input=bool(m.transform_input))
    if m.init and not inference:
        apply_init(model, m.init)
    return model


class RegionBatch(NamedTuple):
    crops: torch.Tensor                 # (N, 3, S, S) warped regions
    labels: torch.Tensor                # (N,) 0 = background
    targets: torch.Tensor | None        # (N, 4) box-regression targets (model.bbox_reg), else None

    def pin_memory(self) -> RegionBatch:
        """In page-locked memory (the ``DataLoader``'s ``pin_memory`` calls this)."""
        return RegionBatch(*(None if t is None else t.pin_memory() for t in self))

    def to(self, device: torch.device, non_blocking: bool = False) -> RegionBatch:
        return RegionBatch(*(None if t is None else t.to(device, non_blocking=non_blocking) for t in self))


class RegionBatcher(BatcherBase):
    """Builds training batches of warped regions from images, proposals and ground truth:
    per image ``batch_size / images_per_batch`` regions, ``fg_fraction`` of them foreground
    (the image cache, flip and labelling: :class:`detector.batching.BatcherBase`)."""

    def __init__(self, cfg: DetectorConfig, dataset, proposals, device: torch.device):
        t = cfg.train
        super().__init__(dataset.records, proposals, flip=t.flip, fg_iou=t.fg_iou, bg_iou_low=t.bg_iou_low,
                         max_proposals=t.max_proposals, cache_images=t.cache_images, device=device)
        self.cfg = cfg
        self.dataset = dataset

    def batch(self, indices, gen: torch.Generator) -> RegionBatch | None:
        t, m, r = self.cfg.train, self.cfg.model, self.cfg.model.rcnn
        per_image = max(1, t.batch_size // len(indices))
        crops, labels, targets = [], [], []
        for i in indices:
            one = self.labelled(i, gen)
            if one is None:  # cannot be decoded: left out of the batch
                continue
            pick = sample_regions(one.labels, per_image, t.fg_fraction, gen)
            if len(pick) == 0:
                continue
            timg = to_tensor_image(one.image, self.device)
            boxes = one.boxes[pick]
            crops.append(warp_regions(timg, boxes, r.input_size, r.context_pad))
            labels.append(one.labels[pick])
            if m.bbox_reg:
                matched = one.gt[one.matches[pick]] if len(one.gt) else boxes
                targets.append(encode_boxes(matched.float(), boxes.float()))
        if not crops:
            return None
        reg = torch.cat(targets).to(self.device) if targets else None
        return RegionBatch(torch.cat(crops), torch.cat(labels).to(self.device), reg)


def param_groups(model: torch.nn.Module, cfg: DetectorConfig) -> list[dict]:
    """One group: every trainable parameter at ``train.weight_decay`` (R-CNN's fine-tuning)."""
    return [{"params": [p for p in model.parameters() if p.requires_grad], "weight_decay": cfg.train.weight_decay}]


def forward(net, batch: RegionBatch) -> RegionOutputs:
    return net(batch.crops)


def region_loss(out: RegionOutputs, batch: RegionBatch, cfg: DetectorConfig):
    """Cross-entropy (+ aux heads at aux_weight) + smooth-L1 box regression on foreground."""
    y, reg_targets = batch.labels, batch.targets
    loss = F.cross_entropy(out.logits, y)
    parts = {"cls": loss.item()}
    for a in out.aux_logits:
        loss = loss + cfg.train.aux_weight * F.cross_entropy(a, y)
    if out.deltas is not None:
        fg = torch.nonzero(y > 0).flatten()
        if reg_targets is not None and len(fg):
            pred = out.deltas[fg, y[fg] - 1]
            box = F.smooth_l1_loss(pred, reg_targets[fg], beta=1 / 9, reduction="sum") / max(1, len(y))
            loss = loss + cfg.train.bbox_weight * box
            parts["box"] = box.item()
        else:
            # no foreground: the box head still joins the graph (zero gradient), as DDP
            # (find_unused_parameters=False) needs every parameter to get one on every rank
            loss = loss + 0.0 * out.deltas.sum()
    return loss, parts
