"""score_image: ensemble averaging, resizing, the image pyramid, no proposals, CUDA."""

from __future__ import annotations

import pytest
import torch

from detector.fast.infer import assign_scales, prepare_members, score_image
from detector.fast.model import FastRCNN
from detector.transforms import resize_factor, resize_image

from .helpers import blob_image, random_boxes, to_tensor_image, trained_looking

C = 3


@pytest.fixture(scope="module")
def members():
    out = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        out.append(trained_looking(FastRCNN("googlenet_bn", C, tap="inception3b", fc_dim=256), seed))
    return prepare_members(out, "cpu")


def _direct(m, image, boxes, min_side):
    t = to_tensor_image(image)
    x, sx, sy = resize_image(t, resize_factor(t.shape[1], t.shape[2], min_side, None))
    with torch.no_grad():
        out = m([x], [boxes * torch.tensor([sx, sy, sx, sy])])
    return out.logits.softmax(1), out.deltas


def test_members_are_averaged_and_boxes_stay_in_image_pixels(members):
    image = blob_image(48, 64)
    boxes = random_boxes(7, 48, 64, seed=1)
    probs, deltas, times = score_image(members, image, boxes, min_side=72, max_side=None, chunk=3,
                                       to_tensor_image=to_tensor_image)
    p0, d0 = _direct(members[0], image, boxes, 72)
    p1, d1 = _direct(members[1], image, boxes, 72)
    assert probs.shape == (7, C + 1) and deltas.shape == (7, C, 4)
    assert torch.allclose(probs, (p0 + p1) / 2, atol=1e-6)
    assert torch.allclose(deltas, (d0 + d1) / 2, atol=1e-6)
    assert not torch.allclose(p0, p1)  # the average is of two different members
    assert set(times) == {"trunk", "head"} and times["trunk"] > 0 and times["head"] > 0


def test_pyramid_scores_each_box_at_its_scale(members):
    image = blob_image(64, 64)
    boxes = torch.tensor([[0, 0, 8, 8], [0, 0, 60, 60], [10, 10, 30, 30.0]])
    # areas 64, 3600, 400; 224^2 = 50176. x4 (area): 256 / 14400 / 1600; x64: 4096 / 230400 / 25600
    assert assign_scales(boxes, [2.0, 8.0]).tolist() == [1, 0, 1]
    probs, _, _ = score_image(members[:1], image, boxes, min_side=64, max_side=None, scales=[128, 512],
                              to_tensor_image=to_tensor_image)
    at2, _ = _direct(members[0], image, boxes, 128)
    at8, _ = _direct(members[0], image, boxes, 512)
    assert torch.allclose(probs[1], at2[1], atol=1e-6)
    assert torch.allclose(probs[[0, 2]], at8[[0, 2]], atol=1e-6)


def test_no_proposals(members):
    probs, deltas, times = score_image(members, blob_image(), torch.zeros((0, 4)), min_side=64, max_side=None,
                                       to_tensor_image=to_tensor_image)
    assert probs.shape == (0, C + 1) and deltas.shape == (0, C, 4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_bf16_close_to_cpu(members):
    image = blob_image(48, 64)
    boxes = random_boxes(5, 48, 64)
    cpu, _, _ = score_image(members, image, boxes, min_side=64, max_side=None, to_tensor_image=to_tensor_image)
    gpu_members = prepare_members([FastRCNN("googlenet_bn", C, tap="inception3b", fc_dim=256) for _ in members], "cuda")
    for g, m in zip(gpu_members, members):
        g.load_state_dict(m.state_dict())
    gpu, _, _ = score_image(gpu_members, image, boxes, min_side=64, max_side=None, device="cuda",
                            to_tensor_image=to_tensor_image)
    assert torch.allclose(cpu, gpu, atol=3e-2)
