"""The ensemble both detector kinds share: members' class probabilities (softmax) and box
offsets averaged per region, as the paper averaged its 6 networks.

Two forms: one pass (``ensemble(*args)``: R-CNN's warped crops), and two phases for members
that compute image features once and then score boxes on them (``ensemble.features(x)``, then
``ensemble.head(features, boxes, ...)`` as many times as there are box sets: the fast kind,
and the one-pass detector)."""

from __future__ import annotations

from typing import Iterable, NamedTuple, Sequence

import torch
from torch import Tensor, nn


class RegionOutputs(NamedTuple):
    """What a member returns for N regions (either kind)."""

    logits: Tensor                 # (N, C + 1)
    deltas: Tensor | None          # (N, C, 4) box regression offsets, or None
    aux_logits: list[Tensor]       # training only, one (N, C + 1) per aux head


def average(outputs: Iterable, n: int) -> tuple[Tensor, Tensor | None]:
    """The mean softmax probabilities (N, C + 1) and mean deltas (N, C, 4) or None of ``n``
    members' outputs (anything with ``.logits`` and ``.deltas``), summed in member order."""
    probs = None
    deltas = None
    for out in outputs:
        p = out.logits.float().softmax(dim=1)
        probs = p if probs is None else probs + p
        if out.deltas is not None:
            deltas = out.deltas.float() if deltas is None else deltas + out.deltas.float()
    return probs / n, (deltas / n if deltas is not None else None)


class Ensemble(nn.Module):
    """Averages the members' softmax probabilities (and box offsets) per region.

    Every member is called with the same arguments (R-CNN: warped crops; the shared-feature
    kind: images and boxes) and returns :class:`RegionOutputs`. Members with ``features(x)``
    and ``head(features, *args)`` (as :class:`detector.fast.FastRCNN`) also serve the
    two-phase form, :meth:`features` then :meth:`head`."""

    def __init__(self, members: Sequence[nn.Module]):
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)

    @torch.no_grad()
    def forward(self, *args, **kwargs) -> tuple[Tensor, Tensor | None]:
        """-> probabilities (N, C + 1), mean deltas (N, C, 4) or None."""
        return average((m(*args, **kwargs) for m in self.members), len(self.members))

    @torch.no_grad()
    def features(self, *args, **kwargs) -> list:
        """Each member's features of the input (phase one: once per image)."""
        return [m.features(*args, **kwargs) for m in self.members]

    @torch.no_grad()
    def head(self, features: Sequence, *args, **kwargs) -> tuple[Tensor, Tensor | None]:
        """Phase two: each member's head on its own ``features`` (from :meth:`features`) and
        the same ``args`` (e.g. boxes), averaged as :meth:`forward` -> probabilities, deltas."""
        if len(features) != len(self.members):
            raise ValueError(f"{len(features)} feature sets for {len(self.members)} members")
        return average((m.head(f, *args, **kwargs) for m, f in zip(self.members, features)), len(self.members))


__all__ = ["RegionOutputs", "Ensemble", "average"]
