"""Region sampling both detector kinds share: label proposals by IoU with the ground truth and
draw a fixed foreground fraction (R-CNN's 32 foreground + 96 background of 128; Fast R-CNN's
25% of 64 per image), each rank's share of an epoch's images and its steps (the keys
a training ``DataLoader`` hands its workers)."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Sampler
from torchvision.ops import box_iou


def label_regions(proposals: Tensor, gt_boxes: Tensor, gt_labels: Tensor, fg_iou: float = 0.5, bg_iou_low: float = 0.0):
    """Label candidate regions: ground-truth boxes are prepended to the proposals.

    Returns (boxes (K, 4), labels (K,) with 0 = background and -1 = ignored, matched gt index
    (K,), best IoU (K,)). Foreground: IoU >= fg_iou with some gt box (the label of the best
    one). Background: bg_iou_low <= IoU < fg_iou. Below bg_iou_low: ignored.
    """
    boxes = torch.cat([gt_boxes.float(), proposals.float()], 0)
    if len(gt_boxes) == 0:
        labels = torch.zeros(len(boxes), dtype=torch.int64)
        best = torch.zeros(len(boxes))
        idx = torch.zeros(len(boxes), dtype=torch.int64)
        labels[best < bg_iou_low] = -1
        return boxes, labels, idx, best
    iou = box_iou(boxes, gt_boxes.float())
    best, idx = iou.max(dim=1)
    labels = gt_labels.long()[idx].clone()
    labels[best < fg_iou] = 0
    labels[best < bg_iou_low] = -1
    return boxes, labels, idx, best


def sample_regions(labels: Tensor, num: int, fg_fraction: float, generator: torch.Generator) -> Tensor:
    """Indices of ``num`` regions: up to ``num * fg_fraction`` foreground (label > 0) drawn
    without replacement, the rest background (label 0); when an image has too few of a kind,
    the other kind fills in (without replacement first, then with replacement)."""
    fg = torch.nonzero(labels > 0).flatten()
    bg = torch.nonzero(labels == 0).flatten()
    n_fg = min(int(round(num * fg_fraction)), len(fg))
    n_bg = min(num - n_fg, len(bg))
    if n_fg + n_bg < num and len(fg) > n_fg:
        n_fg = min(num - n_bg, len(fg))
    pick_fg = fg[torch.randperm(len(fg), generator=generator)[:n_fg]]
    pick_bg = bg[torch.randperm(len(bg), generator=generator)[:n_bg]]
    picked = torch.cat([pick_fg, pick_bg])
    short = num - len(picked)
    if short > 0 and len(picked) > 0:  # tiny images: repeat regions rather than shrink the batch
        picked = torch.cat([picked, picked[torch.randint(len(picked), (short,), generator=generator)]])
    return picked


def image_shards(n: int, rank: int, world: int, epoch_seed: int) -> np.ndarray:
    """This rank's share of a shuffled order of ``n`` images (same shuffle on every rank)."""
    order = np.random.default_rng(epoch_seed).permutation(n)
    # pad so that every rank gets the same number of images (DDP needs equal step counts)
    per = -(-n // world)
    order = np.concatenate([order, order[: per * world - n]]) if per * world > n else order
    return order[rank::world]


def epoch_steps(n: int, rank: int, world: int, epoch_seed: int, images_per_step: int) -> list[list[int]]:
    """The image indices of each of this rank's steps in an epoch: its :func:`image_shards`
    share cut into full steps of ``images_per_step`` (a short remainder is dropped)."""
    order = image_shards(n, rank, world, epoch_seed)
    return [[int(i) for i in order[s * images_per_step:(s + 1) * images_per_step]]
            for s in range(len(order) // images_per_step)]


class StepSampler(Sampler):
    """The keys of one epoch's steps from ``start`` on, for a ``DataLoader(batch_size=None)``:
    ``(key, step, image indices)``, ``key`` passed through (e.g. the seeds that make the
    step's random generator), so whichever worker builds a step builds the same batch."""

    def __init__(self, steps: list[list[int]], key, start: int = 0):
        self.steps, self.key, self.start = steps, key, start

    def __iter__(self):
        for s in range(self.start, len(self.steps)):
            yield self.key, s, tuple(self.steps[s])

    def __len__(self) -> int:
        return max(0, len(self.steps) - self.start)
