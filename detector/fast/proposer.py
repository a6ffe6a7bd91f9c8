"""The trunk proposal head (``proposals.method: trunk``): MultiBox's convolutional successor on
each fast member's own feature map, computed in the same pass as the detection head, so that
nothing in ``detect`` waits on selective search.

At every cell of the member's (finest) tap, ``K`` prior shapes (:func:`cell_priors`: centre
``((col + 0.5) s, (row + 0.5) s)`` for stride ``s``, shapes from k-means over the training
boxes' (w, h), :func:`proposals.multibox.kmeans_shapes`) each predict 4 offsets and 1
objectness logit (torchvision's ``RPNHead``: a 3 x 3 convolution, then 1 x 1 to K and 4 K).
This is Szegedy et al.'s "Scalable, High-Quality Object Detection" (convolutional priors on
the Inception maps) trained the way Faster R-CNN trains its RPN (Ren et al. 2015).

Two matchings (``proposals.trunk.matching``):

- ``iou``: Faster R-CNN's, through torchvision's own parts (:class:`TrunkProposer` is a
  ``torchvision.models.detection.rpn.RegionProposalNetwork``: its ``Matcher`` (IoU >= fg_iou
  positive, < bg_iou negative, each object's best prior positive), its
  ``BalancedPositiveNegativeSampler`` (``batch_size`` priors per image, ``positive_fraction``
  positive), its ``BoxCoder`` (weights 1, 1, 1, 1), smooth L1 and BCE; its proposal filter:
  the best ``pre_nms`` by objectness, clipped, tiny boxes dropped, NMS ``nms_iou``, the first
  ``post_nms``);
- ``bipartite``: MultiBox's (Erhan et al. 2014): one prior per object (Hungarian), offsets of
  the normalised corners from the prior's in units of ``OFFSET_SCALE``, the loss
  :func:`proposals.multibox.multibox_loss` itself, per image.

Boxes are float xyxy in the pixels of the image given to the trunk.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor
from torchvision.models.detection.rpn import (
    RegionProposalNetwork,
    RPNHead,
    concat_box_prediction_layers,
)
from torchvision.ops import batched_nms

from proposals.multibox import OFFSET_SCALE, kmeans_shapes, multibox_loss

from ..transforms import resize_factor


def cell_priors(height: int, width: int, stride: float, shapes: Tensor) -> Tensor:
    """(height x width x K, 4) xyxy priors of a height x width map of stride ``stride``: at cell
    (row, col) the K ``shapes`` (K, 2) = (w, h) centred on ((col + 0.5) stride, (row + 0.5)
    stride); cell-major (row, then col), shape fastest: the order of ``RPNHead``'s outputs after
    ``concat_box_prediction_layers``."""
    shapes = shapes.float()
    ys = (torch.arange(height, dtype=torch.float32, device=shapes.device) + 0.5) * stride
    xs = (torch.arange(width, dtype=torch.float32, device=shapes.device) + 0.5) * stride
    cy, cx = torch.meshgrid(ys, xs, indexing="ij")
    centres = torch.stack([cx, cy, cx, cy], -1).reshape(-1, 1, 4)                  # (HW, 1, 4)
    half = torch.cat([-shapes / 2, shapes / 2], 1).reshape(1, -1, 4)                # (1, K, 4)
    return (centres + half).reshape(-1, 4)


def training_shapes(dataset, k: int, min_side: int, max_side: int | None, seed: int = 0) -> list[list[float]]:
    """The K prior shapes of a training split: its boxes' (w, h) in trunk-input pixels (each
    image resized as the fast kind resizes it), clustered by :func:`kmeans_shapes`."""
    wh = []
    for r in dataset.records:
        b = np.asarray(r.boxes, np.float32).reshape(-1, 4)
        if len(b) and r.width and r.height:
            f = resize_factor(r.height, r.width, min_side, max_side)
            wh.append(np.stack([b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], 1) * f)
    shapes = kmeans_shapes(np.concatenate(wh) if wh else np.zeros((0, 2)), k, seed=seed)
    return [[round(float(w), 2), round(float(h), 2)] for w, h in shapes]


class TrunkProposer(RegionProposalNetwork):
    """The proposal head of one member: ``RPNHead`` on the member's reduced map
    (``in_channels``), :func:`cell_priors` of ``shapes`` at ``stride``, and torchvision's RPN
    matching, sampling, coding, loss and filtering (``matching="iou"``), or MultiBox's
    (``"bipartite"``). ``priors`` (K, 2) is a buffer: the checkpoint carries the shapes."""

    def __init__(self, in_channels: int, stride: int, shapes, *, matching: str = "iou", fg_iou: float = 0.7,
                 bg_iou: float = 0.3, batch_size: int = 256, positive_fraction: float = 0.5, alpha: float = 0.3,
                 pre_nms: int = 2000, nms_iou: float = 0.7, post_nms: int = 2000):
        shapes = torch.as_tensor(np.asarray(shapes, np.float32).reshape(-1, 2))
        super().__init__(None, RPNHead(in_channels, len(shapes)), fg_iou, bg_iou, batch_size, positive_fraction,
                         dict(training=pre_nms, testing=pre_nms), dict(training=post_nms, testing=post_nms), nms_iou)
        self.register_buffer("priors", shapes)
        self.stride, self.matching, self.alpha = int(stride), matching, float(alpha)

    @property
    def num_priors(self) -> int:
        return len(self.priors)

    def _decode(self, deltas: Tensor, anchors: Tensor, size: tuple[int, int]) -> Tensor:
        """(A, 4) boxes from (A, 4) predictions: BoxCoder offsets (iou) or MultiBox corner offsets."""
        if self.matching == "iou":
            return self.box_coder.decode(deltas, [anchors]).view(-1, 4)
        h, w = size
        scale = anchors.new_tensor([w, h, w, h])
        b = anchors + deltas * OFFSET_SCALE * scale
        return torch.stack([torch.minimum(b[:, 0], b[:, 2]), torch.minimum(b[:, 1], b[:, 3]),
                            torch.maximum(b[:, 0], b[:, 2]), torch.maximum(b[:, 1], b[:, 3])], 1)

    def forward(self, fmap: Tensor, size: tuple[int, int], gt: Tensor | None = None,
                post_nms: int | None = None, nms_iou: float | None = None) -> tuple[Tensor, Tensor, dict]:
        """One image: ``fmap`` (1, C, h, w) its map, ``size`` (H, W) the trunk input's size,
        ``gt`` (G, 4) its boxes (training: the losses are computed), ``post_nms`` the proposals
        kept (default the constructor's), ``nms_iou`` the NMS threshold of this call (default the
        constructor's; 1.0 keeps every one of the best ``pre_nms``). Returns (boxes (n, 4), objectness probabilities (n,),
        losses ``{"objectness", "box"}`` (iou) or ``{"multibox"}`` (bipartite), empty without ``gt``)."""
        objectness, deltas = self.head([fmap])
        anchors = cell_priors(fmap.shape[-2], fmap.shape[-1], self.stride, self.priors.to(fmap.device))
        objectness, deltas = concat_box_prediction_layers(objectness, deltas)   # (A, 1), (A, 4)
        objectness, deltas = objectness.float(), deltas.float()
        boxes = self._decode(deltas.detach(), anchors, size)
        if post_nms is not None:
            self._post_nms_top_n = dict(training=int(post_nms), testing=int(post_nms))
        nms, self.nms_thresh = self.nms_thresh, (self.nms_thresh if nms_iou is None else float(nms_iou))
        try:
            kept, scores = self.filter_proposals(boxes[None], objectness.detach(), [tuple(size)], [len(anchors)])
        finally:
            self.nms_thresh = nms
        losses: dict = {}
        if gt is not None:
            gt = gt.to(anchors).reshape(-1, 4)
            if self.matching == "iou":
                labels, matched = self.assign_targets_to_anchors([anchors], [{"boxes": gt}])
                targets = self.box_coder.encode(matched, [anchors])
                obj, box = self.compute_loss(objectness, deltas, labels, targets)
                losses = {"objectness": obj, "box": box}
            else:
                h, w = size
                scale = anchors.new_tensor([w, h, w, h])
                total, _ = multibox_loss(deltas[None], objectness.view(1, -1), anchors / scale,
                                         [(gt / scale).cpu().numpy()], self.alpha, "bipartite")
                losses = {"multibox": total}  # MultiBox's loss itself (location + confidence)
        return kept[0], scores[0], losses


def merge_members(proposals: list[tuple[Tensor, Tensor]], limit: int, nms_iou: float, how: str = "union") -> Tensor:
    """The ensemble's proposals from each member's ``(boxes, scores)``: the first member's
    (``how="first"``), or the union of all (``"union"``), near-duplicates across members removed
    by NMS at ``nms_iou``, best objectness first; at most ``limit`` boxes."""
    if how == "first" or len(proposals) == 1:
        return proposals[0][0][:limit]
    boxes = torch.cat([b for b, _ in proposals])
    scores = torch.cat([s for _, s in proposals])
    keep = batched_nms(boxes.float(), scores.float(), torch.zeros(len(boxes), dtype=torch.int64,
                                                                  device=boxes.device), nms_iou)
    return boxes[keep[:limit]]


__all__ = ["TrunkProposer", "cell_priors", "merge_members", "training_shapes"]
