"""R-CNN's region classifier: a backbone network with C + 1 outputs (0 = background), optional
auxiliary heads (training only) and an optional class-specific box-regression head, scoring
warped regions (N, 3, S, S)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from backbone import build_backbone, extract_features, stage_names

from ..ensemble import RegionOutputs

# aux head module -> the stage it reads, per network
AUX_TAPS = {
    "googlenet": {"aux1": "inception4a", "aux2": "inception4d"},
    "googlenet_bn": {"aux1": "inception4a", "aux2": "inception4d"},
    "inception_v3": {"AuxLogits": "Mixed_6e"},
}


class RegionClassifier(nn.Module):
    """Scores warped regions (N, 3, S, S) -> :class:`RegionOutputs`.

    ``num_classes`` counts the object classes C; the network has C + 1 outputs. The backbone
    is built by :func:`backbone.build_backbone` (weights: a torchvision state dict or an
    exported classifier, its class layers re-initialised).
    """

    def __init__(self, arch: str, num_classes: int, aux_logits: bool = True, bbox_reg: bool = False,
                 weights: str | None = None, transform_input: bool = False):
        super().__init__()
        self.arch = arch
        self.num_classes = num_classes
        self.net = build_backbone(arch, num_classes + 1, aux_logits=aux_logits, weights=weights,
                                  ignore_head=weights is not None,
                                  transform_input=bool(transform_input) and arch != "googlenet")
        self.last_stage = stage_names(self.net)[-1]
        self.aux_taps = AUX_TAPS[arch] if aux_logits else {}
        feat_dim = self.net.fc.in_features
        self.bbox_head = nn.Linear(feat_dim, 4 * num_classes) if bbox_reg else None
        if self.bbox_head is not None:
            nn.init.normal_(self.bbox_head.weight, 0.0, 0.001)
            nn.init.zeros_(self.bbox_head.bias)

    def forward(self, x: Tensor) -> RegionOutputs:
        want_aux = self.training and bool(self.aux_taps)
        layers = [self.last_stage] + (list(self.aux_taps.values()) if want_aux else [])
        feats = extract_features(self.net, x, layers)
        aux = [getattr(self.net, head)(feats[stage]) for head, stage in self.aux_taps.items()] if want_aux else []
        pooled = torch.flatten(F.adaptive_avg_pool2d(feats[self.last_stage], 1), 1)
        pooled = self.net.dropout(pooled)
        logits = self.net.fc(pooled)
        deltas = self.bbox_head(pooled).view(-1, self.num_classes, 4) if self.bbox_head is not None else None
        return RegionOutputs(logits, deltas, aux)
