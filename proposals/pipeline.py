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
    """The MultiBox network of ``cfg.multibox_checkpoint`` (loaded once per process, and again
    when the file changes)."""
    import os

    if not cfg.multibox_checkpoint:
        raise UserError(f"proposals.method {cfg.method} needs proposals.multibox_checkpoint "
                        "(train one with `train-detector --stage multibox`)")
    path = os.path.abspath(os.path.expanduser(os.fspath(cfg.multibox_checkpoint)))
    try:
        st = os.stat(path)
        sig = (st.st_size, st.st_mtime_ns, st.st_ino)
    except OSError:
        sig = None  # load_multibox raises the clear error
    key = (path, sig, str(device))
    if key not in _LOADED:
        from .multibox import load_multibox

        _LOADED[key] = load_multibox(cfg.multibox_checkpoint, device=device)
    return _LOADED[key]


def validate(cfg: ProposalConfig) -> None:
    if cfg.method not in METHODS:
        raise UserError(f"unknown proposal method {cfg.method!r}: choose one of {', '.join(METHODS)}")
    mt = cfg.max_total
    if mt is not None and (isinstance(mt, bool) or not isinstance(mt, (int, np.integer)) or mt < 1):
        raise UserError(f"proposals.max_total must be a whole number >= 1 or null (no cap), got {mt!r}")


def cap_total(boxes: np.ndarray, cfg: ProposalConfig) -> np.ndarray:
    """The first ``cfg.max_total`` boxes of a ranked list (all of them when it is None)."""
    return boxes if cfg.max_total is None else boxes[: int(cfg.max_total)]


def propose(image, cfg: ProposalConfig, multibox=None) -> np.ndarray:
    """Proposals of one RGB uint8 image (grey accepted) by ``cfg.method``.

    ``ss``: selective search ranked boxes; ``multibox``: the top ``cfg.multibox_top_k`` MultiBox
    boxes by confidence; ``ss+multibox``: MultiBox boxes first, then selective search, boxes
    overlapping an earlier one above ``cfg.merge_iou`` removed. Then, for every method, the
    first ``cfg.max_total`` boxes are kept (None: all). ``multibox``: a loaded network, else
    ``cfg.multibox_checkpoint`` is loaded. Returns (N, 4) float32 xyxy in image pixels.
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
        return cap_total(ss, cfg)
    if cfg.method == "multibox":
        return cap_total(mb, cfg)
    return cap_total(merge_boxes(mb, ss, cfg.merge_iou), cfg)
