"""The fast kind's training pieces, called by the shared training engine (which owns the loop,
optimizer, schedule, resume and DDP):

- :func:`build_member` -> a fresh :class:`FastRCNN`;
- :class:`FastBatcher` -> :class:`Batch` of resized, normalised, padded images with sampled,
  labelled rois and box targets (Fast R-CNN: 2 images x 64 rois, 25% foreground);
- :func:`forward` and :func:`loss` (cross-entropy + smooth L1 on the foreground, as
  torchvision's ``fastrcnn_loss``).

The shared helpers (region labelling and sampling, flips, image normalisation and loading,
classifier checkpoints) are the project's (``detector.sampling``, ``detector.boxes``,
``detector.io.images``, ``detector.classification.init``); tests may pass others in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..boxes import encode_boxes as _encode_boxes
from ..boxes import flip_boxes as _flip_boxes
from ..classification.init import init_weights_file as _init_weights_file
from ..io.images import read_noted as _read_noted
from ..io.images import to_tensor_image as _to_tensor_image
from ..sampling import label_regions as _label_regions
from ..sampling import sample_regions as _sample_regions
from .model import FastOutputs, FastRCNN

#: model settings of the fast kind and their defaults (the keys :func:`build_member` reads)
MODEL_DEFAULTS = {
    "arch": "googlenet_bn", "tap": "inception4e", "roi_size": 7, "reduce_channels": 128, "fc_dim": 1024,
    "num_fc": 1, "fc_rank": 256, "norm": "bn", "sampling_ratio": 2, "transform_input": False, "dropout": 0.0,
    "canonical_scale": 224.0, "canonical_level": 4, "init": None,
}


def _get(cfg, key: str):
    if isinstance(cfg, Mapping):
        value = cfg.get(key, MODEL_DEFAULTS[key])
    else:
        value = getattr(cfg, key, MODEL_DEFAULTS[key])
    return MODEL_DEFAULTS[key] if value is None and key != "init" else value


def build_member(model_cfg, num_classes: int, seed: int, *, init_weights_file: Callable | None = None) -> FastRCNN:
    """A fresh :class:`FastRCNN` seeded by ``seed``.

    model_cfg: a mapping or an object with the keys of :data:`MODEL_DEFAULTS` (missing or None:
    the default). ``init``: a ``train-classifier`` checkpoint or a torchvision state dict of
    ``arch``, loaded into the trunk; ``init_weights_file(path, arch) -> state dict`` reads it
    (default: :func:`detector.classification.init.init_weights_file`)."""
    torch.manual_seed(seed)
    kw = {k: _get(model_cfg, k) for k in MODEL_DEFAULTS if k not in ("arch", "init")}
    arch = _get(model_cfg, "arch")
    tap = kw.pop("tap")
    if not isinstance(tap, str):
        tap = list(tap)
    model = FastRCNN(arch, num_classes, tap=tap, **kw)
    init = _get(model_cfg, "init")
    if init:
        reader = init_weights_file or _init_weights_file
        model.load_trunk(reader(init, arch), source=str(init))
    return model


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


def resize_factor(height: int, width: int, min_side: int, max_side: int | None) -> float:
    """Factor that makes the shorter side ``min_side``, the longer at most ``max_side``."""
    s = min_side / min(height, width)
    if max_side and max(height, width) * s > max_side:
        s = max_side / max(height, width)
    return s


def resize_image(image: Tensor, factor: float) -> tuple[Tensor, float, float]:
    """(3, H, W) float -> resized by ``factor`` (bilinear, antialiased when shrinking);
    returns (image, sx, sy) with the exact per-axis factors after rounding."""
    h, w = image.shape[-2:]
    nh, nw = max(1, round(h * factor)), max(1, round(w * factor))
    if (nh, nw) == (h, w):
        return image, 1.0, 1.0
    out = F.interpolate(image[None], size=(nh, nw), mode="bilinear", align_corners=False, antialias=factor < 1)[0]
    return out, nw / w, nh / h


def pad_images(images: Sequence[Tensor]) -> Tensor:
    """List of (3, h_i, w_i) -> (B, 3, H, W), zero (the mean) at the bottom and right."""
    H = max(im.shape[1] for im in images)
    W = max(im.shape[2] for im in images)
    out = images[0].new_zeros((len(images), 3, H, W))
    for i, im in enumerate(images):
        out[i, :, : im.shape[1], : im.shape[2]] = im
    return out


class FastBatcher:
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
        label_regions = label_regions or _label_regions
        sample_regions = sample_regions or _sample_regions
        flip_boxes = flip_boxes or _flip_boxes
        to_tensor_image = to_tensor_image or _to_tensor_image
        if len(records) != len(proposals):
            raise ValueError(f"{len(records)} records but {len(proposals)} proposal arrays")
        self.records = records
        self.proposals = [torch.as_tensor(np.asarray(p, np.float32).reshape(-1, 4)[:max_proposals]) for p in proposals]
        self.min_side, self.max_side = min_side, max_side
        self.rois_per_image, self.fg_fraction = rois_per_image, fg_fraction
        self.fg_iou, self.bg_iou_low, self.flip = fg_iou, bg_iou_low, flip
        self.crop, self.crop_tolerance = crop, crop_tolerance
        self.device = torch.device(device)
        self.label_regions, self.sample_regions, self.flip_boxes = label_regions, sample_regions, flip_boxes
        self.to_tensor_image, self.load_image = to_tensor_image, load_image
        self.encode_boxes = encode_boxes or _encode_boxes  # offsets of matched gt boxes from rois
        self.cache: dict | None = {} if len(records) <= cache_images else None
        #: ``(kind, file)`` of the truncated / undecodable images met (drained by the training loop)
        self.notes: list[tuple[str, str]] = []

    def image(self, i: int) -> Tensor | None:
        """Record ``i``'s decoded (H, W, 3) uint8 image; None when it cannot be decoded (left
        out, told in :attr:`notes`, as is a truncated JPEG: :func:`detector.io.images.read_noted`)."""
        if self.cache is not None and i in self.cache:
            return self.cache[i]
        path = self.records[i].path
        arr = self.load_image(path) if self.load_image is not None else _read_noted(path, self.notes)
        img = None if arr is None else torch.from_numpy(np.array(arr))
        if self.cache is not None:
            self.cache[i] = img
        return img

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
            rec = self.records[i]
            img = self.image(i)
            if img is None:  # cannot be decoded: left out of the batch
                continue
            props = self.proposals[i]
            gt = torch.as_tensor(np.asarray(rec.boxes, np.float32).reshape(-1, 4))
            gl = torch.as_tensor(np.asarray(rec.labels, np.int64).reshape(-1))
            width = img.shape[1]
            if self.flip and torch.rand(1, generator=generator).item() < 0.5:
                img = img.flip(1)
                props = self.flip_boxes(props, width)
                gt = self.flip_boxes(gt, width)
            cand, lab, idx, _ = self.label_regions(props, gt, gl, self.fg_iou, self.bg_iou_low)
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


def forward(net, batch: Batch) -> FastOutputs:
    """``net`` (a :class:`FastRCNN`, possibly DDP-wrapped) on a :class:`Batch`."""
    return net(batch.images, batch.boxes, image_sizes=batch.image_sizes)


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

