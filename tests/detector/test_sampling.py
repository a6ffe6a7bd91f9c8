"""detector.sampling: region labelling (ground truth first, IoU thresholds), foreground fraction
sampling, image shards of the ranks."""

import torch

from detector.sampling import image_shards, label_regions, sample_regions


def test_label_regions_gt_first_and_thresholds():
    gt = torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 40.0, 40.0]])
    props = torch.tensor([[0.0, 0.0, 10.0, 9.0], [0.0, 0.0, 20.0, 20.0], [100.0, 100.0, 110.0, 110.0], [20.0, 20.0, 38.0, 40.0]])
    boxes, labels, idx, best = label_regions(props, gt, torch.tensor([3, 1]), fg_iou=0.5, bg_iou_low=0.0)
    assert torch.equal(boxes[:2], gt)
    assert labels.tolist() == [3, 1, 3, 0, 0, 1]
    assert idx[5] == 1
    _, labels2, _, _ = label_regions(props, gt, torch.tensor([3, 1]), bg_iou_low=0.1)
    assert labels2[4] == -1  # IoU 0 < 0.1: ignored


def test_sample_fraction_and_fill():
    g = torch.Generator().manual_seed(0)
    labels = torch.tensor([1] * 50 + [0] * 200)
    idx = sample_regions(labels, 64, 0.25, g)
    assert len(idx) == 64 and (labels[idx] > 0).sum() == 16 and len(set(idx.tolist())) == 64
    few_fg = torch.tensor([2] * 3 + [0] * 200)
    idx = sample_regions(few_fg, 64, 0.25, g)
    assert (few_fg[idx] > 0).sum() == 3 and len(idx) == 64
    few_bg = torch.tensor([1] * 100 + [0] * 5)
    idx = sample_regions(few_bg, 64, 0.25, g)
    assert len(idx) == 64 and (few_bg[idx] == 0).sum() == 5


def test_image_shards():
    a, c = image_shards(7, 0, 2, 1), image_shards(7, 1, 2, 1)
    assert len(a) == len(c) == 4 and set(a) | set(c) == set(range(7))
