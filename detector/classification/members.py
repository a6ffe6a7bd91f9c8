"""The members of a classification ensemble (``classify``, ``eval-classifier``): each a network
with its input size, normalisation and name, from train-classifier checkpoints or torchvision
ImageNet state dicts."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Sequence

import torchvision.models as tvm
from torch import nn

from backbone import build_backbone
from backbone.errors import UserError
from backbone.multicrop import IMAGENET_MEAN, IMAGENET_STD

from ..io.checkpoints import load_classifier

#: native input size of the torchvision ImageNet weights
TORCHVISION_INPUT = {"googlenet": 224, "googlenet_bn": 224, "inception_v3": 299}


@dataclass
class Member:
    """One network of a classification ensemble."""

    model: nn.Module
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    classes: list[str]
    name: str                     # the file it came from
    config: dict = field(default_factory=dict)  # a checkpoint's resolved ClassifierConfig, as a dict


def imagenet_classes(arch: str) -> list[str]:
    """The 1000 ImageNet class names of torchvision's weight metadata (no download)."""
    weights = tvm.Inception_V3_Weights.IMAGENET1K_V1 if arch == "inception_v3" else tvm.GoogLeNet_Weights.IMAGENET1K_V1
    return list(weights.meta["categories"])


def checkpoint_members(paths: Sequence[str], device) -> list[Member]:
    """train-classifier checkpoints; they must share one class list."""
    members: list[Member] = []
    for path in paths:
        model, meta = load_classifier(path, device, aux_logits=False)
        if members and list(meta["classes"]) != members[0].classes:
            raise UserError(f"--model {path}: its classes {meta['classes']} differ from {members[0].name}'s "
                            f"{members[0].classes}; an ensemble needs one class list")
        members.append(Member(model, int(meta["input_size"]), tuple(meta["mean"]), tuple(meta["std"]),
                              list(meta["classes"]), path, dict(meta.get("config") or {})))
    return members


def torchvision_members(arch: str, weights: Sequence[str], device, input_size: int | None = None) -> list[Member]:
    """torchvision ImageNet state dicts of network ``arch`` (1000 classes)."""
    size = input_size or TORCHVISION_INPUT.get(arch, 224)
    classes = imagenet_classes(arch)
    members = []
    for w in weights:
        try:
            model = build_backbone(arch, 1000, weights=os.path.expanduser(w)).to(device).eval()
        except UserError as e:
            if arch == "googlenet" and "does not match" in str(e):
                raise UserError(f"{e} (torchvision's ImageNet GoogLeNet weights are for --arch googlenet_bn)") from None
            raise
        members.append(Member(model, size, IMAGENET_MEAN, IMAGENET_STD, classes, w))
    return members


def load_members(model_paths: Sequence[str] | None, arch: str | None, weights: Sequence[str] | None, device,
                 input_size: int | None = None) -> list[Member]:
    """The ensemble a command line names: ``--model CKPT...`` or ``--arch NAME --weights FILE...``."""
    if model_paths and (arch or weights):
        raise UserError("give either --model CKPT... or --arch NAME --weights FILE..., not both")
    if model_paths:
        return checkpoint_members(model_paths, device)
    if arch or weights:
        if not arch:
            raise UserError("--weights needs --arch NAME (googlenet_bn or inception_v3 for torchvision's ImageNet "
                            "weights, googlenet for the paper's network in this project's layout)")
        if not weights:
            raise UserError("--arch needs --weights FILE (a torchvision ImageNet state dict)")
        return torchvision_members(arch, weights, device, input_size)
    raise UserError("no model given: use --model CKPT [CKPT ...] (train-classifier checkpoints) or "
                    "--arch NAME --weights FILE [FILE ...] (torchvision ImageNet state dicts)")
