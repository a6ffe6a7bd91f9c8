"""One entry point for every proposal method: :func:`propose` (selective search, MultiBox or
both, merged with near-duplicates removed)."""

from __future__ import annotations

import numpy as np

from backbone.errors import UserError

from .config import ProposalConfig
from .selective_search import as_rgb_uint8, selective_search

METHODS = ("ss", "multibox", "ss+multibox")
_LOADED: dict = {}


def merge_boxes(first: np.ndarray, second: np.ndarray, iou: float = 0.95) -> np.ndarray:
    """Union of two ranked box lists (``first`` ranked ahead), dropping each box whose IoU with
    an earlier kept box exceeds ``iou`` (a greedy NMS over rank order)."""
    import torch
    from torchvision.ops import nms

    boxes = np.concatenate([np.asarray(first, np.float32).reshape(-1, 4), np.asarray(second, np.float32).reshape(-1, 4)])
    if len(boxes) == 0 or iou >= 1.0:
        return boxes
    t = torch.from_numpy(boxes)
    keep = nms(t, torch.arange(len(boxes), 0, -1, dtype=torch.float32), float(iou))
    return boxes[np.sort(keep.numpy())]


def get_multibox(cfg: ProposalConfig, device="cpu"):
    """The MultiBox network of ``cfg.multibox_checkpoint`` (loaded once per process)."""
    if not cfg.multibox_checkpoint:
        raise UserError(f"proposals.method {cfg.method} needs proposals.multibox_checkpoint "
                        "(train one with `train-detector --stage multibox`)")
    key = (cfg.multibox_checkpoint, str(device))
    if key not in _LOADED:
        from .multibox import load_multibox

        _LOADED[key] = load_multibox(cfg.multibox_checkpoint, device=device)
    return _LOADED[key]


def validate(cfg: ProposalConfig) -> None:
    if cfg.method not in METHODS:
        raise UserError(f"unknown proposal method {cfg.method!r}: choose one of {', '.join(METHODS)}")


def propose(image, cfg: ProposalConfig, multibox=None) -> np.ndarray:
    """Proposals of one RGB uint8 image (grey accepted) by ``cfg.method``.

    ``ss``: selective search ranked boxes; ``multibox``: the top ``cfg.multibox_top_k`` MultiBox
    boxes by confidence; ``ss+multibox``: MultiBox boxes first, then selective search, boxes
    overlapping an earlier one above ``cfg.merge_iou`` removed. ``multibox``: a loaded network,
    else ``cfg.multibox_checkpoint`` is loaded. Returns (N, 4) float32 xyxy in image pixels.
    """
    validate(cfg)
    rgb = as_rgb_uint8(image)
    ss = mb = np.zeros((0, 4), np.float32)
    if "ss" in cfg.method.split("+"):
        ss = selective_search(rgb, preset=cfg.preset, superpixel_scale=cfg.superpixel_scale,
                              working_width=cfg.working_width, min_box_width=cfg.min_box_width,
                              backend=cfg.backend, max_boxes=cfg.max_boxes)
    if "multibox" in cfg.method:
        from .multibox import predict

        net = multibox if multibox is not None else get_multibox(cfg)
        mb = predict(net, [rgb], top_k=cfg.multibox_top_k)[0][0]
    if cfg.method == "ss":
        return ss
    if cfg.method == "multibox":
        return mb
    return merge_boxes(mb, ss, cfg.merge_iou)
