"""Several images per trunk call: the fast kind's two-phase scoring
(:func:`detector.fast.infer.score_image`) for a list of images, the trunk once per group of
images whose trunk input has the same size (a (B, 3, H, W) batch), each image's head on its
own maps as one image at a time would (so only the trunk's batch size differs: the same
detections within float rounding). :meth:`detector.model.Detector.detect_batch` calls it.

It mirrors ``score_image`` at one test scale; a kind that scores in one pass (R-CNN) or a test
pyramid (``test.scales`` of two or more sides) is not batched (:func:`batches_trunk`)."""

from __future__ import annotations

import time
from typing import Sequence

import torch
from torch import Tensor

from backbone.devices import autocast, to_device_format

from ..config import DetectorConfig
from ..ensemble import Ensemble
from ..transforms import resize_factor, resize_image, to_tensor_image


def batches_trunk(ensemble: Ensemble, cfg: DetectorConfig) -> bool:
    """Whether :func:`score_batch` serves ``cfg``'s kind: two-phase members (``features``,
    ``head``: the fast kind) at one test scale, scoring proposals made outside the model (a
    model that proposes, ``proposals.method: trunk``, runs its trunk in ``propose``: image by image)."""
    return (getattr(cfg.model, "kind", "rcnn") == "fast" and getattr(cfg.model, "fast", None) is not None
            and len(cfg.test.scales or []) <= 1 and not cfg.proposals.uses_trunk
            and all(hasattr(m, "features") and hasattr(m, "head") for m in ensemble.members))


@torch.no_grad()
def score_batch(ensemble: Ensemble, cfg: DetectorConfig, images: Sequence, boxes: Sequence[Tensor],
                device: torch.device, times: Sequence[dict]) -> list[tuple[Tensor | None, Tensor | None]]:
    """Per image (H, W, 3) uint8 and its (N, 4) boxes: (probs (N, C + 1), deltas (N, C, 4)) as
    the kind's ``score_regions``, (None, None) without boxes; ``times[i]`` gets ``trunk`` (the
    group's trunk call shared out evenly, plus the image's own resize) and ``head`` seconds."""
    f, device = cfg.model.fast, torch.device(device)
    side = (cfg.test.scales or [f.min_side])[0]
    xs: list = [None] * len(images)
    bs: list = [None] * len(images)
    for i, (image, b) in enumerate(zip(images, boxes)):
        if len(b) == 0:
            continue
        t0 = time.perf_counter()  # as score_image: normalise, resize, boxes to the resized pixels
        img = to_tensor_image(image, device)
        xs[i], rx, ry = resize_image(img, resize_factor(*img.shape[-2:], side, f.max_side))
        bs[i] = (torch.as_tensor(b, dtype=torch.float32).reshape(-1, 4).cpu()
                 * torch.tensor([rx, ry, rx, ry])).to(device)
        times[i].update(trunk=time.perf_counter() - t0, head=0.0)
    groups: dict = {}
    for i, x in enumerate(xs):
        if x is not None:
            groups.setdefault(tuple(x.shape), []).append(i)
    out: list = [(None, None)] * len(images)
    with autocast(device):
        for idx in groups.values():
            t0 = time.perf_counter()
            feats = ensemble.features(to_device_format(torch.stack([xs[i] for i in idx]), device))
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            share = (time.perf_counter() - t0) / len(idx)
            for j, i in enumerate(idx):
                times[i]["trunk"] += share
                t0 = time.perf_counter()
                mine = [type(m)([m.maps[j]], [m.scales[j]]) for m in feats]  # image j's FeatureMaps
                p, d = ensemble.head(mine, [bs[i]], chunk=f.chunk)
                out[i] = (p.cpu().float(), d.cpu().float())
                times[i]["head"] += time.perf_counter() - t0
    return out


__all__ = ["batches_trunk", "score_batch"]
