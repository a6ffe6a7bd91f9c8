"""The fast kind's pieces for the shared engine and :class:`detector.Detector`, read from a
:class:`detector.config.DetectorConfig` (``model.kind: fast``, settings in ``model.fast``):
``build_member``, ``RegionBatcher``, ``forward``, ``region_loss``, ``param_groups``,
``score_regions`` — the same names as :mod:`detector.rcnn`'s."""

from __future__ import annotations

import numpy as np
import torch

from ..config import DetectorConfig
from ..ensemble import Ensemble
from .infer import score_image
from .model import FastRCNN
from .train import Batch, FastBatcher, forward
from .train import build_member as _build_member
from .train import loss as _loss


def _model_settings(cfg: DetectorConfig, inference: bool) -> dict:
    m, f = cfg.model, cfg.model.fast
    return {"arch": m.arch, "tap": f.tap, "roi_size": f.roi_size, "reduce_channels": f.reduce_channels,
            "fc_dim": f.fc_dim, "num_fc": f.num_fc, "fc_rank": f.fc_rank, "norm": f.norm,
            "sampling_ratio": f.sampling_ratio, "transform_input": bool(m.transform_input), "dropout": f.dropout,
            "init": None if inference else m.init}


def build_member(cfg: DetectorConfig, num_classes: int, seed: int | None = None, *, inference: bool = False
                 ) -> FastRCNN:
    """A :class:`FastRCNN` of ``model.fast``'s settings seeded by ``seed``, its trunk from
    ``model.init`` if set (not for ``inference``: the weights come from a checkpoint)."""
    return _build_member(_model_settings(cfg, inference), num_classes, 0 if seed is None else seed)


class RegionBatcher(FastBatcher):
    """Fast R-CNN batches: ``train.images_per_batch`` images, ``train.batch_size`` regions in
    all (Fast R-CNN: 2 x 64), ``train.fg_fraction`` foreground."""

    def __init__(self, cfg: DetectorConfig, dataset, proposals, device: torch.device):
        t, f = cfg.train, cfg.model.fast
        super().__init__(dataset.records, [np.asarray(p, np.float32).reshape(-1, 4) for p in proposals],
                         min_side=f.min_side, max_side=f.max_side,
                         rois_per_image=max(1, t.batch_size // t.images_per_batch), fg_fraction=t.fg_fraction,
                         fg_iou=t.fg_iou, bg_iou_low=t.bg_iou_low, flip=t.flip, device=device,
                         max_proposals=t.max_proposals, crop=f.train_crop or None, cache_images=t.cache_images)


def region_loss(out, batch: Batch, cfg: DetectorConfig):
    return _loss(out, batch, bbox_weight=cfg.train.bbox_weight)


def param_groups(model: torch.nn.Module, cfg: DetectorConfig) -> list[dict]:
    """No weight decay on biases and normalisation parameters (1-d tensors): with 2 images per
    step the BN scales are few and noisy, and decaying them hurt in the experiments."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "weight_decay": cfg.train.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def score_regions(ensemble: Ensemble, cfg: DetectorConfig, image: np.ndarray, boxes: torch.Tensor,
                  device: torch.device, times: dict | None = None):
    """Ensemble probabilities (N, C + 1) and mean deltas (N, C, 4): each member's trunk once per
    image (per pyramid scale), its head over the proposals in chunks of ``model.fast.chunk``.
    ``times`` gets ``trunk`` and ``head`` seconds."""
    f = cfg.model.fast
    if len(boxes) == 0:
        return None, None
    probs, deltas, t = score_image(list(ensemble.members), image, boxes, min_side=f.min_side, max_side=f.max_side,
                                   scales=cfg.test.scales or None, chunk=f.chunk, device=device)
    if times is not None:
        times.update(t)
    return probs, deltas


__all__ = ["build_member", "RegionBatcher", "forward", "region_loss", "param_groups", "score_regions"]
