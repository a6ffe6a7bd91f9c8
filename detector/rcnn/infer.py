"""R-CNN's scoring at test time: every proposal warped and scored by the ensemble, in bounded
chunks of ``test.batch_size`` regions."""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import Tensor

from backbone.devices import autocast

from ..ensemble import Ensemble
from ..transforms import to_tensor_image
from .warp import warp_regions


def _sync(device: torch.device) -> None:
    """Wait for queued CUDA work, so that a stage's time is its own."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def propose(ensemble: Ensemble, cfg, image: np.ndarray, device: torch.device, times: dict | None = None) -> None:
    """None: R-CNN's members propose nothing (the configured proposals are scored)."""
    return None


@torch.no_grad()
def score_regions(ensemble: Ensemble, cfg, image: np.ndarray, boxes: Tensor, device: torch.device,
                  times: dict | None = None):
    """Ensemble probabilities (N, C + 1) and mean deltas (N, C, 4) or None for ``boxes``.

    ``times``: gets the seconds spent warping (``warp``) and in the networks (``network``)."""
    m = cfg.model.rcnn
    t_warp = t_net = 0.0
    t0 = time.perf_counter()
    t = to_tensor_image(image, device)
    boxes = boxes.to(device)
    _sync(device)
    t_warp += time.perf_counter() - t0
    probs, deltas = [], []
    step = max(1, cfg.test.batch_size)
    for start in range(0, len(boxes), step):
        t0 = time.perf_counter()
        crops = warp_regions(t, boxes[start:start + step], m.input_size, m.context_pad)
        _sync(device)
        t1 = time.perf_counter()
        with autocast(device):
            p, d = ensemble(crops)
        probs.append(p.float().cpu())  # .cpu() waits for the device
        if d is not None:
            deltas.append(d.float().cpu())
        t_warp += t1 - t0
        t_net += time.perf_counter() - t1
    if times is not None:
        times["warp"], times["network"] = t_warp, t_net
    if not probs:
        return None, None
    return torch.cat(probs), (torch.cat(deltas) if deltas else None)
