"""detector.ensemble: the members' softmax probabilities and box offsets averaged per region."""

import torch
from torch import nn

from detector.ensemble import Ensemble, RegionOutputs


class _Linear(nn.Module):
    """A member: fixed linear scores and offsets of a (N, 3) input."""

    def __init__(self, seed, deltas=True):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.cls = nn.Parameter(torch.randn(3, 4, generator=g))
        self.box = nn.Parameter(torch.randn(3, 12, generator=g)) if deltas else None

    def forward(self, x):
        d = (x @ self.box).view(-1, 3, 4) if self.box is not None else None
        return RegionOutputs(x @ self.cls, d, [])


def test_two_members_with_different_weights_are_averaged():
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(9))
    a, b = _Linear(1), _Linear(2)
    probs, deltas = Ensemble([a, b])(x)
    pa, pb = a(x).logits.softmax(1), b(x).logits.softmax(1)
    assert not torch.allclose(pa, pb, atol=1e-2)          # the members do differ ...
    assert torch.allclose(probs, (pa + pb) / 2, atol=1e-6)  # ... so ignoring one would fail here
    assert torch.allclose(deltas, (a(x).deltas + b(x).deltas) / 2, atol=1e-6)
    assert torch.allclose(probs.sum(1), torch.ones(5))


def test_members_without_box_offsets_give_none():
    x = torch.randn(2, 3)
    probs, deltas = Ensemble([_Linear(1, deltas=False), _Linear(2, deltas=False)])(x)
    assert probs.shape == (2, 4) and deltas is None


def test_members_take_any_arguments():
    class TwoArgs(nn.Module):  # the shared-feature kind: images and boxes
        def forward(self, images, boxes):
            return RegionOutputs(torch.zeros(len(boxes), 2), None, [])

    probs, _ = Ensemble([TwoArgs()])(torch.zeros(1, 3, 8, 8), torch.zeros(4, 4))
    assert torch.allclose(probs, torch.full((4, 2), 0.5))
