"""Multi-crop testing (paper section 7): 1, 10 or 144 crops per image, softmax averaged over
the crops and over the members of an ensemble.

At the paper's input size S = 224:

- 1 crop: shorter side resized to 256, the centre S x S crop.
- 10 crops: shorter side 256, the 4 corner and the centre S x S crops, and their mirrors.
- 144 crops: 4 scales (shorter side 256, 288, 320, 352) x 3 squares (left / centre / right,
  or top / centre / bottom for a portrait image; the side of a square is the shorter side)
  x 6 crops (the 4 corners and the centre at S x S, plus the whole square resized to S x S)
  x 2 mirrors.

At another input size S every length scales by S / 224 (shorter sides 256 * S / 224, ...,
rounded), so the crops cover the same fractions of the image as at 224.

Crops are built with a handful of batched tensor operations per image: one resize per scale,
the three squares by slicing, ``five_crop`` on the stack of squares, one resize for the three
whole squares, one flip for all mirrors. Images are ``(3, H, W)`` tensors, uint8 (0..255) or
float (0..1); crops come out float in 0..1, normalised later with the model's mean / std.
"""

from __future__ import annotations

import sys
from typing import Iterable, Sequence

import torch
import torchvision.transforms.v2.functional as TF
from torch import Tensor, nn
from tqdm import tqdm

from .devices import to_device_format

#: crop counts :func:`make_crops` knows
CROP_COUNTS = (1, 10, 144)
#: shorter sides of the 144-crop scales at input size 224
SCALES_144 = (256, 288, 320, 352)
#: shorter side for the 1- and 10-crop tests at input size 224
BASE_SCALE = 256
#: torchvision's ImageNet normalisation, used by every model here
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def scale_length(length: int, size: int) -> int:
    """A length given at the paper's 224 input size, at input size ``size`` (rounded)."""
    return max(size, int(round(length * size / 224.0)))


def _as_float(image: Tensor) -> Tensor:
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"expected a (3, H, W) image tensor, got shape {tuple(image.shape)}")
    if image.dtype == torch.uint8:
        return image.float().div_(255.0)
    return image.float()


def resize_shorter(image: Tensor, shorter: int) -> Tensor:
    """Resize ``(..., H, W)`` so that min(H, W) == ``shorter`` (bilinear, antialiased)."""
    h, w = image.shape[-2:]
    if min(h, w) == shorter:
        return image
    if h <= w:
        nh, nw = shorter, max(shorter, int(round(w * shorter / h)))
    else:
        nh, nw = max(shorter, int(round(h * shorter / w))), shorter
    return TF.resize(image, [nh, nw], antialias=True)


def three_squares(image: Tensor) -> Tensor:
    """``(C, H, W)`` -> ``(3, C, s, s)`` with s = min(H, W): left / centre / right squares of a
    landscape image, top / centre / bottom of a portrait one (three equal ones for a square)."""
    h, w = image.shape[-2:]
    s = min(h, w)
    if w >= h:
        starts = (0, (w - s) // 2, w - s)
        return torch.stack([image[:, :, x : x + s] for x in starts])
    starts = (0, (h - s) // 2, h - s)
    return torch.stack([image[:, y : y + s, :] for y in starts])


def make_crops(image: Tensor, num_crops: int, size: int) -> Tensor:
    """The ``num_crops`` (1, 10 or 144) test crops of one image -> ``(num_crops, 3, size, size)``
    float in 0..1. ``image``: ``(3, H, W)`` uint8 or float 0..1, any size."""
    if num_crops not in CROP_COUNTS:
        raise ValueError(f"num_crops must be one of {CROP_COUNTS}, got {num_crops}")
    img = _as_float(image)
    if num_crops in (1, 10):
        r = resize_shorter(img, scale_length(BASE_SCALE, size))
        if num_crops == 1:
            return TF.center_crop(r, [size, size]).unsqueeze(0)
        return torch.stack(TF.ten_crop(r, [size, size]))  # 4 corners + centre, then mirrored
    per_scale = []
    for shorter in SCALES_144:
        r = resize_shorter(img, scale_length(shorter, size))
        squares = three_squares(r)                                   # (3, 3, s, s)
        corners_centre = TF.five_crop(squares, [size, size])         # 5 x (3, 3, S, S)
        whole = TF.resize(squares, [size, size], antialias=True)     # (3, 3, S, S)
        per_scale.append(torch.stack([*corners_centre, whole], 1).flatten(0, 1))  # (18, 3, S, S)
    crops = torch.cat(per_scale)                                     # (72, 3, S, S)
    return torch.cat([crops, crops.flip(-1)])                        # (144, 3, S, S)


def normalize(crops: Tensor, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> Tensor:
    """``(N, 3, H, W)`` float 0..1 -> normalised with per-channel ``mean`` / ``std``."""
    m = torch.as_tensor(mean, dtype=crops.dtype, device=crops.device).view(1, 3, 1, 1)
    s = torch.as_tensor(std, dtype=crops.dtype, device=crops.device).view(1, 3, 1, 1)
    return (crops - m) / s


class _Group:
    """Models sharing one input size: crops are buffered across images and run in batches."""

    def __init__(self, members: list[int], size: int):
        self.members, self.size = members, size
        self.crops: list[Tensor] = []
        self.owners: list[Tensor] = []
        self.pending = 0


@torch.inference_mode()
def predict_probs(
    models: Sequence[nn.Module],
    images: Iterable[Tensor],
    num_crops: int,
    input_sizes: int | Sequence[int],
    *,
    mean: Sequence[float] | Sequence[Sequence[float]] = IMAGENET_MEAN,
    std: Sequence[float] | Sequence[Sequence[float]] = IMAGENET_STD,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
    progress: bool | None = None,
    total: int | None = None,
) -> Tensor:
    """Class probabilities of every image under every model, each averaged over ``num_crops``
    crops: a ``(N, M, C)`` float tensor (N images, M models, C classes). The ensemble's
    prediction is ``probs.mean(1)`` (softmax averaged over the members).

    models: in eval mode, all with the same C outputs (plain logits).
    images: ``(3, H, W)`` tensors (uint8 or float 0..1), any sizes.
    input_sizes: one size for all models or one per model; models of one size share crops.
    mean, std: one normalisation for all or one per model.
    Crops of several images are batched together (``batch_size`` crops per forward pass).
    """
    models = list(models)
    if not models:
        raise ValueError("predict_probs needs at least one model")
    m_count = len(models)
    sizes = [input_sizes] * m_count if isinstance(input_sizes, int) else list(input_sizes)
    if len(sizes) != m_count:
        raise ValueError(f"{len(sizes)} input sizes for {m_count} models")

    def per_model(v):
        return [tuple(x) for x in v] if isinstance(v[0], (list, tuple)) else [tuple(v)] * m_count

    means, stds = per_model(mean), per_model(std)
    if len(means) != m_count or len(stds) != m_count:
        raise ValueError("mean / std: give one for all models or one per model")
    device = torch.device(device)
    groups: dict[int, _Group] = {}
    for i, s in enumerate(sizes):
        groups.setdefault(s, _Group([], s)).members.append(i)
    sums: list[Tensor] = []  # per image (M, C), filled as batches complete
    num_classes: int | None = None

    def flush(g: _Group) -> None:
        nonlocal num_classes
        if not g.pending:
            return
        batch = torch.cat(g.crops).to(device)
        owners = torch.cat(g.owners)
        uniq, inv = owners.unique(return_inverse=True)
        for m in g.members:
            x = to_device_format(normalize(batch, means[m], stds[m]), device)
            logits = models[m](x)
            if isinstance(logits, tuple):
                logits = logits[0]
            p = logits.float().softmax(1).cpu()
            if num_classes is None:
                num_classes = p.shape[1]
            elif p.shape[1] != num_classes:
                raise ValueError(f"model {m} has {p.shape[1]} classes, model 0 has {num_classes}")
            local = torch.zeros(len(uniq), p.shape[1]).index_add_(0, inv, p)
            for j, img_idx in enumerate(uniq.tolist()):
                row = sums[img_idx]
                if row.numel() == 0:
                    row = sums[img_idx] = torch.zeros(m_count, p.shape[1])
                row[m] += local[j]
        g.crops, g.owners, g.pending = [], [], 0

    if progress is None:
        progress = sys.stderr.isatty()
    bar = tqdm(images, total=total, desc=f"{num_crops}-crop", unit="img", disable=not progress, leave=False)
    for idx, image in enumerate(bar):
        sums.append(torch.empty(0))
        for g in groups.values():
            c = make_crops(image, num_crops, g.size)
            g.crops.append(c)
            g.owners.append(torch.full((len(c),), idx, dtype=torch.long))
            g.pending += len(c)
            if g.pending >= batch_size:
                flush(g)
    for g in groups.values():
        flush(g)
    bar.close()
    if not sums:
        return torch.zeros(0, m_count, num_classes or 0)
    return torch.stack(sums) / num_crops


__all__ = [
    "CROP_COUNTS", "SCALES_144", "BASE_SCALE", "IMAGENET_MEAN", "IMAGENET_STD", "scale_length",
    "resize_shorter", "three_squares", "make_crops", "normalize", "predict_probs",
]
