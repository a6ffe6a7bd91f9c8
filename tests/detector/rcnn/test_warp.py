"""detector.rcnn.warp: context dilation at warp scale, warped content, the mean fill outside the image."""

import numpy as np
import torch

from backbone.multicrop import IMAGENET_MEAN as MEAN, IMAGENET_STD as STD
from detector.io.images import to_tensor_image
from detector.rcnn.warp import dilate_boxes, warp_regions


def test_dilation_gives_context_at_warp_scale():
    boxes = torch.tensor([[10.0, 20.0, 110.0, 70.0]])
    d = dilate_boxes(boxes, 224, 16)
    # the original box must map onto [16, 208] of the 224 warp
    sx = 224 / (d[0, 2] - d[0, 0])
    assert torch.isclose((boxes[0, 0] - d[0, 0]) * sx, torch.tensor(16.0))
    sy = 224 / (d[0, 3] - d[0, 1])
    assert torch.isclose((d[0, 3] - boxes[0, 3]) * sy, torch.tensor(16.0))
    # scales with the warp size: 16 * 64 / 224 px at 64
    d64 = dilate_boxes(boxes, 64, 16)
    assert torch.isclose((boxes[0, 0] - d64[0, 0]) * 64 / (d64[0, 2] - d64[0, 0]), torch.tensor(16 * 64 / 224))


def test_warp_content_and_mean_fill():
    # left half red, right half blue; a box on the right half warps to blue, outside is the mean (0)
    img = np.zeros((100, 200, 3), np.uint8)
    img[:, :100, 0] = 255
    img[:, 100:, 2] = 255
    t = to_tensor_image(img)
    crops = warp_regions(t, torch.tensor([[120.0, 20.0, 180.0, 80.0], [-300.0, -300.0, -250.0, -250.0]]), 32, context_pad=0)
    assert crops.shape == (2, 3, 32, 32)
    blue = (torch.tensor([0.0, 0.0, 1.0]) - torch.tensor(MEAN)) / torch.tensor(STD)
    assert torch.allclose(crops[0].mean(dim=(1, 2)), blue, atol=1e-4)
    assert crops[1].abs().max() == 0  # fully outside: mean pixel everywhere


def test_warp_matches_reference_resize():
    # a box on exact pixel borders warped to its own size is the crop itself
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)
    t = to_tensor_image(img)
    crop = warp_regions(t, torch.tensor([[5.0, 7.0, 21.0, 23.0]]), 16, context_pad=0)[0]
    assert torch.allclose(crop, t[:, 7:23, 5:21], atol=1e-5)


def test_empty_boxes():
    t = to_tensor_image(np.zeros((10, 10, 3), np.uint8))
    assert warp_regions(t, torch.zeros((0, 4)), 32).shape == (0, 3, 32, 32)
