"""The ensemble both detector kinds share: members' class probabilities (softmax) and box
offsets averaged per region, as the paper averaged its 6 networks."""

from __future__ import annotations

from typing import NamedTuple, Sequence

import torch
from torch import Tensor, nn


class RegionOutputs(NamedTuple):
    """What a member returns for N regions (either kind)."""

    logits: Tensor                 # (N, C + 1)
    deltas: Tensor | None          # (N, C, 4) box regression offsets, or None
    aux_logits: list[Tensor]       # training only, one (N, C + 1) per aux head


class Ensemble(nn.Module):
    """Averages the members' softmax probabilities (and box offsets) per region.

    Every member is called with the same arguments (R-CNN: warped crops; the shared-feature
    kind: images and boxes) and returns :class:`RegionOutputs`."""

    def __init__(self, members: Sequence[nn.Module]):
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)

    @torch.no_grad()
    def forward(self, *args, **kwargs) -> tuple[Tensor, Tensor | None]:
        """-> probabilities (N, C + 1), mean deltas (N, C, 4) or None."""
        probs = None
        deltas = None
        for m in self.members:
            out = m(*args, **kwargs)
            p = out.logits.float().softmax(dim=1)
            probs = p if probs is None else probs + p
            if out.deltas is not None:
                deltas = out.deltas.float() if deltas is None else deltas + out.deltas.float()
        n = len(self.members)
        return probs / n, (deltas / n if deltas is not None else None)
