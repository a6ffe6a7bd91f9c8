"""The fast kind's training pieces, called by the shared training engine (which owns the loop,
optimizer, schedule, resume and DDP):

- :func:`build_member` -> a fresh :class:`FastRCNN` of the config's ``model.fast`` settings;
- :class:`FastBatcher` -> :class:`Batch` of resized, normalised, padded images with sampled,
  labelled rois and box targets (Fast R-CNN: 2 images x 64 rois, 25% foreground);
- :func:`forward` and :func:`loss` (cross-entropy + smooth L1 on the foreground, as
  torchvision's ``fastrcnn_loss``).

The shared helpers (the image cache, flips and labelling of :class:`detector.batching.BatcherBase`,
region sampling, the transforms of :mod:`detector.transforms`, classifier checkpoints) are the
project's; tests may pass others in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..batching import BatcherBase
from ..boxes import encode_boxes as _encode_boxes
from ..classification.init import init_weights_file as _init_weights_file
from ..config import DetectorConfig
from ..sampling import sample_regions as _sample_regions
from ..transforms import pad_images, resize_factor, resize_image
from ..transforms import to_tensor_image as _to_tensor_image
from .model import FastOutputs, FastRCNN, OnePassOutputs, RegionSampling


def build_member(cfg: DetectorConfig, num_classes: int, seed: int | None = None, *, inference: bool = False,
                 init_weights_file: Callable | None = None) -> FastRCNN:
    """A :class:`FastRCNN` of ``model.fast``'s settings seeded by ``seed`` (0 when None), its
    trunk from ``model.init`` if set (not for ``inference``: the weights come from a checkpoint):
    a ``train-classifier`` checkpoint or a torchvision state dict of ``model.arch``, read by
    ``init_weights_file(path, arch) -> state dict`` (default:
    :func:`detector.classification.init.init_weights_file`)."""
    torch.manual_seed(0 if seed is None else seed)
    m, f = cfg.model, cfg.model.fast
    tap = f.tap if isinstance(f.tap, str) else list(f.tap)
    model = FastRCNN(m.arch, num_classes, tap=tap, roi_size=f.roi_size, reduce_channels=f.reduce_channels,
                     fc_dim=f.fc_dim, num_fc=f.num_fc, fc_rank=f.fc_rank, norm=f.norm, sampling_ratio=f.sampling_ratio,
                     transform_input=bool(m.transform_input), dropout=f.dropout, proposer=proposer_settings(cfg))
    if m.init and not inference:
        reader = init_weights_file or _init_weights_file
        model.load_trunk(reader(m.init, m.arch), source=str(m.init))
    return model


def default_shapes(k: int) -> list[list[float]]:
    """K generic prior shapes (w, h) when ``proposals.trunk.priors`` is not set yet (a config
    built in code; train-detector writes the training boxes' k-means shapes before building):
    areas 16^2 .. 256^2 (log-spaced), aspect ratios 1/2, 1, 2 in turn."""
    out = []
    for j in range(k):
        side = 16.0 * 16.0 ** (j / max(1, k - 1))
        r = (0.5, 1.0, 2.0)[j % 3]
        out.append([round(side / r ** 0.5, 2), round(side * r ** 0.5, 2)])
    return out


def proposer_settings(cfg: DetectorConfig) -> dict | None:
    """The :class:`~detector.fast.proposer.TrunkProposer` settings of ``proposals.trunk`` when
    ``proposals.method`` is ``trunk``, else None (no proposal head)."""
    if not cfg.proposals.uses_trunk:
        return None
    t = cfg.proposals.trunk
    return dict(shapes=t.priors or default_shapes(t.num_priors), matching=t.matching, fg_iou=t.fg_iou,
                bg_iou=t.bg_iou, batch_size=t.batch_size, positive_fraction=t.positive_fraction, alpha=t.alpha,
                pre_nms=t.pre_nms, nms_iou=t.nms_iou, post_nms=cfg.proposal_limit)


@dataclass
class Batch:
    """One training step's input."""

    images: Tensor                 # (B, 3, H, W) normalised, zero-padded bottom / right
    image_sizes: list              # per image (h, w) after resizing
    boxes: list                    # per image (n_i, 4) sampled rois in its resized (cropped) pixels
    labels: Tensor                 # (sum n_i,) 0 = background, 1..C
    targets: Tensor                # (sum n_i, 4) BoxCoder targets (zero on background)
    indices: list                  # record indices of the images used

    def pin_memory(self) -> Batch:
        """In page-locked memory (the ``DataLoader``'s ``pin_memory`` calls this)."""
        return Batch(self.images.pin_memory(), self.image_sizes, [b.pin_memory() for b in self.boxes],
                     self.labels.pin_memory(), self.targets.pin_memory(), self.indices)

    def to(self, device, non_blocking: bool = False) -> Batch:
        def move(t):
            return t.to(device, non_blocking=non_blocking)
        return Batch(move(self.images), self.image_sizes, [move(b) for b in self.boxes], move(self.labels),
                     move(self.targets), self.indices)


class FastBatcher(BatcherBase):
    """Training batches for :class:`FastRCNN` from records, proposals and ground truth.

    records: objects with ``.path``, ``.boxes`` (N, 4) float32 xyxy, ``.labels`` (N,) 1..C,
    ``.width``, ``.height``; proposals: per record (N_i, 4) float array in its pixels.
    Per image: optional horizontal flip, resize (shorter side ``min_side``, longer at most
    ``max_side``), candidates = ground truth + proposals labelled by ``label_regions``
    (foreground IoU >= ``fg_iou``, background in [``bg_iou_low``, ``fg_iou``)), and
    ``rois_per_image`` of them drawn by ``sample_regions`` with ``fg_fraction`` foreground.
    ``crop``: train on a random ``crop`` x ``crop`` window of the resized image (fewer pixels
    per step, the same object scale); regions are labelled against the whole image and only
    those inside the window (to ``crop_tolerance`` px) are drawn. Decoded images are kept in
    memory for up to ``cache_images`` records.
    """

    def __init__(self, records, proposals, *, min_side: int, max_side: int | None, rois_per_image: int = 64,
                 fg_fraction: float = 0.25, fg_iou: float = 0.5, bg_iou_low: float = 0.0, flip: bool = True,
                 device="cpu", label_regions=None, sample_regions=None, flip_boxes=None, to_tensor_image=None,
                 load_image=None, encode_boxes=None, max_proposals: int | None = None, crop: int | None = None,
                 crop_tolerance: float = 4.0, cache_images: int = 3000):
        if len(records) != len(proposals):
            raise ValueError(f"{len(records)} records but {len(proposals)} proposal arrays")
        super().__init__(records, proposals, flip=flip, fg_iou=fg_iou, bg_iou_low=bg_iou_low,
                         max_proposals=max_proposals, cache_images=cache_images, device=device, load_image=load_image,
                         label_regions=label_regions, flip_boxes=flip_boxes)
        self.min_side, self.max_side = min_side, max_side
        self.rois_per_image, self.fg_fraction = rois_per_image, fg_fraction
        self.crop, self.crop_tolerance = crop, crop_tolerance
        self.sample_regions = sample_regions or _sample_regions
        self.to_tensor_image = to_tensor_image or _to_tensor_image
        self.encode_boxes = encode_boxes or _encode_boxes  # offsets of matched gt boxes from rois

    def _window(self, height: int, width: int, generator: torch.Generator) -> tuple[int, int, int, int]:
        """A random (x0, y0, x1, y1) crop window of at most crop x crop in a height x width image."""
        ch, cw = min(self.crop, height), min(self.crop, width)
        y0 = int(torch.randint(height - ch + 1, (1,), generator=generator))
        x0 = int(torch.randint(width - cw + 1, (1,), generator=generator))
        return x0, y0, x0 + cw, y0 + ch

    def batch(self, indices: Sequence[int], generator: torch.Generator) -> Batch | None:
        """The batch of records ``indices``; None when none of them has a region to sample."""
        images, sizes, boxes, labels, targets, used = [], [], [], [], [], []
        for i in indices:
            one = self.labelled(i, generator)
            if one is None:  # cannot be decoded: left out of the batch
                continue
            img, gt, cand, lab, idx = one
            factor = resize_factor(img.shape[0], img.shape[1], self.min_side, self.max_side)
            window = None
            if self.crop:
                window = self._window(round(img.shape[0] * factor), round(img.shape[1] * factor), generator)
                x0, y0, x1, y1 = (v / factor for v in window)
                tol = self.crop_tolerance / factor
                inside = ((cand[:, 0] >= x0 - tol) & (cand[:, 1] >= y0 - tol)
                          & (cand[:, 2] <= x1 + tol) & (cand[:, 3] <= y1 + tol))
                lab = torch.where(inside, lab, torch.full_like(lab, -1))
            pick = self.sample_regions(lab, self.rois_per_image, self.fg_fraction, generator)
            if len(pick) == 0:
                continue
            t = self.to_tensor_image(img, self.device)
            t, sx, sy = resize_image(t, factor)
            f = torch.tensor([sx, sy, sx, sy])
            roi = cand[pick].float() * f
            y = lab[pick].long()
            tgt = torch.zeros((len(pick), 4))
            fg = y > 0
            if fg.any():
                matched = gt[idx[pick][fg]].float() * f
                tgt[fg] = self.encode_boxes(matched, roi[fg])
            if window is not None:
                cx, cy, cx1, cy1 = window
                t = t[:, cy:cy1, cx:cx1]
                roi = roi - torch.tensor([cx, cy, cx, cy], dtype=roi.dtype)
            images.append(t)
            sizes.append(tuple(t.shape[-2:]))
            boxes.append(roi.to(self.device))
            labels.append(y)
            targets.append(tgt)
            used.append(int(i))
        if not images:
            return None
        return Batch(pad_images(images), sizes, boxes, torch.cat(labels).to(self.device),
                     torch.cat(targets).to(self.device), used)


@dataclass
class OnePassBatch:
    """One training step's input for a member that proposes (``proposals.method: trunk``): the
    images and their ground truth; the regions are drawn inside the pass
    (:meth:`FastRCNN.one_pass`), whose labels :func:`forward` records in ``labels``."""

    images: Tensor                 # (B, 3, H, W) normalised, zero-padded bottom / right
    image_sizes: list              # per image (h, w) after resizing (and cropping)
    targets: list                  # per image (boxes (G, 4) in its resized, cropped pixels, labels (G,) 1..C
                                   # [, more candidates (K, 4): selective search's, proposals.trunk.mix_ss])
    sampling: RegionSampling
    indices: list
    labels: Tensor | None = None   # the sampled regions' labels, set by forward

    def pin_memory(self) -> OnePassBatch:
        return OnePassBatch(self.images.pin_memory(), self.image_sizes,
                            [tuple(x.pin_memory() for x in t) for t in self.targets], self.sampling, self.indices)

    def to(self, device, non_blocking: bool = False) -> OnePassBatch:
        return OnePassBatch(self.images.to(device, non_blocking=non_blocking), self.image_sizes,
                            [tuple(x.to(device, non_blocking=non_blocking) for x in t) for t in self.targets],
                            self.sampling, self.indices)


class OnePassBatcher(FastBatcher):
    """Training batches of a member that proposes: per image the flip, the resize and the crop
    window of :class:`FastBatcher`, and the ground truth in the window's pixels (boxes clipped
    to it; a box with less than ``min_visible`` of its area inside is dropped, as
    albumentations' ``min_visibility``). ``proposals`` (per record, or None): more candidates
    for the training regions (``proposals.trunk.mix_ss``: selective search's), flipped, resized
    and cropped with the image (those inside the window, to ``crop_tolerance`` px, kept)."""

    def __init__(self, records, proposals=None, *, sampling: RegionSampling, min_visible: float = 0.5, **kwargs):
        self.mix = proposals is not None
        empty = [np.zeros((0, 4), np.float32)] * len(records)
        super().__init__(records, proposals if self.mix else empty, **kwargs)
        self.sampling, self.min_visible = sampling, float(min_visible)

    def batch(self, indices: Sequence[int], generator: torch.Generator) -> OnePassBatch | None:
        images, sizes, targets, used = [], [], [], []
        for i in indices:
            one = self.labelled(i, generator)
            if one is None:  # cannot be decoded: left out of the batch
                continue
            img, gt = one.image, one.gt.float()
            more = one.boxes[len(gt):].float()  # the flipped extra candidates (none unless mixed)
            gl = torch.as_tensor(np.asarray(self.records[i].labels, np.int64).reshape(-1))
            factor = resize_factor(img.shape[0], img.shape[1], self.min_side, self.max_side)
            t, sx, sy = resize_image(self.to_tensor_image(img, self.device), factor)
            gt = gt * torch.tensor([sx, sy, sx, sy])
            more = more * torch.tensor([sx, sy, sx, sy])
            if self.crop:
                x0, y0, x1, y1 = self._window(t.shape[1], t.shape[2], generator)
                t = t[:, y0:y1, x0:x1]
                tol = self.crop_tolerance
                inside = ((more[:, 0] >= x0 - tol) & (more[:, 1] >= y0 - tol)
                          & (more[:, 2] <= x1 + tol) & (more[:, 3] <= y1 + tol))
                more = more[inside] - torch.tensor([x0, y0, x0, y0], dtype=more.dtype)
                area = ((gt[:, 2] - gt[:, 0]) * (gt[:, 3] - gt[:, 1])).clamp(min=1e-6)
                gt = gt - torch.tensor([x0, y0, x0, y0], dtype=gt.dtype)
                gt[:, 0::2] = gt[:, 0::2].clamp(0, x1 - x0)
                gt[:, 1::2] = gt[:, 1::2].clamp(0, y1 - y0)
                seen = (gt[:, 2] - gt[:, 0]) * (gt[:, 3] - gt[:, 1])
                keep = (seen >= self.min_visible * area) & (gt[:, 2] - gt[:, 0] >= 1) & (gt[:, 3] - gt[:, 1] >= 1)
                gt, gl = gt[keep], gl[keep]
            images.append(t)
            sizes.append(tuple(t.shape[-2:]))
            targets.append((gt.to(self.device), gl.to(self.device)) + ((more.to(self.device),) if self.mix else ()))
            used.append(int(i))
        if not images:
            return None
        return OnePassBatch(pad_images(images), sizes, targets, self.sampling, used)


def forward(net, batch: "Batch | OnePassBatch") -> "FastOutputs | OnePassOutputs":
    """``net`` (a :class:`FastRCNN`, possibly DDP-wrapped) on a :class:`Batch`, or on a
    :class:`OnePassBatch` (the proposal head's pass; the sampled regions' labels are written
    to ``batch.labels``)."""
    if isinstance(batch, OnePassBatch):
        out = net(batch.images, None, image_sizes=batch.image_sizes, targets=batch.targets, sampling=batch.sampling)
        batch.labels = out.labels
        return out
    return net(batch.images, batch.boxes, image_sizes=batch.image_sizes)


def one_pass_loss(outputs: OnePassOutputs, bbox_weight: float = 1.0, proposal_weight: float = 1.0) -> tuple[Tensor, dict]:
    """:func:`loss` of the regions drawn in the pass + ``proposal_weight`` x the proposal
    head's loss (the sum of its parts). Returns (loss, {"cls", "box", "proposal"})."""
    total, parts = loss(outputs, outputs, bbox_weight)  # the outputs carry the labels and targets
    prop = sum(outputs.proposal_losses.values())
    parts["proposal"] = float(prop.detach())
    return total + proposal_weight * prop, parts


def loss(outputs: FastOutputs, batch: Batch, bbox_weight: float = 1.0) -> tuple[Tensor, dict]:
    """Cross-entropy over all sampled rois + ``bbox_weight`` x smooth L1 (beta 1/9) of the
    true class's deltas on the foreground, summed and divided by the number of rois (as
    torchvision's ``fastrcnn_loss``). Without foreground the box term is ``0 * deltas.sum()``:
    finite, and every parameter still gets a (zero) gradient, as DDP needs.
    Returns (loss, {"cls": float, "box": float})."""
    y = batch.labels
    cls = F.cross_entropy(outputs.logits, y)
    fg = torch.nonzero(y > 0).flatten()
    if len(fg):
        pred = outputs.deltas[fg, y[fg] - 1]
        box = F.smooth_l1_loss(pred, batch.targets[fg], beta=1 / 9, reduction="sum") / max(1, len(y))
    else:
        box = 0.0 * outputs.deltas.sum()
    total = cls + bbox_weight * box
    return total, {"cls": float(cls.detach()), "box": float(box.detach())}

