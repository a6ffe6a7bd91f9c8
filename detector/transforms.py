"""The image transforms both detector kinds use, in training and at test time: normalise
(:func:`to_tensor_image`), resize (:func:`resize_factor`, :func:`resize_image`) and pad
(:func:`pad_images`). One module, so that training and inference cannot drift apart."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from backbone.multicrop import IMAGENET_MEAN, IMAGENET_STD


def to_tensor_image(image: np.ndarray | Tensor, device: torch.device | str = "cpu") -> Tensor:
    """(H, W, 3) uint8 RGB -> (3, H, W) float32 normalised with the ImageNet statistics (the
    torchvision weights expect them, and they are a sane default from scratch): 0 where the
    image is the mean pixel, which is what zero padding and roi_align's outside give."""
    if not isinstance(image, Tensor):
        image = image if image.flags.writeable else image.copy()  # torch refuses read-only arrays
    t = torch.as_tensor(image)
    t = t.to(device).permute(2, 0, 1).float().div_(255.0)
    mean = torch.tensor(IMAGENET_MEAN, device=t.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=t.device).view(3, 1, 1)
    return t.sub_(mean).div_(std)


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


__all__ = ["to_tensor_image", "resize_factor", "resize_image", "pad_images"]
