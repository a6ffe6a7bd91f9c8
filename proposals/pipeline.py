"""One entry point for every proposal method: :func:`propose` (selective search, MultiBox or
both, merged with near-duplicates removed)."""

from __future__ import annotations

import os

import numpy as np
import torch
from torchvision.ops import nms

from backbone.config import check_config
from backbone.errors import UserError

from .config import METHODS, ProposalConfig  # noqa: F401  (METHODS declared with ProposalConfig, re-exported)
from .multibox import load_multibox, predict
from .selective_search import as_rgb_uint8, selective_search

_LOADED: dict = {}


def merge_boxes(first: np.ndarray, second: np.ndarray, iou: float = 0.95) -> np.ndarray:
    """Union of two ranked box lists (``first`` ranked ahead), dropping each box whose IoU with
    an earlier kept box exceeds ``iou`` (a greedy NMS over rank order)."""
    boxes = np.concatenate([np.asarray(first, np.float32).reshape(-1, 4), np.asarray(second, np.float32).reshape(-1, 4)])
    if len(boxes) == 0 or iou >= 1.0:
        return boxes
    t = torch.from_numpy(boxes)
    keep = nms(t, torch.arange(len(boxes), 0, -1, dtype=torch.float32), float(iou))
    return boxes[np.sort(keep.numpy())]


def get_multibox(cfg: ProposalConfig, device="cpu"):
    """The MultiBox network of ``cfg.multibox_checkpoint`` (loaded once per process, and again
    when the file changes)."""
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

        _LOADED[key] = load_multibox(cfg.multibox_checkpoint, device=device)
    return _LOADED[key]


def validate(cfg: ProposalConfig) -> None:
    """Check ``cfg`` (built or changed in code) against its declarations (keys ``proposals.*``)."""

    check_config(cfg, prefix="proposals.")


def cap_total(boxes: np.ndarray, cfg: ProposalConfig) -> np.ndarray:
    """The first ``cfg.max_total`` boxes of a ranked list (all of them when it is None)."""
    return boxes if cfg.max_total is None else boxes[: int(cfg.max_total)]


def combine(ss: np.ndarray | None, mb: np.ndarray | None, cfg: ProposalConfig) -> np.ndarray:
    """The method's final proposals from its parts, the one place of the merge-and-cap policy:
    ``ss`` alone, ``multibox`` alone, or ``ss+multibox`` = MultiBox boxes first, then selective
    search, boxes overlapping an earlier one above ``cfg.merge_iou`` removed; then the first
    ``cfg.max_total``. A part the method does not use is ignored (may be None)."""
    empty = np.zeros((0, 4), np.float32)
    if not cfg.uses_multibox:
        boxes = ss if ss is not None else empty
    elif not cfg.uses_ss:
        boxes = mb if mb is not None else empty
    else:
        boxes = merge_boxes(mb if mb is not None else empty, ss if ss is not None else empty, cfg.merge_iou)
    return cap_total(np.asarray(boxes, np.float32).reshape(-1, 4), cfg)


def propose(image, cfg: ProposalConfig, multibox=None) -> np.ndarray:
    """Proposals of one RGB uint8 image (grey accepted) by ``cfg.method``.

    ``ss``: selective search ranked boxes; ``multibox``: the top ``cfg.multibox_top_k`` MultiBox
    boxes by confidence; ``ss+multibox``: MultiBox boxes first, then selective search, boxes
    overlapping an earlier one above ``cfg.merge_iou`` removed. Then, for every method, the
    first ``cfg.max_total`` boxes are kept (None: all). ``multibox``: a loaded network, else
    ``cfg.multibox_checkpoint`` is loaded. Returns (N, 4) float32 xyxy in image pixels.
    """
    validate(cfg)
    if cfg.uses_trunk:
        raise UserError("proposals.method trunk: the proposals come from a detector's own trunk (its proposal head); "
                        "run the detector (detect, or propose --model CHECKPOINT), or choose ss, multibox or ss+multibox")
    rgb = as_rgb_uint8(image)
    ss = mb = np.zeros((0, 4), np.float32)
    if cfg.uses_ss:
        ss = selective_search(rgb, preset=cfg.preset, superpixel_scale=cfg.superpixel_scale,
                              working_width=cfg.working_width, min_box_width=cfg.min_box_width,
                              backend=cfg.backend, max_boxes=cfg.max_boxes)
    if cfg.uses_multibox:
        net = multibox if multibox is not None else get_multibox(cfg)
        mb = predict(net, [rgb], top_k=cfg.multibox_top_k)[0][0]
    return combine(ss, mb, cfg)
