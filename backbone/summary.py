"""Parameter counts and multiply-adds of a network at a given input size."""

from __future__ import annotations

import torch
from torch import nn


def count_parameters(model: nn.Module, *, exclude_prefixes: tuple[str, ...] = ()) -> int:
    """Number of parameters (weights and biases), skipping names starting with any prefix."""
    return sum(p.numel() for n, p in model.named_parameters() if not n.startswith(exclude_prefixes))


def count_macs(model: nn.Module, input_size: int = 224) -> int:
    """Multiply-adds of one eval-mode forward pass on a (1, 3, S, S) input: convolutions and
    fully connected layers (pooling, LRN and ReLU are not counted, as usual)."""
    total = 0

    def conv_hook(m: nn.Conv2d, inp, out):
        nonlocal total
        kh, kw = m.kernel_size
        total += out.numel() * (m.in_channels // m.groups) * kh * kw

    def linear_hook(m: nn.Linear, inp, out):
        nonlocal total
        total += out.numel() * m.in_features

    handles = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, input_size, input_size))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return total
