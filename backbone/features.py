"""Intermediate feature maps of any backbone network, without copying the network.

Each network runs its stages in a known order (``STAGES``); :func:`extract_features` runs
them up to the last requested stage and returns the requested maps, so MultiBox or a
shared-feature detector can use the trunk of the same module that holds the weights.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

import torch
import torchvision
from torch import Tensor, nn

from .googlenet import GoogLeNet

_TV_GOOGLENET_STAGES = (
    "conv1", "maxpool1", "conv2", "conv3", "maxpool2", "inception3a", "inception3b", "maxpool3",
    "inception4a", "inception4b", "inception4c", "inception4d", "inception4e", "maxpool4",
    "inception5a", "inception5b",
)
_TV_INCEPTION3_STAGES = (
    "Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1", "Conv2d_4a_3x3",
    "maxpool2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d",
    "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c",
)


def stage_names(model: nn.Module) -> tuple[str, ...]:
    """The names of ``model``'s feature stages in forward order."""
    if isinstance(model, GoogLeNet):
        return model.stage_names
    if isinstance(model, torchvision.models.GoogLeNet):
        return _TV_GOOGLENET_STAGES
    if isinstance(model, torchvision.models.Inception3):
        return _TV_INCEPTION3_STAGES
    raise TypeError(f"no stage list for {type(model).__name__}")


def extract_features(model: nn.Module, x: Tensor, layers: Sequence[str]) -> "OrderedDict[str, Tensor]":
    """Run ``model``'s stages on ``x`` up to the last of ``layers``; return those maps in order.

    x: (N, 3, H, W) normalised images. Returns {layer name: (N, C, h, w)}.
    """
    names = stage_names(model)
    unknown = [name for name in layers if name not in names]
    if unknown:
        raise ValueError(f"unknown stage(s) {unknown}; stages are {list(names)}")
    last = max(names.index(name) for name in layers)
    if getattr(model, "transform_input", False):
        x = model._transform_input(x)
    out: "OrderedDict[str, Tensor]" = OrderedDict()
    for name in names[: last + 1]:
        x = getattr(model, name)(x)
        if name in layers:
            out[name] = x
    return out


def feature_channels(model: nn.Module, layer: str) -> int:
    """Number of channels of stage ``layer``'s output (by a tiny forward pass)."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            p = next(model.parameters())
            x = torch.zeros(1, 3, 96, 96, dtype=p.dtype, device=p.device)
            return extract_features(model, x, [layer])[layer].shape[1]
    finally:
        model.train(was_training)
