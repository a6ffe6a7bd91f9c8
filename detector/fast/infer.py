"""Scoring one image's proposals with an ensemble of :class:`FastRCNN` members in the two-phase
form of :class:`detector.ensemble.Ensemble`: each member's trunk runs once per image (per
pyramid scale, :meth:`Ensemble.features`), its head over all proposals in chunks
(:meth:`Ensemble.head`, which averages the softmax probabilities and box deltas as R-CNN's
ensemble does)."""

from __future__ import annotations

import time
from typing import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from backbone.devices import autocast, to_device_format

from ..ensemble import Ensemble
from ..transforms import resize_factor, resize_image
from ..transforms import to_tensor_image as _to_tensor_image
from .model import FastRCNN
from .proposer import merge_members

#: SPPnet / Fast R-CNN pyramid rule: each proposal is scored at the scale where its area is
#: closest to 224 x 224 pixels
PYRAMID_AREA = 224.0 ** 2


def prepare_members(members: Sequence[FastRCNN], device) -> list[FastRCNN]:
    """Members on ``device`` in eval mode; channels_last on the CPU (faster convolutions)."""
    device = torch.device(device)
    out = []
    for m in members:
        out.append(to_device_format(m.to(device).eval(), device))
    return out


def assign_scales(boxes: Tensor, factors: Sequence[float]) -> Tensor:
    """Index into ``factors`` of the resize factor that brings each (N, 4) box's area closest
    to 224^2."""
    area = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).clamp(min=0)
    f2 = torch.tensor([f * f for f in factors], dtype=area.dtype)
    return (area[:, None] * f2[None, :] - PYRAMID_AREA).abs().argmin(dim=1)


@torch.no_grad()
def trunk_proposals(members: Ensemble, image, *, min_side: int, max_side: int | None, limit: int, nms_iou: float,
                    how: str = "union", device="cpu", times: dict | None = None,
                    to_tensor_image: Callable | None = None) -> np.ndarray:
    """The members' own proposals for one image (``proposals.method: trunk``): each member's trunk
    once at the shorter side ``min_side`` and its proposal head (:meth:`FastRCNN.propose`, at most
    ``limit`` boxes each), merged by :func:`detector.fast.proposer.merge_members` (``how``: union
    or first). The features are kept on ``members`` for :func:`score_image` of the same image
    (:func:`take_features`): the trunk runs once per image for both. ``times`` gets ``trunk``
    and ``proposals`` seconds. Returns (n, 4) float32 boxes in the image's pixels, best first."""
    to_tensor_image = to_tensor_image or _to_tensor_image
    device = torch.device(device)
    t0 = time.perf_counter()
    img = to_tensor_image(image, device)
    factor = resize_factor(img.shape[-2], img.shape[-1], min_side, max_side)
    with autocast(device):
        x, sx, sy = resize_image(img, factor)
        feats = members.features(to_device_format(x[None], device))
        _sync(device)
        t1 = time.perf_counter()
        props = [m.propose(f, post_nms=limit)[0] for m, f in zip(members.members, feats)]
    boxes = merge_members(props, limit, nms_iou, how).float().cpu()
    members._kept_features = (image, factor, sx, sy, feats)
    if times is not None:
        times["trunk"] = times.get("trunk", 0.0) + t1 - t0
        times["proposals"] = times.get("proposals", 0.0) + time.perf_counter() - t1
    return (boxes / torch.tensor([sx, sy, sx, sy])).numpy()


def take_features(members: Ensemble, image) -> tuple | None:
    """The features :func:`trunk_proposals` kept for ``image`` (the same object), removed from
    ``members``; None when there are none for it."""
    kept = members.__dict__.pop("_kept_features", None)
    return kept if kept is not None and kept[0] is image else None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def score_image(members: Ensemble | Sequence[FastRCNN], image, boxes: Tensor, *, min_side: int, max_side: int | None,
                scales: Sequence[int] | None = None, chunk: int = 512, device="cpu",
                to_tensor_image: Callable | None = None, features: tuple | None = None) -> tuple[Tensor, Tensor, dict]:
    """Ensemble probabilities and box deltas for ``boxes`` of one image.

    members: an :class:`Ensemble` of :class:`FastRCNN`, or a list of them, on ``device`` in eval
    mode (see :func:`prepare_members`).
    image: (H, W, 3) uint8 RGB (array or tensor); boxes: (N, 4) xyxy in its pixels.
    The image is resized so that its shorter side is ``min_side`` (longer side at most
    ``max_side``); with ``scales`` (a list of shorter sides, an image pyramid) each proposal
    is scored at the scale where its area is closest to 224^2. ``chunk``: proposals per head
    pass. CUDA runs under bfloat16 autocast, the CPU in float32. ``features``: what
    :func:`take_features` returned for this image (its trunk is not run again at that scale).
    Returns (probs (N, C + 1) float32 on the CPU, deltas (N, C, 4): BoxCoder offsets, which
    are the same in original-image and resized-image pixels, and
    ``{"trunk": s, "head": s}``: seconds summed over scales).
    """
    to_tensor_image = to_tensor_image or _to_tensor_image
    if not isinstance(members, Ensemble):
        if not members:
            raise ValueError("score_image needs at least one member")
        members = Ensemble(members)
    device = torch.device(device)
    num_classes = members.members[0].num_classes
    boxes = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4).cpu()
    n = len(boxes)
    probs = torch.zeros((n, num_classes + 1))
    deltas = torch.zeros((n, num_classes, 4))
    times = {"trunk": 0.0, "head": 0.0}
    if n == 0:
        return probs, deltas, times

    t0 = time.perf_counter()
    img = to_tensor_image(image, device)
    h, w = img.shape[-2:]
    sides = list(scales) if scales else [min_side]
    factors = [resize_factor(h, w, s, max_side) for s in sides]
    which = assign_scales(boxes, factors) if len(factors) > 1 else torch.zeros(n, dtype=torch.int64)
    times["trunk"] += time.perf_counter() - t0
    with autocast(device):
        for k, factor in enumerate(factors):
            idx = torch.nonzero(which == k).flatten()
            if len(idx) == 0:
                continue
            t0 = time.perf_counter()
            if features is not None and features[1] == factor:  # the trunk's pass of trunk_proposals
                sx, sy, feats = features[2:]
            else:
                x, sx, sy = resize_image(img, factor)
                feats = members.features(to_device_format(x[None], device))
                _sync(device)
            b = (boxes[idx] * torch.tensor([sx, sy, sx, sy])).to(device)
            t1 = time.perf_counter()
            p, d = members.head(feats, [b], chunk=chunk)
            probs[idx] = p.cpu()
            deltas[idx] = d.cpu()
            t2 = time.perf_counter()
            times["trunk"] += t1 - t0
            times["head"] += t2 - t1
    return probs, deltas, times
