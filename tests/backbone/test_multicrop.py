"""backbone.multicrop: the 1 / 10 / 144 crop layouts and multi-crop, multi-model averaging."""

import pytest
import torch
import torchvision.transforms.v2.functional as TF
from torch import nn

import backbone.multicrop as mc
from backbone.multicrop import make_crops, predict_probs, scale_length, three_squares


def _image(h, w, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g)


def test_crop_counts_and_shapes():
    img = _image(50, 70)
    for n in (1, 10, 144):
        c = make_crops(img, n, 32)
        assert c.shape == (n, 3, 32, 32) and c.dtype == torch.float32
        assert 0.0 <= c.min() and c.max() <= 1.0
    with pytest.raises(ValueError, match="num_crops"):
        make_crops(img, 5, 32)


def test_144_layout_at_224_landscape():
    # shorter side already 256: the first scale needs no resize, so crops are exact slices
    img = _image(256, 384)
    f = img.float() / 255
    c = make_crops(img, 144, 224)
    # order per scale: square (left, centre, right) x (TL, TR, BL, BR, centre, whole)
    torch.testing.assert_close(c[0], f[:, :224, :224])            # left square, top-left
    torch.testing.assert_close(c[1], f[:, :224, 32:256])          # left square, top-right
    torch.testing.assert_close(c[2], f[:, 32:256, :224])          # left square, bottom-left
    torch.testing.assert_close(c[3], f[:, 32:256, 32:256])        # left square, bottom-right
    torch.testing.assert_close(c[4], f[:, 16:240, 16:240])        # left square, centre
    torch.testing.assert_close(c[5], TF.resize(f[:, :, :256], [224, 224], antialias=True))  # whole square
    torch.testing.assert_close(c[6], f[:, :224, 64:288])          # centre square starts at x=64
    torch.testing.assert_close(c[12], f[:, :224, 128:352])        # right square starts at x=128
    torch.testing.assert_close(c[17], TF.resize(f[:, :, 128:], [224, 224], antialias=True))
    # second half: the mirrors of the first, in the same order
    torch.testing.assert_close(c[72:], c[:72].flip(-1))
    # scale 2 (shorter side 288) starts at index 18: its top-left crop is from the resized image
    r = TF.resize(f, [288, 432], antialias=True)
    torch.testing.assert_close(c[18], r[:, :224, :224])


def test_144_portrait_uses_top_centre_bottom():
    img = _image(384, 256)
    f = img.float() / 255
    c = make_crops(img, 144, 224)
    torch.testing.assert_close(c[6], f[:, 64:288, :224])    # centre square (y=64), top-left
    torch.testing.assert_close(c[12], f[:, 128:352, :224])  # bottom square (y=128)


def test_10_crops_are_corners_centre_and_mirrors():
    img = _image(256, 300)
    f = img.float() / 255
    c = make_crops(img, 10, 224)
    torch.testing.assert_close(c[0], f[:, :224, :224])
    torch.testing.assert_close(c[4], f[:, 16:240, 38:262])
    # torchvision's ten_crop five-crops the mirrored image: its top-left is the mirrored top-right
    torch.testing.assert_close(c[5:], c[[1, 0, 3, 2, 4]].flip(-1))
    one = make_crops(img, 1, 224)
    torch.testing.assert_close(one[0], c[4])


def test_layout_scales_with_input_size():
    assert [scale_length(s, 64) for s in mc.SCALES_144] == [73, 82, 91, 101]
    assert scale_length(256, 224) == 256
    img = _image(73, 100)  # shorter side already the first 64 px scale: exact slices
    c = make_crops(img, 144, 64)
    f = img.float() / 255
    torch.testing.assert_close(c[0], f[:, :64, :64])
    torch.testing.assert_close(c[1], f[:, :64, 9:73])


def test_three_squares_of_square_image_are_equal():
    sq = three_squares(_image(40, 40).float())
    assert sq.shape == (3, 3, 40, 40)
    assert torch.equal(sq[0], sq[1]) and torch.equal(sq[1], sq[2])


def test_resizes_are_batched(monkeypatch):
    calls = []
    real = TF.resize

    def counting(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(mc.TF, "resize", counting)
    make_crops(_image(100, 150), 144, 64)
    assert len(calls) == 8  # one per scale + one for the whole squares of each scale (4 scales)


class _Const(nn.Module):
    """Logits = a fixed linear map of the mean colour: deterministic and crop-sensitive."""

    def __init__(self, c=4, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w = nn.Parameter(torch.randn(3, c, generator=g))

    def forward(self, x):
        return x.mean((2, 3)) @ self.w


def test_predict_probs_matches_per_image_average():
    models = [_Const(seed=0).eval(), _Const(seed=1).eval()]
    images = [_image(40 + 7 * i, 60 - 3 * i, seed=i) for i in range(5)]
    probs = predict_probs(models, images, 10, 32, batch_size=16, progress=False)
    assert probs.shape == (5, 2, 4)
    torch.testing.assert_close(probs.sum(-1), torch.ones(5, 2))
    for i, img in enumerate(images):
        x = mc.normalize(make_crops(img, 10, 32))
        for m, model in enumerate(models):
            expect = model(x).softmax(1).mean(0)
            torch.testing.assert_close(probs[i, m], expect, atol=1e-5, rtol=1e-5)


def test_predict_probs_mixed_input_sizes_and_ensemble():
    a, b = _Const(seed=0).eval(), _Const(seed=1).eval()
    images = [_image(50, 50, seed=3), _image(30, 80, seed=4)]
    both = predict_probs([a, b], images, 144, [32, 48], batch_size=100, progress=False)
    pa = predict_probs([a], images, 144, 32, progress=False)
    pb = predict_probs([b], images, 144, 48, progress=False)
    torch.testing.assert_close(both[:, 0], pa[:, 0])
    torch.testing.assert_close(both[:, 1], pb[:, 0])
    # the ensemble is the mean of the members' probabilities
    torch.testing.assert_close(both.mean(1), (pa[:, 0] + pb[:, 0]) / 2)
