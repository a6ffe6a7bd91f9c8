"""Box operations both detector kinds and MultiBox training share: the box-offset coder of
Fast R-CNN and mirroring.

The coder is written here rather than imported: torchvision has the same arithmetic only in a
private module (``torchvision.models.detection._utils.BoxCoder``), which may change without
notice. It follows that class exactly (widths without +1, centres at x1 + w/2, the decoded
log-sizes clamped at log(1000/16)), so checkpoints trained with it decode identically.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

#: Fast R-CNN's box-offset scaling (the regression targets' inverse standard deviations)
BOX_CODER_WEIGHTS = (10.0, 10.0, 5.0, 5.0)
_CLIP = math.log(1000.0 / 16)


def encode_boxes(matched: Tensor, boxes: Tensor, weights=BOX_CODER_WEIGHTS) -> Tensor:
    """Offsets (N, 4) that take ``boxes`` (N, 4) xyxy onto ``matched`` (N, 4) xyxy."""
    wx, wy, ww, wh = weights
    bw, bh = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    bx, by = boxes[:, 0] + 0.5 * bw, boxes[:, 1] + 0.5 * bh
    mw, mh = matched[:, 2] - matched[:, 0], matched[:, 3] - matched[:, 1]
    mx, my = matched[:, 0] + 0.5 * mw, matched[:, 1] + 0.5 * mh
    return torch.stack([wx * (mx - bx) / bw, wy * (my - by) / bh, ww * torch.log(mw / bw), wh * torch.log(mh / bh)], 1)


def decode_boxes(deltas: Tensor, boxes: Tensor, weights=BOX_CODER_WEIGHTS) -> Tensor:
    """Boxes (N, 4) xyxy from offsets ``deltas`` (N, 4) applied to ``boxes`` (N, 4)."""
    boxes = boxes.to(deltas.dtype)
    wx, wy, ww, wh = weights
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    cx, cy = boxes[:, 0] + 0.5 * w, boxes[:, 1] + 0.5 * h
    dx, dy = deltas[:, 0] / wx, deltas[:, 1] / wy
    dw, dh = (deltas[:, 2] / ww).clamp(max=_CLIP), (deltas[:, 3] / wh).clamp(max=_CLIP)
    pcx, pcy = dx * w + cx, dy * h + cy
    pw, ph = torch.exp(dw) * w, torch.exp(dh) * h
    # torchvision's decode_single: half sizes via a constant tensor, the same rounding
    c = torch.tensor(0.5, dtype=pcx.dtype, device=pcx.device)
    return torch.stack([pcx - c * pw, pcy - c * ph, pcx + c * pw, pcy + c * ph], 1)


def flip_boxes(boxes: Tensor, width: float) -> Tensor:
    """Mirror xyxy boxes horizontally in an image ``width`` wide (1.0 for normalised boxes)."""
    out = boxes.clone()
    out[..., 0] = width - boxes[..., 2]
    out[..., 2] = width - boxes[..., 0]
    return out


def vflip_boxes(boxes: Tensor, height: float) -> Tensor:
    """Mirror xyxy boxes vertically in an image ``height`` high."""
    out = boxes.clone()
    out[..., 1] = height - boxes[..., 3]
    out[..., 3] = height - boxes[..., 1]
    return out
