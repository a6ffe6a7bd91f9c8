"""The Inception networks: the paper's GoogLeNet, and torchvision's BN GoogLeNet and
Inception v3, behind one builder, :func:`build_backbone`."""

from __future__ import annotations

import os

import torchvision
from torch import nn

from .errors import UserError
from .features import extract_features, feature_channels, stage_names
from .googlenet import GoogLeNet, GoogLeNetOutputs
from .summary import count_macs, count_parameters
from .weights import load_weights, read_state_dict

#: network name -> one-line description
NETWORKS = {
    "googlenet": "Inception v1 exactly as the paper's table 1 (LRN, 5x5 branches, no BN)",
    "googlenet_bn": "torchvision GoogLeNet (batch norm, 3x3 in place of 5x5)",
    "inception_v3": "torchvision Inception v3 (batch norm; native input 299 px, at least 75 px)",
}


def build_backbone(
    name: str,
    num_classes: int = 1000,
    aux_logits: bool = False,
    weights: "str | os.PathLike | dict | None" = None,
    *,
    ignore_head: bool = False,
    transform_input: bool | None = None,
    dropout: float | None = None,
) -> nn.Module:
    """Build network ``name`` (one of :data:`NETWORKS`) with ``num_classes`` outputs.

    aux_logits: create the auxiliary heads (googlenet: on 4a and 4d; inception_v3: on 6e);
        in training mode the forward then returns a named tuple whose first field is the
        main logits.
    weights: optional local state dict file (for example torchvision's
        ``googlenet-1378be20.pth``), or a state dict already in memory. Aux-head keys in it are dropped when ``aux_logits`` is
        False; anything else that does not fit raises :class:`UserError`.
    ignore_head: with ``weights``, keep the fresh class layers (another class count).
    transform_input: torchvision's input re-normalisation (googlenet_bn, inception_v3 only),
        which its ported ImageNet weights expect. An explicit True or False always wins. Left
        as None it is True only when ``weights`` look like torchvision's ImageNet weights (a
        1000-class ``fc``), as ``torchvision.models.googlenet(weights=...)`` does, and False
        otherwise: with no weights, and with one's own exports of another class count, so a
        reloaded export computes exactly what it computed before it was saved. A 1000-class
        export of one's own trained without it must pass ``transform_input=False``.
    """
    if name not in NETWORKS:
        raise UserError(f"unknown network {name!r}: choose one of {', '.join(NETWORKS)}")
    source = None
    if weights is not None and not isinstance(weights, dict):
        source = os.fspath(weights)
        weights = read_state_dict(weights)
    if transform_input is None:
        transform_input = name != "googlenet" and weights is not None and is_imagenet_state_dict(weights)
    if name == "googlenet":
        model: nn.Module = GoogLeNet(num_classes, aux_logits=aux_logits, dropout=0.4 if dropout is None else dropout)
    elif name == "googlenet_bn":
        model = torchvision.models.GoogLeNet(
            num_classes=num_classes, aux_logits=aux_logits, transform_input=transform_input,
            init_weights=True, dropout=0.2 if dropout is None else dropout,
        )
    else:
        model = torchvision.models.Inception3(
            num_classes=num_classes, aux_logits=aux_logits, transform_input=transform_input,
            init_weights=True, dropout=0.5 if dropout is None else dropout,
        )
    if weights is not None:
        load_weights(model, weights, ignore_head=ignore_head, arch=name, source=source)
    return model


def is_imagenet_state_dict(state: dict) -> bool:
    """True for torchvision's ImageNet weights (and anything else with a 1000-class ``fc``)."""
    fc = state.get("fc.weight")
    return fc is not None and getattr(fc, "ndim", 0) == 2 and fc.shape[0] == 1000


def main_logits(output):
    """The main logits of a forward pass, whether or not it returned aux outputs."""
    return output[0] if isinstance(output, tuple) else output


__all__ = [
    "NETWORKS", "UserError", "GoogLeNet", "GoogLeNetOutputs", "build_backbone", "main_logits",
    "extract_features", "feature_channels", "stage_names", "count_parameters", "count_macs",
    "load_weights", "read_state_dict", "is_imagenet_state_dict",
]
