"""GoogLeNet (Inception v1) exactly as table 1 of Szegedy et al., "Going Deeper with
Convolutions" (arXiv 1409.4842).

Differences from torchvision's ``GoogLeNet`` (which is the BN variant, see ``tv_models``):
local response normalisation after the stem convolutions, no batch norm, and a real 5x5
convolution in every inception's third branch (torchvision uses a 3x3 there). Max pools use
ceil mode, as the reference Caffe model does, so 224 px inputs give the table's 112/56/28/14/7
feature maps. Pooling before the classifiers is adaptive, so the network runs at other input
sizes (small region crops); at 224 it is exactly the paper's 7x7 average pool.

Initialisation (the network trains from scratch here): Kaiming-normal (fan-in, ReLU; fan-out
makes activations grow ~10x per stage without batch norm) for
convolutions, N(0, 0.01) for fully connected layers, zero biases.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .errors import UserError

#: smallest input height and width the stride-32 trunk accepts (ceil-mode pools): a 30 px
#: side shrinks to a 1x1 map before the last 3x3/2 max pool, which then has nothing to pool
MIN_INPUT_SIZE = 31

# Table 1, inception rows: (#1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj)
INCEPTION_CONFIG: "OrderedDict[str, tuple[int, int, int, int, int, int]]" = OrderedDict(
    [
        ("inception3a", (64, 96, 128, 16, 32, 32)),
        ("inception3b", (128, 128, 192, 32, 96, 64)),
        ("inception4a", (192, 96, 208, 16, 48, 64)),
        ("inception4b", (160, 112, 224, 24, 64, 64)),
        ("inception4c", (128, 128, 256, 24, 64, 64)),
        ("inception4d", (112, 144, 288, 32, 64, 64)),
        ("inception4e", (256, 160, 320, 32, 128, 128)),
        ("inception5a", (256, 160, 320, 32, 128, 128)),
        ("inception5b", (384, 192, 384, 48, 128, 128)),
    ]
)


class GoogLeNetOutputs(NamedTuple):
    """Training-mode output when the auxiliary heads exist: main logits and the 4a / 4d heads."""

    logits: Tensor
    aux_logits2: Tensor  # head on inception 4d
    aux_logits1: Tensor  # head on inception 4a


class ConvReLU(nn.Sequential):
    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, stride: int = 1, padding: int = 0):
        super().__init__(
            nn.Conv2d(in_ch, out_ch, kernel_size, stride=stride, padding=padding),
            nn.ReLU(inplace=True),
        )


class Inception(nn.Module):
    """One inception module: 1x1 | 1x1 -> 3x3 | 1x1 -> 5x5 | 3x3 max pool -> 1x1, concatenated."""

    def __init__(self, in_ch: int, ch1x1: int, ch3x3red: int, ch3x3: int, ch5x5red: int, ch5x5: int, pool_proj: int):
        super().__init__()
        self.branch1 = ConvReLU(in_ch, ch1x1, 1)
        self.branch2 = nn.Sequential(ConvReLU(in_ch, ch3x3red, 1), ConvReLU(ch3x3red, ch3x3, 3, padding=1))
        self.branch3 = nn.Sequential(ConvReLU(in_ch, ch5x5red, 1), ConvReLU(ch5x5red, ch5x5, 5, padding=2))
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True), ConvReLU(in_ch, pool_proj, 1))
        self.out_channels = ch1x1 + ch3x3 + ch5x5 + pool_proj

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class AuxHead(nn.Module):
    """Auxiliary classifier (paper section 5): 5x5/3 average pool, 1x1 conv 128, FC 1024,
    dropout 70%, FC classes. The pool is adaptive to 4x4 so small inputs work; at 224 px the
    5x5/3 pool of a 14x14 map already gives 4x4."""

    def __init__(self, in_ch: int, num_classes: int):
        super().__init__()
        self.conv = ConvReLU(in_ch, 128, 1)
        self.fc1 = nn.Linear(128 * 4 * 4, 1024)
        self.dropout = nn.Dropout(0.7)
        self.fc2 = nn.Linear(1024, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        if min(x.shape[-2:]) >= 5:
            x = F.avg_pool2d(x, 5, stride=3)
        x = F.adaptive_avg_pool2d(x, 4)
        x = self.conv(x)
        x = torch.flatten(x, 1)
        x = self.dropout(F.relu(self.fc1(x), inplace=True))
        return self.fc2(x)


class GoogLeNet(nn.Module):
    """Inception v1 as table 1. Input: (N, 3, H, W) normalised images, any H, W >=
    :data:`MIN_INPUT_SIZE` (31); smaller inputs raise :class:`UserError` naming the minimum.

    ``forward`` returns logits (N, num_classes); in training mode with ``aux_logits=True`` it
    returns :class:`GoogLeNetOutputs` (main, aux on 4d, aux on 4a).
    """

    #: names of the feature stages in forward order, for :func:`backbone.features.extract_features`
    stage_names = (
        "conv1", "maxpool1", "lrn1", "conv2", "conv3", "lrn2", "maxpool2",
        "inception3a", "inception3b", "maxpool3",
        "inception4a", "inception4b", "inception4c", "inception4d", "inception4e", "maxpool4",
        "inception5a", "inception5b",
    )

    def __init__(self, num_classes: int = 1000, aux_logits: bool = False, dropout: float = 0.4, init: str = "kaiming"):
        super().__init__()
        self.aux_logits = aux_logits
        self.conv1 = ConvReLU(3, 64, 7, stride=2, padding=3)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.lrn1 = nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)
        self.conv2 = ConvReLU(64, 64, 1)
        self.conv3 = ConvReLU(64, 192, 3, padding=1)
        self.lrn2 = nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        in_ch = 192
        for name, cfg in INCEPTION_CONFIG.items():
            block = Inception(in_ch, *cfg)
            setattr(self, name, block)
            in_ch = block.out_channels
            if name == "inception3b":
                self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
            elif name == "inception4e":
                self.maxpool4 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.out_channels = in_ch  # 1024
        if aux_logits:
            self.aux1 = AuxHead(self.inception4a.out_channels, num_classes)
            self.aux2 = AuxHead(self.inception4d.out_channels, num_classes)
        else:
            self.aux1 = None
            self.aux2 = None
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(in_ch, num_classes)
        init_weights(self, init)

    def forward(self, x: Tensor):
        h, w = x.shape[-2:]
        if min(h, w) < MIN_INPUT_SIZE:
            raise UserError(f"GoogLeNet input {h}x{w} px is too small: height and width must be at least "
                            f"{MIN_INPUT_SIZE} px")
        aux1 = aux2 = None
        for name in self.stage_names:
            x = getattr(self, name)(x)
            if self.training and self.aux_logits:
                if name == "inception4a":
                    aux1 = self.aux1(x)
                elif name == "inception4d":
                    aux2 = self.aux2(x)
        x = self.dropout(torch.flatten(self.avgpool(x), 1))
        logits = self.fc(x)
        if self.training and self.aux_logits:
            return GoogLeNetOutputs(logits, aux2, aux1)
        return logits


def init_weights(model: nn.Module, scheme: str = "kaiming") -> None:
    """Initialise from scratch: ``kaiming`` (default) or ``xavier`` (the reference Caffe model's
    conv init) for convolutions; N(0, 0.01) for linear layers; zero biases."""
    if scheme not in ("kaiming", "xavier"):
        raise ValueError(f"unknown init scheme {scheme!r}: use 'kaiming' or 'xavier'")
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            if scheme == "kaiming":
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            else:
                nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01)
            nn.init.zeros_(m.bias)
