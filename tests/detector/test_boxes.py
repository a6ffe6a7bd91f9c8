"""detector.boxes: box flips."""

import torch

from detector.boxes import flip_boxes


def test_flip_boxes():
    b = torch.tensor([[1.0, 2.0, 5.0, 6.0]])
    assert flip_boxes(b, 10).tolist() == [[5.0, 2.0, 9.0, 6.0]]
    assert torch.equal(flip_boxes(flip_boxes(b, 10), 10), b)
