"""detector.postprocess: score threshold, box decoding and non-maximum suppression per class."""

import pytest
import torch

from detector import config as schema
from detector.postprocess import postprocess


def test_postprocess_nms_is_per_class():
    test = schema.TestConfig(nms_iou=0.3, score_thr=0.5, max_per_image=100)
    boxes = torch.tensor([[10.0, 10, 60, 60], [12, 12, 62, 62]])  # IoU ~0.86
    same = torch.tensor([[0.05, 0.9, 0.05], [0.1, 0.8, 0.1]])
    b, s, l = postprocess(same, boxes, None, (100, 100), test)
    assert l.tolist() == [1] and s.tolist() == pytest.approx([0.9]) and b[0].tolist() == [10, 10, 60, 60]
    other = torch.tensor([[0.05, 0.9, 0.05], [0.1, 0.1, 0.8]])
    b, s, l = postprocess(other, boxes, None, (100, 100), test)
    assert l.tolist() == [1, 2] and s.tolist() == pytest.approx([0.9, 0.8])
    far = torch.tensor([[10.0, 10, 30, 30], [60, 60, 90, 90]])  # same class, apart: both kept
    assert len(postprocess(same, far, None, (100, 100), test)[0]) == 2
