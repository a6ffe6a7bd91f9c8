"""Small models and synthetic images for the fast-kind tests."""

from __future__ import annotations

import numpy as np
import torch

from detector.fast.model import FastRCNN

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def to_tensor_image(image, device="cpu"):
    """(H, W, 3) uint8 -> (3, H, W) normalised (the test's own copy of the project's helper)."""
    t = torch.as_tensor(np.asarray(image)).to(device).permute(2, 0, 1).float().div(255.0)
    return (t - torch.tensor(MEAN, device=t.device).view(3, 1, 1)) / torch.tensor(STD, device=t.device).view(3, 1, 1)


def flip_boxes(boxes: torch.Tensor, width: float) -> torch.Tensor:
    """Mirror xyxy boxes horizontally (the test's own copy of the project's helper)."""
    out = boxes.clone()
    out[:, 0] = width - boxes[:, 2]
    out[:, 2] = width - boxes[:, 0]
    return out


def trained_looking(model: FastRCNN, seed: int = 0) -> FastRCNN:
    """Random norm statistics, affine weights and head biases, as after training: with fresh
    ones a zero (padded) input region maps to exact zeros everywhere, which would hide
    padding effects."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.GroupNorm)):
                m.weight.copy_(torch.rand(m.num_features if hasattr(m, "num_features") else m.num_channels, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.3)
        for m in list(model.predictor.modules()):
            if isinstance(m, torch.nn.Linear):
                m.weight.normal_(0, 0.05, generator=g)
                m.bias.normal_(0, 0.1, generator=g)
    return model


def random_boxes(n: int, height: int, width: int, seed: int = 0, min_size: float = 6.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x1 = torch.rand(n, generator=g) * (width - min_size)
    y1 = torch.rand(n, generator=g) * (height - min_size)
    w = min_size + torch.rand(n, generator=g) * (width - x1 - min_size)
    h = min_size + torch.rand(n, generator=g) * (height - y1 - min_size)
    return torch.stack([x1, y1, x1 + w, y1 + h], 1)


def blob_image(height: int = 64, width: int = 64, box=(16, 20, 40, 44), seed: int = 0) -> np.ndarray:
    """A noisy grey image with one bright square object at ``box`` (x1, y1, x2, y2)."""
    rng = np.random.default_rng(seed)
    img = rng.integers(90, 130, (height, width, 3)).astype(np.uint8)
    x1, y1, x2, y2 = box
    img[y1:y2, x1:x2] = (230, 40, 40)
    return img
