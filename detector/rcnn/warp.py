"""R-CNN's region warp, batched on the device.

Each box is dilated so that, once warped to S x S, ``p`` pixels of image context surround it
(R-CNN's "context padding"; p = 16 at S = 224 and scales as 16 * S / 224), then cropped and
resized with bilinear sampling (``torchvision.ops.roi_align``) for all boxes at once. The
image is mean-subtracted first, so the zero that roi_align returns outside the image is the
mean pixel, as in R-CNN.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import roi_align

from backbone.devices import to_device_format


def dilate_boxes(boxes: Tensor, size: int, context_pad: float) -> Tensor:
    """Grow (N, 4) xyxy boxes so that ``pad = context_pad * size / 224`` px of context surround
    the box after it is warped to ``size`` x ``size``."""
    pad = context_pad * size / 224.0
    inner = size - 2.0 * pad
    if inner <= 0:
        raise ValueError(f"context padding {context_pad} leaves no room at warp size {size}")
    w = (boxes[:, 2] - boxes[:, 0]).clamp(min=1.0)
    h = (boxes[:, 3] - boxes[:, 1]).clamp(min=1.0)
    dx = w * pad / inner
    dy = h * pad / inner
    return torch.stack([boxes[:, 0] - dx, boxes[:, 1] - dy, boxes[:, 2] + dx, boxes[:, 3] + dy], dim=1)


def warp_regions(image: Tensor, boxes: Tensor, size: int, context_pad: float = 16.0) -> Tensor:
    """Warp regions of one normalised image.

    image: (3, H, W) float (see :func:`detector.io.images.to_tensor_image`); boxes: (N, 4) xyxy in its pixels.
    Returns (N, 3, size, size), channels_last on the CPU (faster convolutions there).
    """
    if boxes.numel() == 0:
        return image.new_zeros((0, 3, size, size))
    boxes = boxes.to(image.device, image.dtype)
    rois = dilate_boxes(boxes, size, context_pad)
    # adaptive sampling (ratio 0): ceil(box/size)^2 samples per output pixel, i.e. an
    # area-average when shrinking (no aliasing) and plain bilinear when enlarging
    out = roi_align(image[None], [rois], output_size=(size, size), spatial_scale=1.0, sampling_ratio=0, aligned=True)
    return to_device_format(out, out.device)
