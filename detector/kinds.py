"""The detector kinds, by the name in ``model.kind``, and the contract each one meets
(:class:`DetectorKind`): a sub-package (:mod:`detector.rcnn`, :mod:`detector.fast`) with the
same names, called by the training engine and :class:`detector.Detector` as ``kind.X``.
``tests/detector/test_kinds.py`` runs every kind of :data:`KINDS` through it."""

from __future__ import annotations

from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np
import torch
from torch import Tensor, nn

from . import fast, rcnn
from .config import DetectorConfig
from .ensemble import Ensemble


@runtime_checkable
class Batcher(Protocol):
    """A kind's training batches (:class:`detector.batching.BatcherBase` holds what both share)."""

    #: ``(kind, file)`` of the truncated / undecodable images met (drained by the training loop)
    notes: list

    def image(self, i: int) -> Tensor | None:
        """Record ``i``'s decoded (H, W, 3) uint8 image, None when it cannot be decoded."""

    def batch(self, indices: Sequence[int], generator: torch.Generator) -> Any | None:
        """The batch of records ``indices`` (it has ``to(device, non_blocking)`` and
        ``pin_memory()``), None when none of them has a region to sample."""


@runtime_checkable
class DetectorKind(Protocol):
    """What a detector kind provides. Every piece reads its settings from the
    :class:`~detector.config.DetectorConfig` (``model``, ``model.<kind>``, ``train``, ``test``):
    the schema's defaults are the only defaults.

    Training (:mod:`detector.engine.train_detector`):

    - ``build_member(cfg, num_classes, seed=None, *, inference=False) -> nn.Module``: a fresh
      member seeded by ``seed``; ``model.init`` loaded unless ``inference``;
    - ``RegionBatcher(cfg, dataset, proposals, device) -> Batcher``;
    - ``forward(net, batch) -> outputs`` (``.logits``, ``.deltas``: a member, possibly DDP-wrapped);
    - ``region_loss(out, batch, cfg) -> (loss, {"cls": float, ...})``: ``out`` from ``forward``;
    - ``param_groups(model, cfg) -> [optimizer parameter groups]``.

    Inference (:class:`detector.Detector`), on the :class:`~detector.ensemble.Ensemble` of members:

    - ``propose(ensemble, cfg, image, device, times=None) -> (N, 4) boxes or None``: the boxes
      the model itself proposes for an (H, W, 3) uint8 image (``times`` gets its stage seconds,
      e.g. ``trunk`` and ``proposals``); None when the kind makes none, and the
      configured proposals (selective search, MultiBox) are used (both kinds today; the
      one-pass detector, the fast kind with ``proposals.method: trunk``, proposes: its
      members' features are kept for the ``score_regions`` call of the same image);
    - ``score_regions(ensemble, cfg, image, boxes, device, times=None) -> (probs (N, C + 1),
      deltas (N, C, 4) or None)``, (None, None) without boxes; ``times`` gets the kind's stage
      seconds. A kind may score in two phases, the image's features once and then the head on
      the boxes (:meth:`Ensemble.features`, :meth:`Ensemble.head`: the fast kind).
    """

    RegionBatcher: type

    def build_member(self, cfg: DetectorConfig, num_classes: int, seed: int | None = None, *,
                     inference: bool = False) -> nn.Module: ...

    def forward(self, net: nn.Module, batch: Any) -> Any: ...

    def region_loss(self, out: Any, batch: Any, cfg: DetectorConfig) -> tuple[Tensor, dict]: ...

    def param_groups(self, model: nn.Module, cfg: DetectorConfig) -> list[dict]: ...

    def propose(self, ensemble: Ensemble, cfg: DetectorConfig, image: np.ndarray,
                device: torch.device, times: dict | None = None) -> np.ndarray | None: ...

    def score_regions(self, ensemble: Ensemble, cfg: DetectorConfig, image: np.ndarray, boxes: Tensor,
                      device: torch.device, times: dict | None = None) -> tuple[Tensor | None, Tensor | None]: ...


#: every kind by its ``model.kind`` name (the modules meet :class:`DetectorKind`)
KINDS: dict[str, DetectorKind] = {"rcnn": rcnn, "fast": fast}


def kind_of(cfg) -> DetectorKind:
    """The kind of a :class:`detector.config.DetectorConfig`."""
    return KINDS[getattr(cfg.model, "kind", "rcnn")]


__all__ = ["Batcher", "DetectorKind", "KINDS", "kind_of"]
