"""What both detector kinds' training batchers share: the decoded-image cache, the
horizontal flip and the labelling of the candidate regions (ground truth + proposals).
Each kind's batcher (:class:`detector.rcnn.RegionBatcher`, :class:`detector.fast.FastBatcher`)
subclasses :class:`BatcherBase` and makes its own batch from :meth:`BatcherBase.labelled`."""

from __future__ import annotations

from typing import Callable, NamedTuple, Sequence

import numpy as np
import torch
from torch import Tensor

from .boxes import flip_boxes as _flip_boxes
from .io.images import read_noted
from .sampling import label_regions as _label_regions


class Labelled(NamedTuple):
    """One record's image and labelled candidates, after the (random) flip."""

    image: Tensor      # (H, W, 3) uint8, flipped when the coin said so
    gt: Tensor         # (G, 4) float32 ground-truth boxes (flipped with the image)
    boxes: Tensor      # (N, 4) candidates: ground truth + proposals
    labels: Tensor     # (N,) 0 = background, 1..C, -1 = ignored
    matches: Tensor    # (N,) index into ``gt`` of each candidate's best match


class BatcherBase:
    """Records, their proposals and the shared per-image steps of a training batch.

    records: objects with ``.path``, ``.boxes`` (N, 4) xyxy, ``.labels`` (N,) 1..C;
    proposals: indexable per record, (N_i, 4) boxes in its pixels (read on access, so a
    :class:`detector.proposal_cache.CachedProposals` stays lazy), the first
    ``max_proposals`` used. Decoded images are kept in memory when there are at most
    ``cache_images`` records. ``load_image(path)``, ``label_regions`` and ``flip_boxes``
    replace the project's (:func:`detector.io.images.read_noted`,
    :func:`detector.sampling.label_regions`, :func:`detector.boxes.flip_boxes`)."""

    def __init__(self, records: Sequence, proposals, *, flip: bool, fg_iou: float, bg_iou_low: float,
                 max_proposals: int | None, cache_images: int, device="cpu", load_image: Callable | None = None,
                 label_regions: Callable | None = None, flip_boxes: Callable | None = None):
        self.records = records
        self.proposals = proposals
        self.flip, self.fg_iou, self.bg_iou_low, self.max_proposals = flip, fg_iou, bg_iou_low, max_proposals
        self.device = torch.device(device)
        self.load_image = load_image
        self.label_regions = label_regions or _label_regions
        self.flip_boxes = flip_boxes or _flip_boxes
        self.cache: dict[int, Tensor | None] | None = {} if len(records) <= cache_images else None
        #: ``(kind, file)`` of the truncated / undecodable images met (drained by the training loop)
        self.notes: list[tuple[str, str]] = []

    def image(self, i: int) -> Tensor | None:
        """Record ``i``'s decoded (H, W, 3) uint8 image; None when it cannot be decoded (left
        out, told in :attr:`notes`, as is a truncated JPEG: :func:`detector.io.images.read_noted`)."""
        if self.cache is not None and i in self.cache:
            return self.cache[i]
        path = self.records[i].path
        arr = self.load_image(path) if self.load_image is not None else read_noted(path, self.notes)
        img = None if arr is None else torch.from_numpy(np.array(arr))
        if self.cache is not None:
            self.cache[i] = img
        return img

    def labelled(self, i: int, generator: torch.Generator) -> Labelled | None:
        """Record ``i`` flipped with probability 1/2 (one draw from ``generator`` when ``flip``),
        its ground truth and proposals labelled by ``label_regions`` (foreground IoU >=
        ``fg_iou``, background in [``bg_iou_low``, ``fg_iou``)); None when it cannot be decoded."""
        rec = self.records[i]
        img = self.image(i)
        if img is None:  # cannot be decoded: left out of the batch
            return None
        props = torch.as_tensor(np.asarray(self.proposals[i], np.float32).reshape(-1, 4)[: self.max_proposals])
        gt = torch.as_tensor(np.asarray(rec.boxes, np.float32).reshape(-1, 4))
        gl = torch.as_tensor(np.asarray(rec.labels, np.int64).reshape(-1))
        width = img.shape[1]
        if self.flip and torch.rand(1, generator=generator).item() < 0.5:
            img = img.flip(1)
            props = self.flip_boxes(props, width)
            gt = self.flip_boxes(gt, width)
        boxes, labels, matches, _ = self.label_regions(props, gt, gl, self.fg_iou, self.bg_iou_low)
        return Labelled(img, gt, boxes, labels, matches)


__all__ = ["BatcherBase", "Labelled"]
