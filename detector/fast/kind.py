"""The fast kind's pieces for the shared engine and :class:`detector.Detector`, read from a
:class:`detector.config.DetectorConfig` (``model.kind: fast``, settings in ``model.fast``):
``build_member``, ``RegionBatcher``, ``forward``, ``region_loss``, ``param_groups``, ``propose``,
``score_regions``: :class:`detector.kinds.DetectorKind`, as :mod:`detector.rcnn`."""

from __future__ import annotations

import numpy as np
import torch

from ..config import DetectorConfig
from ..ensemble import Ensemble
from .batched import batches_trunk, score_batch
from .infer import score_image, take_features, trunk_proposals
from .model import OnePassOutputs, RegionSampling
from .train import (
    Batch,
    FastBatcher,
    OnePassBatcher,
    build_member,
    forward,
    one_pass_loss,
)
from .train import loss as _loss


class RegionBatcher(FastBatcher):
    """Fast R-CNN batches: ``train.images_per_batch`` images, ``train.batch_size`` regions in
    all (Fast R-CNN: 2 x 64), ``train.fg_fraction`` foreground. With ``proposals.method: trunk``
    it is a :class:`OnePassBatcher` (images and ground truth; the same regions per image, drawn
    from the member's own proposals inside the pass)."""

    def __new__(cls, cfg: DetectorConfig, dataset, proposals, device: torch.device):
        if cfg.proposals.uses_trunk:
            t, f = cfg.train, cfg.model.fast
            sampling = RegionSampling(max(1, t.batch_size // t.images_per_batch), t.fg_fraction, t.fg_iou,
                                      t.bg_iou_low, t.max_proposals, cfg.proposals.trunk.train_nms_iou)
            mixed = proposals if cfg.proposals.trunk.mix_ss else None
            return OnePassBatcher(dataset.records, mixed, sampling=sampling, max_proposals=t.max_proposals, min_side=f.min_side, max_side=f.max_side,
                                  flip=t.flip, device=device, crop=f.train_crop or None, cache_images=t.cache_images)
        return super().__new__(cls)

    def __init__(self, cfg: DetectorConfig, dataset, proposals, device: torch.device):
        t, f = cfg.train, cfg.model.fast
        super().__init__(dataset.records, proposals,
                         min_side=f.min_side, max_side=f.max_side,
                         rois_per_image=max(1, t.batch_size // t.images_per_batch), fg_fraction=t.fg_fraction,
                         fg_iou=t.fg_iou, bg_iou_low=t.bg_iou_low, flip=t.flip, device=device,
                         max_proposals=t.max_proposals, crop=f.train_crop or None, cache_images=t.cache_images)


def region_loss(out, batch: Batch, cfg: DetectorConfig):
    if isinstance(out, OnePassOutputs):  # the proposal head's loss too
        return one_pass_loss(out, bbox_weight=cfg.train.bbox_weight, proposal_weight=cfg.proposals.trunk.loss_weight)
    return _loss(out, batch, bbox_weight=cfg.train.bbox_weight)


def param_groups(model: torch.nn.Module, cfg: DetectorConfig) -> list[dict]:
    """No weight decay on biases and normalisation parameters (1-d tensors): with 2 images per
    step the BN scales are few and noisy, and decaying them hurt in the experiments."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "weight_decay": cfg.train.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def propose(ensemble: Ensemble, cfg: DetectorConfig, image: np.ndarray, device: torch.device,
            times: dict | None = None) -> np.ndarray | None:
    """With ``proposals.method: trunk`` the members' own proposals (:func:`trunk_proposals`: each
    member's trunk and proposal head once, their features kept for :func:`score_regions`); else
    None: the configured proposals are scored."""
    if not cfg.proposals.uses_trunk:
        return None
    f, t = cfg.model.fast, cfg.proposals.trunk
    return trunk_proposals(ensemble, image, min_side=f.min_side, max_side=f.max_side,
                           limit=cfg.proposal_limit, nms_iou=t.nms_iou, how=t.ensemble, device=device,
                           times=times)


def score_regions(ensemble: Ensemble, cfg: DetectorConfig, image: np.ndarray, boxes: torch.Tensor,
                  device: torch.device, times: dict | None = None):
    """Ensemble probabilities (N, C + 1) and mean deltas (N, C, 4): each member's trunk once per
    image (per pyramid scale), its head over the proposals in chunks of ``model.fast.chunk``.
    ``times`` gets ``trunk`` and ``head`` seconds."""
    f = cfg.model.fast
    if len(boxes) == 0:
        return None, None
    probs, deltas, t = score_image(ensemble, image, boxes, min_side=f.min_side, max_side=f.max_side,
                                   scales=cfg.test.scales or None, chunk=f.chunk, device=device,
                                   features=take_features(ensemble, image))
    if times is not None:  # added: trunk_proposals may have counted the trunk already
        for k, v in t.items():
            times[k] = times.get(k, 0.0) + v
    return probs, deltas


__all__ = ["batches_trunk", "score_batch", "build_member", "RegionBatcher", "forward", "region_loss", "param_groups", "propose", "score_regions"]
